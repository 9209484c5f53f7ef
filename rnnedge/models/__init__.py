"""Torch models: the scan math, the four mixers and the char LM."""

from rnnedge.models.config import ARCHS, STATE_NAMES, ModelConfig
from rnnedge.models.lm import CharLM, build_model, fixed_scan_levels

__all__ = ["ARCHS", "STATE_NAMES", "CharLM", "ModelConfig", "build_model", "fixed_scan_levels"]
