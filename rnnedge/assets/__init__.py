"""Files shipped inside the package (torch-free): the bundled default model."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def default_model_path() -> Path:
    """The bundled default checkpoint folder (a small minGRU trained on tiny-shakespeare).

    Holds model.safetensors + config.json; load it with `rnnedge.training.checkpoint.load_checkpoint`.
    """
    return _HERE / "default_model"


__all__ = ["default_model_path"]
