"""Compare how a precision variant's error evolves over time for several exported models, through the Python API.

    python examples/compare_drift.py EXPORT_DIR [EXPORT_DIR ...] --data val.txt --out drift_report
    python examples/compare_drift.py EXPORT_DIR --data val.txt --variant int4-weight --baseline int8-dynamic

Each EXPORT_DIR holds step.onnx and at least one step.<variant>.onnx (`rnnedge export`, then
`rnnedge quantize`). Prints one line per model and writes one comparison report (open
drift_report/report.html).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rnnedge.drift import run_drift, summarize, write_report


def _num(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="+", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, default=Path("drift_report"))
    ap.add_argument("--variant", default=None, help="variant to measure (default: each folder's only one)")
    ap.add_argument("--baseline", default="fp32")
    ap.add_argument("--steps", type=int, default=4096)
    ap.add_argument("--streams", type=int, default=8)
    args = ap.parse_args()
    text = args.data.read_text(encoding="utf-8")

    results = []
    for folder in args.dirs:
        # baseline, variant fed its own state, variant fed the baseline's state: three runs in lockstep
        r = run_drift(
            folder, text, variant=args.variant, baseline=args.baseline, steps=args.steps, streams=args.streams
        )
        se = summarize(r)["state_error"]
        delta, stderr = r.loss_delta()
        alpha, acc = se["fit"]["alpha"], se["accumulation_last"]
        print(
            f"{r.name:>12} ({r.arch:7}) {r.variant.variant} vs {r.baseline.variant}: state error "
            f"t=10 {se['at'].get('10', 0):.2e} -> t={r.steps} {se['at']['last']:.2e} (alpha {_num(alpha, '+.2f')}), "
            f"accumulated/one-step {_num(acc, '.2f')}, loss {delta:+.4f} ± {2 * stderr:.4f} nats/char, "
            f"top-1 agreement {r.top1.mean():.2%}"
        )
        results.append(r)
    settings = {"data": str(args.data), "steps": args.steps, "streams": args.streams, "variant": args.variant}
    report = write_report(results, args.out, {**settings, "baseline": args.baseline})
    for m in report["models"]:
        print(f"\n{m['name']}: {m['verdict']}")
    print(f"\nopen {args.out / 'report.html'}")


if __name__ == "__main__":
    main()
