"""The contract between the exporter and everything downstream (torch-free, onnx-free, numpy-free).

An export folder holds `parallel.onnx`, `step.onnx` and `manifest.json`; each precision variant adds
`<graph>.<variant>.onnx` (e.g. `step.int8-dynamic.onnx`), named after the recipe that made it. Each
.onnx describes itself in metadata_props, so a runtime needs nothing but the file:

    rnnedge.format        contract version (FORMAT_VERSION); absent in files from rnnedge 0.1 (= 1)
    rnnedge.version       package version that wrote it
    rnnedge.graph         "parallel" | "step"
    rnnedge.vocab         the characters, in token-id order (char tokenizer)
    rnnedge.tokenizer     format 3, instead of rnnedge.vocab: {"kind": "bytes" | "hf", "size", and for hf
                          "file" (shipped next to the graph) and its "sha256"} (rnnedge/tokenizer.py)
    rnnedge.config        model config (JSON)
    rnnedge.states        JSON list of {"name", "input", "output", "shape", "dtype", "kind"}:
                          shape is the full shape as the graph declares it, "batch" the only
                          symbolic dim, e.g. ["batch", 256] (a recurrent h) or ["batch", 4, 128, 32]
                          (a KV cache); a fixed-batch graph writes its batch there: [1, 256]
    rnnedge.ids_dtype     the dtype of input_ids: "int64", or "int32" (the mobile graph, `--ids int32`);
                          absent in older files (the graph's input says it)
    rnnedge.fixed_batch   fixed-batch graphs only (mobile/, qnn-htp/): the batch every input and output has
    rnnedge.max_seq_len   parallel only: longest T one call is exact for
    rnnedge.matmuls       step only: JSON [[name, k, n], ...], the weight products of one token (the floor)
    rnnedge.variant       the precision variant ("fp32", or a recipe name)
    rnnedge.recipe        variants only: the recipe (JSON) that made the file
    rnnedge.quantization  variants only: what the quantizer did (JSON)

Inputs:  input_ids int64 (or int32) [batch, time] (parallel) or [batch] (step), then state_in.<layer>.<name>
Outputs: logits [batch, time, vocab] or [batch, vocab], then state_out.<layer>.<name> (same order,
shapes and dtypes as the state inputs).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnnedge.errors import ConfigError, GraphError
from rnnedge.vocab import CharVocab

FORMAT_VERSION = 3  # the newest this rnnedge reads; char-vocabulary graphs are still written as format 2
CHAR_FORMAT = 2
INPUT_IDS = "input_ids"
LOGITS = "logits"
TOKEN_TABLE_PREFIX = "rnnedge_token_table"  # step-graph initializers of per-token values (exporter/token_tables.py)
GRAPH_KINDS = ("parallel", "step")
BATCH = "batch"  # the one symbolic dimension a state may have
FP32 = "fp32"  # the variant name of the exported graphs themselves
MANIFEST = "manifest.json"
PREFIX = "rnnedge."
STATE_DTYPES = ("float32", "float16", "int64", "int32")
IDS_DTYPES = ("int64", "int32")  # what input_ids may be (`rnnedge export --ids`)
MAX_FIXED_BATCH = 4096
STATE_KINDS = ("recurrent", "kv", "position")
VARIANT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
MAX_STATE_ELEMENTS = 1 << 28  # per stream: a state larger than 1 GiB of fp32 is a damaged file
MAX_TOTAL_ELEMENTS = 1 << 30  # all states of a stream, and all weights of rnnedge.matmuls, together
MAX_METADATA_CHARS = 1 << 20  # per entry: refuse absurd strings before parsing them
MAX_SEQ_LEN = 1 << 24  # the longest scan an exported parallel graph may claim (rnnedge.max_seq_len)


def state_input_name(state: str) -> str:
    return f"state_in.{state}"


def state_output_name(state: str) -> str:
    return f"state_out.{state}"


def check_variant_name(variant: str) -> str:
    """`variant` if it is a usable file-name part (lower-case letters, digits, '-'); GraphError otherwise."""
    if not isinstance(variant, str) or not VARIANT_PATTERN.match(variant):
        raise GraphError(f"variant name {variant!r} must be lower-case letters, digits and '-' (e.g. int8-dynamic)")
    return variant


def graph_file(kind: str, variant: str = FP32) -> str:
    """File name of a graph: `step.onnx` for fp32, `step.<variant>.onnx` for a precision variant."""
    if kind not in GRAPH_KINDS:
        raise GraphError(f"unknown graph kind {kind!r}; one of {', '.join(GRAPH_KINDS)}")
    return f"{kind}.onnx" if variant == FP32 else f"{kind}.{check_variant_name(variant)}.onnx"


def split_graph_file(name: str) -> tuple[str, str] | None:
    """(kind, variant) for a graph file name this contract produces, else None."""
    parts = name.split(".")
    if len(parts) == 2 and parts[1] == "onnx" and parts[0] in GRAPH_KINDS:
        return parts[0], FP32
    if len(parts) == 3 and parts[2] == "onnx" and parts[0] in GRAPH_KINDS and VARIANT_PATTERN.match(parts[1]):
        return parts[0], parts[1]
    return None


def list_variants(folder: str | Path) -> dict[str, dict[str, Path]]:
    """{variant: {kind: path}} of the graph files in an export folder (fp32 first, then by name); a
    commit a killed writer left there is rolled forward first (rnnedge/commit.py `settle`)."""
    from rnnedge.commit import settle

    found: dict[str, dict[str, Path]] = {}
    root = Path(folder)
    if not root.is_dir():
        return found
    settle(root)
    for path in sorted(root.iterdir()):
        split = split_graph_file(path.name)
        if split is not None and path.is_file():
            found.setdefault(split[1], {})[split[0]] = path
    return dict(sorted(found.items(), key=lambda kv: (kv[0] != FP32, kv[0])))


@dataclass(frozen=True)
class StateInfo:
    """One state tensor of a graph: full shape (symbolic `batch` plus fixed dims), dtype and role."""

    name: str  # e.g. "0.h", "2.k"
    input: str  # graph input name
    output: str  # graph output name
    shape: tuple[int | str, ...]  # e.g. ("batch", 256), ("batch", heads, context, head_dim), or (1, 256) fixed
    dtype: str = "float32"
    kind: str = "recurrent"  # recurrent | kv | position

    def __post_init__(self) -> None:
        if self.dtype not in STATE_DTYPES:
            raise GraphError(f"state {self.name!r}: dtype {self.dtype!r} is not one of {', '.join(STATE_DTYPES)}")
        if self.kind not in STATE_KINDS:
            raise GraphError(f"state {self.name!r}: kind {self.kind!r} is not one of {', '.join(STATE_KINDS)}")
        first = self.shape[0] if self.shape else None
        fixed = isinstance(first, int) and not isinstance(first, bool) and 1 <= first <= MAX_FIXED_BATCH
        if first != BATCH and not fixed:
            raise GraphError(
                f"state {self.name!r}: shape {list(self.shape)} must start with {BATCH!r} or a fixed batch"
            )
        for d in self.shape[1:]:
            if isinstance(d, bool) or not isinstance(d, int) or d < 1:
                raise GraphError(f"state {self.name!r}: dim {d!r} of {list(self.shape)} must be a positive integer")
        if self.elements_per_stream > MAX_STATE_ELEMENTS:
            raise GraphError(f"state {self.name!r}: shape {list(self.shape)} is implausibly large")

    @property
    def layer(self) -> int:
        return int(self.name.split(".", 1)[0])

    @property
    def fixed_batch(self) -> int | None:
        """The batch a fixed-shape graph declares for this state (its first dim), None when symbolic."""
        return None if self.shape[0] == BATCH else int(self.shape[0])

    @property
    def elements_per_stream(self) -> int:
        n = 1
        for d in self.shape[1:]:
            n *= int(d)
        return n

    def concrete_shape(self, batch: int) -> tuple[int, ...]:
        """The shape with `batch` filled in (a fixed-batch graph serves B streams in B/N calls: any batch)."""
        return (int(batch), *(int(d) for d in self.shape[1:]))

    def nbytes_per_stream(self) -> int:
        width = {"float32": 4, "float16": 2, "int64": 8, "int32": 4}[self.dtype]
        return self.elements_per_stream * width

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "input": self.input,
            "output": self.output,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "kind": self.kind,
        }


def make_state(name: str, shape: tuple[int | str, ...], dtype: str = "float32", kind: str = "recurrent") -> StateInfo:
    """A StateInfo with the contract's input/output names for state `name` (e.g. '0.h')."""
    return StateInfo(name, state_input_name(name), state_output_name(name), tuple(shape), dtype, kind)


@dataclass(frozen=True)
class GraphInfo:
    """What an rnnedge .onnx file says about itself."""

    kind: str
    vocab: Any  # CharVocab | rnnedge.tokenizer.ByteTokenizer | HFTokenizer: encode/decode/len
    config: dict[str, Any]
    states: tuple[StateInfo, ...]
    version: str
    max_seq_len: int | None = None
    quantization: dict[str, Any] | None = None
    variant: str = FP32
    recipe: dict[str, Any] | None = None
    matmuls: tuple[tuple[str, int, int], ...] = field(default=())
    format: int = 0  # the file's contract version; 0: what this rnnedge writes (2 for characters, else 3)
    ids_dtype: str | None = None  # "int64" | "int32"; None: not recorded (an older file)
    fixed_batch: int | None = None  # the batch of a fixed-shape graph; None: symbolic

    def __post_init__(self) -> None:
        if self.format == 0:
            object.__setattr__(self, "format", CHAR_FORMAT if isinstance(self.vocab, CharVocab) else FORMAT_VERSION)

    @property
    def arch(self) -> str:
        return str(self.config.get("arch", "?"))

    def state_bytes_per_stream(self) -> int:
        return sum(s.nbytes_per_stream() for s in self.states)

    def same_model(self, other: GraphInfo) -> bool:
        """Same config, vocabulary and state contract (the precision may differ)."""
        return self.config == other.config and self.vocab == other.vocab and self.states == other.states

    def to_metadata(self) -> dict[str, str]:
        """The metadata_props entries (all strings) that describe this graph."""
        chars = isinstance(self.vocab, CharVocab)  # characters: exactly the format-2 entries, in their order
        meta = {
            PREFIX + "format": str(CHAR_FORMAT if chars else FORMAT_VERSION),
            PREFIX + "version": self.version,
            PREFIX + "graph": self.kind,
            **(
                {PREFIX + "vocab": self.vocab.chars}
                if chars
                else {PREFIX + "tokenizer": json.dumps(self.vocab.to_entry(), sort_keys=True)}
            ),
            PREFIX + "config": json.dumps(self.config, sort_keys=True),
            PREFIX + "states": json.dumps([s.to_dict() for s in self.states]),
            PREFIX + "variant": self.variant,
        }
        if self.max_seq_len is not None:
            meta[PREFIX + "max_seq_len"] = str(self.max_seq_len)
        if self.matmuls:
            meta[PREFIX + "matmuls"] = json.dumps([list(m) for m in self.matmuls])
        if self.recipe is not None:
            meta[PREFIX + "recipe"] = json.dumps(self.recipe, sort_keys=True)
        if self.quantization is not None:
            meta[PREFIX + "quantization"] = json.dumps(self.quantization, sort_keys=True)
        if self.ids_dtype is not None:
            meta[PREFIX + "ids_dtype"] = self.ids_dtype
        if self.fixed_batch is not None:
            meta[PREFIX + "fixed_batch"] = str(self.fixed_batch)
        return meta


def _state(entry: Any) -> StateInfo:
    if not isinstance(entry, dict):
        raise GraphError(f"state entry {entry!r} is not an object")
    shape = entry["shape"]
    if not isinstance(shape, list) or len(shape) > 8:
        raise GraphError(f"state {entry.get('name')!r}: shape {shape!r} is not a list of at most 8 dims")
    return StateInfo(
        str(entry["name"]),
        str(entry["input"]),
        str(entry["output"]),
        tuple(shape),
        str(entry.get("dtype", "float32")),  # format 1 files: float32 [batch, width]
        str(entry.get("kind", "recurrent")),
    )


def _max_seq_len(raw: str | None, source: str) -> int | None:
    if raw is None:
        return None
    value = int(raw)
    if not 1 <= value <= MAX_SEQ_LEN:
        raise GraphError(f"{source}: rnnedge.max_seq_len {value} is not between 1 and {MAX_SEQ_LEN}")
    return value


def _matmuls(raw: str | None, source: str) -> tuple[tuple[str, int, int], ...]:
    """rnnedge.matmuls: [name, k, n] entries of positive sizes whose weights fit MAX_TOTAL_ELEMENTS together."""
    if not raw:
        return ()
    entries = json.loads(raw)
    if not isinstance(entries, list) or len(entries) > 4096:
        raise GraphError(f"{source}: rnnedge.matmuls is not a list of at most 4096 products")
    products = tuple((str(n), int(k), int(m)) for n, k, m in entries)
    if any(k < 1 or m < 1 for _, k, m in products) or sum(k * m for _, k, m in products) > MAX_TOTAL_ELEMENTS:
        raise GraphError(f"{source}: rnnedge.matmuls names implausible weight shapes; refusing the file")
    return products


def _ids_and_batch(
    meta: Mapping[str, str], states: tuple[StateInfo, ...], source: str
) -> tuple[str | None, int | None]:
    """rnnedge.ids_dtype and rnnedge.fixed_batch, checked against each other and the states' first dims."""
    ids_dtype = meta.get(PREFIX + "ids_dtype")
    if ids_dtype is not None and ids_dtype not in IDS_DTYPES:
        raise GraphError(f"{source}: rnnedge.ids_dtype {ids_dtype!r} is not one of {', '.join(IDS_DTYPES)}")
    raw = meta.get(PREFIX + "fixed_batch")
    fixed = int(raw) if raw is not None else None
    if fixed is not None and not 1 <= fixed <= MAX_FIXED_BATCH:
        raise GraphError(f"{source}: rnnedge.fixed_batch {fixed} is not between 1 and {MAX_FIXED_BATCH}")
    firsts = {s.fixed_batch for s in states if s.fixed_batch is not None}
    if len(firsts) > 1 or (firsts and fixed is not None and firsts != {fixed}):
        raise GraphError(f"{source}: its states' batch {sorted(firsts)} contradicts rnnedge.fixed_batch {raw}")
    return ids_dtype, fixed if fixed is not None else next(iter(firsts), None)


def _vocab(meta: Mapping[str, str], source: str) -> Any:
    """The graph's tokenizer: its characters, or the rnnedge.tokenizer entry (an HF file is looked for
    next to the graph file when `source` is one)."""
    if PREFIX + "tokenizer" not in meta:
        return CharVocab(meta[PREFIX + "vocab"])
    from rnnedge.tokenizer import from_entry

    where = Path(source)
    base = where.parent if where.suffix in (".onnx", ".ort") and where.is_file() else None
    return from_entry(json.loads(meta[PREFIX + "tokenizer"]), base, source)


def parse_metadata(meta: Mapping[str, str], source: str = "graph") -> GraphInfo:
    """GraphInfo from metadata_props (onnx) or ORT's custom_metadata_map; GraphError if not rnnedge's.

    Files from rnnedge 0.1 (no `rnnedge.format`, int8 files with `rnnedge.quantization`) still load;
    a file from a newer contract is refused with one line naming both versions.
    """
    if PREFIX + "graph" not in meta:
        raise GraphError(f"{source} has no rnnedge metadata (was it written by `rnnedge export`?)")
    try:
        too_long = [k for k, v in meta.items() if k.startswith(PREFIX) and len(v) > MAX_METADATA_CHARS]
        if too_long:
            raise GraphError(f"{source}: metadata entry {too_long[0]} is implausibly long; refusing the file")
        fmt = int(meta.get(PREFIX + "format", "1"))
        if fmt > FORMAT_VERSION or fmt < 1:
            raise GraphError(
                f"{source} uses rnnedge graph format {fmt} (written by rnnedge {meta.get(PREFIX + 'version', '?')}); "
                f"this rnnedge reads formats 1-{FORMAT_VERSION}: upgrade rnnedge or re-export"
            )
        kind = meta[PREFIX + "graph"]
        if kind not in GRAPH_KINDS:
            raise GraphError(f"{source}: unknown graph kind {kind!r}")
        raw_states = json.loads(meta[PREFIX + "states"])
        if not isinstance(raw_states, list) or len(raw_states) > 4096:
            raise GraphError(f"{source}: rnnedge.states is not a list of at most 4096 states")
        states = tuple(_state(s) for s in raw_states)
        if sum(s.elements_per_stream for s in states) > MAX_TOTAL_ELEMENTS:
            raise GraphError(f"{source}: its {len(states)} states are implausibly large together; refusing the file")
        quant = meta.get(PREFIX + "quantization")
        recipe = meta.get(PREFIX + "recipe")
        max_len = meta.get(PREFIX + "max_seq_len")
        matmuls = meta.get(PREFIX + "matmuls")
        variant = check_variant_name(meta.get(PREFIX + "variant") or ("int8" if quant else FP32))  # format 1: int8
        config = json.loads(meta[PREFIX + "config"])
        if not isinstance(config, dict):
            raise GraphError(f"{source}: rnnedge.config is not a JSON object")
        ids_dtype, fixed_batch = _ids_and_batch(meta, states, source)
        return GraphInfo(
            kind=kind,
            vocab=_vocab(meta, source),
            config=config,
            states=states,
            version=meta.get(PREFIX + "version", "?"),
            max_seq_len=_max_seq_len(max_len, source),
            quantization=json.loads(quant) if quant else None,
            variant=variant,
            recipe=json.loads(recipe) if recipe else None,
            matmuls=_matmuls(matmuls, source),
            format=fmt,
            ids_dtype=ids_dtype,
            fixed_batch=fixed_batch,
        )
    except GraphError as exc:  # a state's own check does not know the file: name it
        if source in str(exc):
            raise
        raise GraphError(f"{source}: {exc}") from exc
    except ConfigError as exc:  # the vocabulary: empty, repeated characters
        raise GraphError(f"{source}: rnnedge.vocab: {exc}") from exc
    except (KeyError, ValueError, TypeError, IndexError, RecursionError) as exc:
        raise GraphError(f"{source} has damaged rnnedge metadata: {exc!r}") from exc
