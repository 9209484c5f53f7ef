"""Torch training: data, the train loop, checkpoints, evaluation.

Submodules import torch; this package itself does not (so `default_model_path` is torch-free).
"""

from rnnedge.assets import default_model_path

__all__ = ["default_model_path"]
