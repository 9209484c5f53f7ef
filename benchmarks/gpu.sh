#!/usr/bin/env bash
# rnnedge's GPU checks in one command, on a CUDA machine (docs/gpu.md):
#   1. the GPU tests (pytest -m gpu: fused scan vs fp64 sequential, bf16 training step, ORT CUDA EP,
#      device-resident StepSession, CUDA graphs, Memcpy counts) and the CPU tests of the same files;
#   2. benchmarks/train_speed.py --device cuda  -> benchmarks/results/train_speed_cuda.json
#   3. benchmarks/gpu_infer.py                  -> benchmarks/results/gpu_infer.json
#
#   bash benchmarks/gpu.sh [--install] [--quick] [--data PATH]
#
# --install first runs `pip install -e ".[gpu,dev]"` and then swaps the CPU onnxruntime for
# onnxruntime-gpu (both install the same `onnxruntime` package, so only one may stay). Needs a CUDA
# build of torch already installed. --quick: short benchmark runs (smoke test of the scripts).
# --data PATH: text for the fp16 variant's loss check (default: ../shared/data/tinyshakespeare.txt when it
# exists; nothing is downloaded: GPU machines here are offline).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

install=0
quick=0
data=""
while [ $# -gt 0 ]; do
  case "$1" in
    --install) install=1 ;;
    --quick) quick=1 ;;
    --data) data="${2:?gpu.sh: --data needs a path}"; shift ;;
    *) echo "gpu.sh: unknown option $1 (use --install, --quick, --data PATH)" >&2; exit 2 ;;
  esac
  shift
done
if [ -z "$data" ]; then
  if [ -f ../shared/data/tinyshakespeare.txt ]; then
    data=../shared/data/tinyshakespeare.txt
  else
    echo "gpu.sh: no text for the benchmarks; pass --data PATH (nothing is downloaded)" >&2; exit 2
  fi
fi
if [ ! -f "$data" ]; then
  echo "gpu.sh: --data $data is not a file" >&2; exit 2
fi

if [ "$install" = 1 ]; then
  python -m pip install -e ".[gpu,dev]"
  python -m pip uninstall -y onnxruntime onnxruntime-gpu
  python -m pip install "onnxruntime-gpu[cuda,cudnn]>=1.18"
fi

python - <<'EOF'
import importlib.metadata as md
import sys

import onnxruntime as ort
import torch

problems = []
if not torch.cuda.is_available():
    problems.append(f"torch {torch.__version__} sees no CUDA device (install a CUDA build of torch)")
dists = {d.metadata["Name"].lower() for d in md.distributions()}
if {"onnxruntime", "onnxruntime-gpu"} <= dists:
    problems.append("both onnxruntime and onnxruntime-gpu are installed; run: pip uninstall -y onnxruntime "
                    "onnxruntime-gpu && pip install 'onnxruntime-gpu>=1.18' (or bash benchmarks/gpu.sh --install)")
else:
    from rnnedge.inference.cuda_check import cuda_provider_problem

    if (problem := cuda_provider_problem()) is not None:
        problems.append(problem)
if problems:
    sys.exit("gpu.sh: " + "; ".join(problems))
try:
    import fla.ops.hgrn  # noqa: F401
    fla = "fla-core imports"
except Exception as exc:
    fla = f"fla-core does not import ({type(exc).__name__}: {exc}); fused-scan tests and rows are skipped"
print(f"gpu.sh: {torch.cuda.get_device_name()}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
      f"onnxruntime {ort.__version__}; {fla}")
EOF

python -m pytest -q -rs -p no:cacheprovider tests/test_gpu.py tests/test_fused_scan.py

if [ "$quick" = 1 ]; then
  python benchmarks/train_speed.py --device cuda --quick --repeats 2
  python benchmarks/gpu_infer.py --steps 200 --reps 2 --data "$data"
else
  python benchmarks/train_speed.py --device cuda
  python benchmarks/gpu_infer.py --data "$data"
fi
