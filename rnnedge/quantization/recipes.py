"""Precision recipes: one frozen config per method, a registry of named presets (onnx-free, torch-free).

A recipe only describes; its handler (`rnnedge.quantization.methods`, registered by recipe type)
turns it into graph bytes with ONNX Runtime's own tools. Its name is the variant name: it names the
files (`step.<name>.onnx`), the manifest's `variants` entry and the `--variant` the other commands
take. Its `to_dict()` goes into the graph's metadata (`rnnedge.recipe`), so every variant file says
how it was made.

    int8-dynamic   weights uint8 per channel, activations quantized per call (ORT quantize_dynamic); CPU EP
    int8-qdq       static QDQ int8 (7-bit weights, per channel), calibrated on real text timestep by timestep;
                   TensorRT-style

Both int8 presets are chosen to compute the same on every CPU (targets/isa.py): x86 AVX2-only CPUs sum
u8·s8 pairs in saturating int16 (VPMADDUBSW), VNNI/AMX and ARM64 dot products in exact int32. uint8
weights (u8·u8, widened to int16 first) and 7-bit weights (reduce_range: pair sums fit int16) are exact
on all of them, so a variant verified on one CPU holds on the others (benchmarks/int8_cpus.py measures it).
    fp16           weights and activations float16, I/O and state kept float32 by default
    int8-weight    weight-only int8 (MatMulNBits, 8 bits), activations float
    int4-weight    weight-only 4-bit (MatMulNBits, block 32), activations float
    a16w8, a8w8    qnn-htp target: the whole step graph QDQ through ORT's QNN config (uint16 or uint8
                   activations, uint8 weights), the recurrent state quantized too; calibrated over long
                   streams with the state fed back (quantization/methods/qnn.py)
    htp-fp16       qnn-htp target: the float graph, run in the HTP's fp16 mode (enable_htp_fp16_precision)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from rnnedge.errors import ConfigError
from rnnedge.graphmeta import FP32, GRAPH_KINDS, check_variant_name

CALIB_METHODS = ("minmax", "entropy", "percentile")
WEIGHT_TYPES = ("int8", "uint8")


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """Base of every recipe: its variant `name`, a `version` of the recipe's meaning, the graphs it makes."""

    kind: ClassVar[str] = "recipe"
    name: str
    version: int = 1
    graphs: tuple[str, ...] = GRAPH_KINDS
    keep_float: tuple[str, ...] = ()  # node-name / parameter-label globs left in fp32

    def __post_init__(self) -> None:
        if self.name == FP32:
            raise ConfigError("'fp32' names the exported graphs themselves; a recipe needs another name")
        check_variant_name(self.name)
        if not self.graphs or any(g not in GRAPH_KINDS for g in self.graphs):
            raise ConfigError(f"recipe {self.name}: graphs must be among {GRAPH_KINDS}, got {list(self.graphs)}")
        if not all(isinstance(p, str) and p for p in self.keep_float):
            raise ConfigError(f"recipe {self.name}: keep_float must be non-empty name patterns")

    @property
    def needs_calibration(self) -> bool:
        return False

    @property
    def keeps_state_float(self) -> bool:
        """True unless the recipe quantizes or casts the recurrent state itself."""
        return True

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for key, value in data.items():
            if isinstance(value, tuple):
                data[key] = list(value)
        return {"type": type(self).__name__, **data}


@dataclass(frozen=True, kw_only=True)
class DynamicInt8(Recipe):
    """ORT quantize_dynamic: uint8 asymmetric weights per output channel, uint8 activations quantized on the
    fly (per tensor). `weight_type="int8"` (symmetric s8, rnnedge 0.1's default) is exact only on CPUs with
    int32 dot products (VNNI, AMX, ARM64): on x86 AVX2 its max logit error grew 0.41 -> 1.22 (README)."""

    kind: ClassVar[str] = "int8-dynamic"
    per_channel: bool = True
    reduce_range: bool = False  # 7-bit weights: u8·s8 pair sums fit int16, so x86 AVX2's VPMADDUBSW cannot saturate
    weight_type: str = "uint8"  # MLAS's U8U8 kernels widen to 16 bits first: exact on every CPU

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.weight_type not in WEIGHT_TYPES:
            raise ConfigError(f"weight type must be one of {', '.join(WEIGHT_TYPES)}, not {self.weight_type!r}")


@dataclass(frozen=True, kw_only=True)
class StaticQdqInt8(Recipe):
    """ORT quantize_static in QDQ format, symmetric int8 (zero point 0, float bias): TensorRT takes it.

    Weights are 7-bit (`reduce_range`, still int8 with zero point 0) and per output channel by default:
    full 8-bit s8 weights saturate x86 AVX2's int16 pair sums, so the same file differed by up to 1.25
    logits between its .onnx and .ort forms there; 7-bit weights compute identically on every CPU.
    The embedding lookup stays float by default: it does no arithmetic to speed up, and on the bundled
    model quantizing it cost +0.0020 nats/char of the +0.0060 (benchmarks/int8_cpus.py)."""

    kind: ClassVar[str] = "int8-qdq"
    calib_method: str = "minmax"
    per_channel: bool = True
    quantize_state: bool = False  # the counter-example: clip the recurrent state to a calibrated range
    reduce_range: bool = True  # 7-bit weights (still symmetric int8): no int16 saturation on x86 AVX2
    calib_steps: int = 512  # step-graph timesteps run per calibration stream
    quantize_embedding: bool = False  # the embedding lookup (Gather) in int8 too: 1.5% of the bundled file, +0.002

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.calib_method not in CALIB_METHODS:
            raise ConfigError(f"calib method must be one of {', '.join(CALIB_METHODS)}, not {self.calib_method!r}")
        if isinstance(self.calib_steps, bool) or not isinstance(self.calib_steps, int) or self.calib_steps < 1:
            raise ConfigError(f"--calib-steps must be a positive integer, got {self.calib_steps!r}")

    @property
    def needs_calibration(self) -> bool:
        return True

    @property
    def keeps_state_float(self) -> bool:
        return not self.quantize_state


@dataclass(frozen=True, kw_only=True)
class Fp16(Recipe):
    """Weights and activations float16 (ORT's float16 converter); `keep_io_types` keeps I/O and state float32."""

    kind: ClassVar[str] = "fp16"
    keep_io_types: bool = True
    op_block_list: tuple[str, ...] = ()

    @property
    def keeps_state_float(self) -> bool:
        return self.keep_io_types


@dataclass(frozen=True, kw_only=True)
class WeightOnly(Recipe):
    """Weight-only quantization to MatMulNBits (ORT's MatMulNBitsQuantizer): activations stay float."""

    kind: ClassVar[str] = "weight-only"
    bits: int = 4
    block_size: int = 32
    symmetric: bool = True
    accuracy_level: int = 4  # 4: int8 compute inside MatMulNBits (fast on CPU); 0: ORT's default

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.bits not in (4, 8):
            raise ConfigError(f"weight-only bits must be 4 or 8, got {self.bits!r}")
        if self.block_size not in (16, 32, 64, 128, 256):
            raise ConfigError(f"block size must be a power of two in 16..256, got {self.block_size!r}")
        if self.accuracy_level not in (0, 1, 2, 3, 4):
            raise ConfigError(f"accuracy level must be 0-4, got {self.accuracy_level!r}")


@dataclass(frozen=True, kw_only=True)
class QnnQdq(Recipe):
    """Qualcomm HTP (qnn-htp target): every op QDQ through ORT's `get_qnn_qdq_config` (asymmetric uint
    activations of `activation_bits`, uint8 weights), the recurrent state included, so the HTP runs the
    graph with integer state. Calibrated with the state fed back over `calib_streams` streams of
    `calib_steps` steps; `verify_steps` steps are run on the HTP before writing (0: not run)."""

    kind: ClassVar[str] = "qnn-qdq"
    target: ClassVar[str] = "qnn-htp"
    graphs: tuple[str, ...] = ("step",)
    activation_bits: int = 16
    per_channel: bool = False
    calib_method: str = "minmax"
    calib_steps: int = 1000  # per stream: the state drifts over a long stream, 300 steps clipped it
    calib_streams: int = 8
    calib_feeds: int = 250  # feeds kept per stream (every k-th step)
    verify_steps: int = 100  # HTP simulator steps in the check before writing (~10 steps/s)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.graphs != ("step",):
            raise ConfigError(f"recipe {self.name}: the qnn-htp target takes the step graph only")
        if self.activation_bits not in (8, 16):
            raise ConfigError(f"recipe {self.name}: activation bits must be 8 or 16, got {self.activation_bits!r}")
        if self.calib_method != "minmax":
            raise ConfigError(f"recipe {self.name}: calib method must be minmax (the state's full range)")
        for key in ("calib_steps", "calib_streams", "calib_feeds"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"recipe {self.name}: {key} must be a positive integer, got {value!r}")
        if isinstance(self.verify_steps, bool) or not isinstance(self.verify_steps, int) or self.verify_steps < 0:
            raise ConfigError(f"recipe {self.name}: verify_steps must be an integer >= 0, got {self.verify_steps!r}")

    @property
    def needs_calibration(self) -> bool:
        return True

    @property
    def keeps_state_float(self) -> bool:
        return False


@dataclass(frozen=True, kw_only=True)
class HtpFp16(Recipe):
    """Qualcomm HTP (qnn-htp target) in fp16: the float graph as it is, which the qnn-htp provider runs
    with `enable_htp_fp16_precision` (its metadata names this recipe); `verify_steps` steps on the HTP."""

    kind: ClassVar[str] = "htp-fp16"
    target: ClassVar[str] = "qnn-htp"
    graphs: tuple[str, ...] = ("step",)
    verify_steps: int = 32  # ~0.4 s per step in the simulator's fp16 mode

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.graphs != ("step",):
            raise ConfigError(f"recipe {self.name}: the qnn-htp target takes the step graph only")
        if isinstance(self.verify_steps, bool) or not isinstance(self.verify_steps, int) or self.verify_steps < 0:
            raise ConfigError(f"recipe {self.name}: verify_steps must be an integer >= 0, got {self.verify_steps!r}")


RECIPE_TYPES: dict[str, type[Recipe]] = {
    cls.__name__: cls for cls in (DynamicInt8, StaticQdqInt8, Fp16, WeightOnly, QnnQdq, HtpFp16)
}
PRESETS: dict[str, Recipe] = {
    "int8-dynamic": DynamicInt8(name="int8-dynamic"),
    "int8-qdq": StaticQdqInt8(name="int8-qdq"),
    "fp16": Fp16(name="fp16"),
    "int8-weight": WeightOnly(name="int8-weight", bits=8, block_size=32),
    "int4-weight": WeightOnly(name="int4-weight", bits=4, block_size=32),
    "a16w8": QnnQdq(name="a16w8", activation_bits=16),
    "a8w8": QnnQdq(name="a8w8", activation_bits=8),
    "htp-fp16": HtpFp16(name="htp-fp16"),
}
ALIASES = {"dynamic": "int8-dynamic", "static": "int8-qdq", "qdq": "int8-qdq"}  # rnnedge 0.1's --method names


def recipe(name: str, /, **options: Any) -> Recipe:
    """The preset `name` (or an alias), with `options` replacing its fields; ConfigError on anything unknown.

    Options that are None are ignored, so CLI flags left unset keep the preset's values.
    """
    key = ALIASES.get(name, name)
    if key not in PRESETS:
        raise ConfigError(f"unknown precision recipe {name!r}; choose one of {', '.join(PRESETS)}")
    return with_options(PRESETS[key], **options)


def with_options(base: Recipe, **options: Any) -> Recipe:
    """`base` with `options` replacing its fields (None: keep), validated; ConfigError naming an unknown option."""
    given = {k: v for k, v in options.items() if v is not None}
    fields = {f.name for f in dataclasses.fields(base)}
    unknown = sorted(set(given) - fields)
    if unknown:
        raise ConfigError(
            f"recipe {base.name} has no option {', '.join(unknown)} (it takes: {', '.join(sorted(fields))})"
        )
    for k, v in given.items():
        if isinstance(v, list):
            given[k] = tuple(v)
    return dataclasses.replace(base, **given) if given else base


def recipe_from_dict(data: Any) -> Recipe:
    """Inverse of Recipe.to_dict (only the known recipe types; unknown fields refused)."""
    if not isinstance(data, dict) or data.get("type") not in RECIPE_TYPES:
        raise ConfigError(f"not a recipe description: {data!r}"[:200])
    cls = RECIPE_TYPES[data["type"]]
    fields = {f.name for f in dataclasses.fields(cls)}
    body: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k != "type"}
    unknown = sorted(set(body) - fields)
    if unknown:
        raise ConfigError(f"recipe {data.get('name')!r}: unknown fields {', '.join(unknown)}")
    return cls(**body)
