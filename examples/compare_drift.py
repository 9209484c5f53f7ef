"""Compare how int8 error evolves over time for several exported models, through the Python API.

    python examples/compare_drift.py EXPORT_DIR [EXPORT_DIR ...] --data val.txt --out drift_report

Each EXPORT_DIR holds step.onnx and step.int8.onnx (`rnnedge export`, then `rnnedge quantize`).
Prints one line per model and writes one comparison report (open drift_report/report.html).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rnnedge.quantization.d_summary import summarize
from rnnedge.quantization.drift import run_drift
from rnnedge.quantization.report import write_report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="+", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("drift_report"))
    ap.add_argument("--steps", type=int, default=4096)
    ap.add_argument("--streams", type=int, default=8)
    args = ap.parse_args()
    text = args.data.read_text(encoding="utf-8")

    results = []
    for folder in args.dirs:
        r = run_drift(folder, text, steps=args.steps, streams=args.streams)  # fp32, int8, int8 fed fp32 state
        m = summarize(r)
        se = m["state_error"]
        print(
            f"{r.name:>12} ({r.arch:7}): state error t=10 {se['at']['10']:.2e} -> t={r.steps} {se['at']['last']:.2e}"
            f" (x{se['fit']['growth_ratio']:.2f}, alpha {se['fit']['alpha']:+.2f}), accumulated/one-step "
            f"{se['accumulation_last']:.2f}, int8 {r.loss_int8 - r.loss_fp32:+.4f} nats/char, "
            f"top-1 agreement {r.top1.mean():.2%}"
        )
        results.append(r)
    report = write_report(results, args.out, {"data": str(args.data), "steps": args.steps, "streams": args.streams})
    for m in report["models"]:
        print(f"\n{m['name']}: {m['verdict']}")
    print(f"\nopen {args.out / 'report.html'}")


if __name__ == "__main__":
    main()
