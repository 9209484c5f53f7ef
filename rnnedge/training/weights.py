"""A weights file checked against its config before anything is allocated.

A safetensors file starts with an 8-byte little-endian header length and a JSON header naming every
tensor's dtype, shape and byte range; parsing it loads no tensor. `check_weights_header` compares it
with the parameter shapes the config implies (the model built on torch's "meta" device, which
allocates no storage), so a config.json with an absurd n_layers or d_model is refused in one line
instead of building a model that does not fit in memory.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import torch

from rnnedge.errors import CheckpointError, ConfigError
from rnnedge.models import ModelConfig, build_model

# Bytes per element of the safetensors dtypes a checkpoint may hold.
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
MAX_HEADER_BYTES = 1 << 24  # 16 MiB of JSON describes far more tensors than any rnnedge model has


@dataclass(frozen=True)
class TensorEntry:
    dtype: str
    shape: tuple[int, ...]


def parse_weights_header(data: bytes, where: str | os.PathLike[str]) -> dict[str, TensorEntry]:
    """{name: TensorEntry} from a safetensors file's bytes, every entry checked against the data it
    points to; CheckpointError (one line, naming `where`) for anything malformed. Loads no tensor."""
    size = len(data)
    n = _header_length(data[:8], size, where)
    try:
        header = json.loads(data[8 : 8 + n])
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{where} is corrupt: its safetensors header is not JSON ({str(exc)[:200]})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{where} is corrupt: its safetensors header is not a JSON object")
    data_bytes = size - 8 - n
    return {name: _entry(where, name, entry, data_bytes) for name, entry in header.items() if name != "__metadata__"}


def _header_length(head: bytes, size: int, where: str | os.PathLike[str]) -> int:
    if len(head) < 8:
        raise CheckpointError(f"{where} is truncated (no safetensors header)")
    n = int.from_bytes(head[:8], "little")
    if n > MAX_HEADER_BYTES or n > size - 8:
        raise CheckpointError(f"{where} is corrupt or truncated: header of {n} bytes in a {size}-byte file")
    return n


def _entry(where: str | os.PathLike[str], name: str, entry: object, data_bytes: int) -> TensorEntry:
    bad = f"{where} is corrupt: header entry {name!r}"
    if not isinstance(entry, dict):
        raise CheckpointError(f"{bad} is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in DTYPE_BYTES:
        raise CheckpointError(f"{bad} has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise CheckpointError(f"{bad} has a bad shape {shape!r}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1] <= data_bytes
    ):
        raise CheckpointError(f"{bad} points outside the file ({offsets!r}; {data_bytes} data bytes)")
    numel = 1
    for d in shape:
        numel *= d
    if offsets[1] - offsets[0] != numel * DTYPE_BYTES[dtype]:
        raise CheckpointError(f"{bad}: shape {shape} of {dtype} does not fit its {offsets[1] - offsets[0]} bytes")
    return TensorEntry(dtype=dtype, shape=tuple(shape))


def implied_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """{parameter name: shape} of the model `config` describes, without allocating its weights.

    ConfigError when the shapes cannot even be described (a tensor beyond 2**63 elements).
    """
    try:
        with torch.device("meta"):
            model = build_model(config)
    except (RuntimeError, OverflowError, ValueError, TypeError) as exc:  # torch.empty: TypeError past 2**63
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"the model config implies impossible tensor shapes ({first[:200]})") from None
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def check_weights_header(config: ModelConfig, header: dict[str, TensorEntry], where: str | os.PathLike[str]) -> None:
    """CheckpointError (one line) unless the weights file holds exactly the tensors `config` implies.

    The layer count is compared first (from the tensor names), so a config claiming millions of
    layers is refused before any module is built.
    """
    blocks = {name.split(".")[1] for name in header if name.startswith("blocks.") and name.count(".") >= 2}
    if len(blocks) != config.n_layers:
        raise CheckpointError(
            f"{where}: config.json says n_layers {config.n_layers} but the weights hold {len(blocks)} blocks"
        )
    try:
        own = implied_shapes(config)
    except ConfigError as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    missing = sorted(set(own) - set(header))
    extra = sorted(set(header) - set(own))
    if missing or extra:
        raise CheckpointError(
            f"{where}: weights do not match a {config.arch} model "
            f"(missing {missing[:3]}, unexpected {extra[:3]}; {len(missing)} missing, {len(extra)} unexpected in all)"
        )
    for name, shape in own.items():
        if header[name].shape != shape:
            raise CheckpointError(f"{where}: weight {name} has shape {header[name].shape}, config implies {shape}")
