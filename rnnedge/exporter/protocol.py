"""What the exporter needs of a model (typing only): rnnedge's CharLM has it, and so does every user
module wrapped by rnnedge.byom (ProtocolLM). trace.py, verify.py, export.py and manifest.py read nothing else.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch

from rnnedge.graphmeta import StateInfo


class ExportConfig(Protocol):
    """rnnedge.models.ModelConfig, or rnnedge.byom.protocol.ProtocolConfig."""

    arch: str  # the name reports show; rnnedge's own: a registered mixer
    vocab_size: int

    def state_infos(self) -> tuple[StateInfo, ...]: ...  # every state, batch-first, graph order

    def to_dict(self) -> dict[str, Any]: ...  # rnnedge.config metadata and the manifest's source.config

    def weight_products(self) -> tuple[tuple[str, int, int], ...]: ...  # rnnedge.matmuls: one token's floor


class RecurrentLM(Protocol):
    """forward(ids (B, T), state) -> (logits (B, T, V), state); T > 1 the parallel form, T == 1 the step.
    Tolerance: `config.atol` when the config has one, else its mixer's MixerSpec.atol (verify.tolerance)."""

    config: Any  # an ExportConfig

    def init_state(self, batch: int) -> tuple[torch.Tensor, ...]: ...

    def __call__(
        self, ids: torch.Tensor, state: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]: ...

    def num_params(self) -> int: ...
