"""minLM (mingru-pytorch 0.2.1) at long T: the package's log-space forward vs rnnedge's exact form.

Reference: the adapter run token by token in fp64 (the package's own step cell, which its prev_hiddens
decoding runs). Measured: the package's fp32 forward (log-space scan, Heinsen), the adapter's fp32
parallel form (doubling scan) in torch, and the exported parallel graph in ONNX Runtime, each as the
max abs logit difference over T tokens. Random initialisation (dim 128, depth 2, expansion 1.5, vocab 256).

    python benchmarks/byom_parity.py [--t 4096]
Writes benchmarks/results/byom_parity.json (or --out).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from minGRU_pytorch.minLM import minLM

from rnnedge.byom.minlm import MinLMAdapter, export_minlm
from rnnedge.io import write_json
from rnnedge.runtime import ParallelSession


def measure(use_lstm: bool, t: int) -> dict[str, float]:
    torch.manual_seed(0)
    model = minLM(num_tokens=256, dim=128, depth=2, expansion=1.5, use_lstm=use_lstm).eval()
    adapter = MinLMAdapter(model)
    ids = torch.randint(0, 256, (1, t))
    ref = MinLMAdapter(minLM(num_tokens=256, dim=128, depth=2, expansion=1.5, use_lstm=use_lstm).double())
    ref.lm.load_state_dict({k: v.double() for k, v in model.state_dict().items()})
    zeros = tuple(torch.zeros(1, *s.shape[1:]) for s in adapter.state_specs())
    with torch.no_grad():
        state, steps = tuple(z.double() for z in zeros), []
        for i in range(t):
            out, state = ref(ids[:, i : i + 1], state)  # (1, 1, V)
            steps.append(out)
        want = torch.cat(steps, dim=1)[0]  # (T, V) fp64 sequential
        package = model(ids)[0]
        exact, _ = adapter(ids, zeros)
    with tempfile.TemporaryDirectory() as tmp:
        export_minlm(model, tokenizer="bytes", out=tmp, max_seq_len=t)
        onnx_logits, _ = ParallelSession(tmp).run(ids.numpy())
    return {
        "package_logspace_fp32": float((package.double() - want).abs().max()),
        "adapter_exact_fp32_torch": float((exact[0].double() - want).abs().max()),
        "parallel_graph_onnxruntime": float(np.abs(onnx_logits[0] - want.numpy()).max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--t", type=int, default=4096)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "byom_parity.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    figures = {("minLSTM" if lstm else "minGRU"): measure(lstm, args.t) for lstm in (False, True)}
    result = {
        "T": args.t,
        "max_abs_logit_diff_vs_fp64_sequential": figures,
        "seconds": round(time.perf_counter() - start, 1),
        "machine": platform.processor() or platform.machine(),
        "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__, "mingru-pytorch": "0.2.1"},
    }
    write_json(args.out, result)
    print(result)


if __name__ == "__main__":
    main()
