"""Bring your own model: a user's recurrent LM through rnnedge's exporter (torch + onnx).

    import rnnedge
    from rnnedge.byom import StateSpec
    rnnedge.export(module, states=[StateSpec("h", (2, "batch", 64))], tokenizer="bytes", out="runs/mine")

`rnnedge.byom.word_lm` adapts PyTorch word_language_model-shaped LMs (nn.LSTM / nn.GRU / nn.RNN),
`rnnedge.byom.minlm` lucidrains' minLM (PyPI mingru-pytorch). See docs/byom.md.
"""

from rnnedge.byom.api import export, wrap
from rnnedge.models.spec import StateSpec

__all__ = ["StateSpec", "export", "wrap"]
