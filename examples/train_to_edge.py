"""Train -> export -> precision variant -> stream text, through the Python API (a short run on a 2-core CPU).

Usage: python examples/train_to_edge.py PATH_TO_TEXT [OUT_DIR]
"""

import sys
from pathlib import Path

from rnnedge.exporter import export_model
from rnnedge.quantization import quantize_export
from rnnedge.runtime import StepSession, generate
from rnnedge.training.config import TrainConfig
from rnnedge.training.train import train

text = sys.argv[1]
out = Path(sys.argv[2] if len(sys.argv) > 2 else "runs/example")

# 1. Train a small minGRU with the parallel scan (3 minutes of wall time at most).
config = TrainConfig(arch="mingru", n_layers=2, d_model=96, seq_len=128, steps=400, max_time=180, threads=2)
result = train(config, text, out / "checkpoint")
print(f"trained {result.steps_done} steps, val loss {result.val_loss:.3f} nats/char")

# 2. Export both graphs; every check runs in ONNX Runtime before anything is written.
exported = export_model(out / "checkpoint", out / "export", max_seq_len=4096)
print("graphs:", {k: str(p) for k, p in exported.paths.items()})

# 3. A precision variant (the int8-dynamic recipe: step.int8-dynamic.onnx + parallel.int8-dynamic.onnx),
#    checked on the text's held-out last 10% (the part training did not see).
full = Path(text).read_text(encoding="utf-8")
heldout = out / "heldout.txt"
heldout.write_text(full[int(len(full) * 0.9) :], encoding="utf-8")
quant = quantize_export(out / "export", "int8-dynamic", eval_text=heldout)
for kind, g in quant.graphs.items():
    print(f"{kind}: {quant.variant} loss delta {g['loss_delta']:+.4f} nats/char, size {g['size_ratio']:.2f}x")

# 4. Stream from the variant's step graph on ONNX Runtime (no torch needed for this part).
session = StepSession(out / "export", variant=quant.variant, threads=2)
for ch in generate(session, "\n", 200, temperature=0.8, seed=0):
    print(ch, end="", flush=True)
print()
