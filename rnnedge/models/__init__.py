"""Torch models: the scan math, one file per mixer, the char LM.

`registry` and `spec` import without torch (mixer names for CLI help and config checks); the torch
pieces below load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from rnnedge.models.config import ModelConfig
from rnnedge.models.registry import MIXER_NAMES, mixer_spec

_LAZY = {"CharLM": "rnnedge.models.lm", "build_model": "rnnedge.models.lm", "fixed_scan_levels": "rnnedge.models.lm"}

__all__ = ["MIXER_NAMES", "CharLM", "ModelConfig", "build_model", "fixed_scan_levels", "mixer_spec"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'rnnedge.models' has no attribute {name!r}")
