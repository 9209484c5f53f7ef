"""Embed the rnnedge runtime (ONNX Runtime + NumPy, no torch). Usage: python embed_runtime.py EXPORT_DIR"""

import sys

from rnnedge.runtime import Sampler, StepSession

session = StepSession(sys.argv[1] if len(sys.argv) > 1 else "export", threads=2)  # folder with step.onnx
sample = Sampler(temperature=0.8, top_k=20, seed=0)
logits = session.feed_text("ROMEO:")  # run the prompt through the recurrent state
for _ in range(200):
    token = sample(logits)  # (1,) int64
    print(session.vocab.chars[token[0]], end="", flush=True)
    logits = session.feed(token)
saved = session.state  # dict of numpy arrays: resume later with `session.state = saved`
print()
