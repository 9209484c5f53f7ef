#!/usr/bin/env bash
# A venv for benchmarks/executorch_peer.py and benchmarks/peer_speed.py: rnnedge with the `runtimes`
# (OpenVINO, tract) and `executorch` extras beside torch 2.13 CPU, so every peer runs in one process.
# executorch 1.5.1 pins no torch (its wheel runs on torch 2.13.0+cpu) but brings torchao, coremltools,
# scikit-learn, pandas and hydra (~1.6 GB with torch): kept out of the main dev venv for that reason.
#     bash benchmarks/executorch_env.sh [VENV]      (default: ../venv-et)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${1:-$ROOT/../venv-et}"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --upgrade pip
"$VENV/bin/pip" install torch==2.13.0   # the CPU wheel first: a bare `torch` pulls a multi-GB CUDA build
"$VENV/bin/pip" install -e "$ROOT[runtimes,executorch]"
echo "then: $VENV/bin/python benchmarks/executorch_peer.py; $VENV/bin/python benchmarks/peer_speed.py"
