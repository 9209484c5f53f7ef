"""Embed the rnnedge runtime (ONNX Runtime + NumPy, no torch).

python examples/embed_runtime.py EXPORT_DIR [--variant int8-dynamic]
"""

import argparse

from rnnedge.runtime import Sampler, StepSession

ap = argparse.ArgumentParser(description="Stream 200 characters from an export folder's step graph.")
ap.add_argument("export", help="export folder (step.onnx inside) or a step .onnx file")
ap.add_argument("--variant", default="fp32", help="precision variant: fp32 or a recipe name (step.<name>.onnx)")
args = ap.parse_args()

session = StepSession(args.export, threads=2, variant=args.variant)
print(f"# {session.variant}: {session.state_bytes_per_stream} bytes of state per stream")
sample = Sampler(temperature=0.8, top_k=20, seed=0)
logits = session.feed_text("ROMEO:")  # run the prompt through the recurrent state
for _ in range(200):
    token = sample(logits)  # (1,) int64
    print(session.vocab.chars[token[0]], end="", flush=True)
    logits = session.feed(token)
saved = session.state  # {name: array in the state's own shape and dtype}: resume with `session.state = saved`
print()
