"""Ways to damage each kind of input, as tables: {case: (damage, what the one error line must name)}.

A damage function edits a private copy in place. Checkpoint damage takes the checkpoint folder,
graph damage the export folder (every .onnx in it, fp32 and variants alike), manifest damage the
export folder's manifest.json, text damage writes a bad text file and returns its path.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import external_data_helper
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from tests.faults.support import edit_json

Damage = Callable[[Path], Any]
NESTED = "[" * 100_000  # deeper than any JSON parser recurses


# -- checkpoints -------------------------------------------------------------------------------------


def _weights(folder: Path, change: Callable[[dict[str, np.ndarray]], None]) -> None:
    """Rewrite model.safetensors with `change` applied, with a checksum that vouches for the new file."""
    path = folder / "model.safetensors"
    tensors = {k: v.copy() for k, v in st_load(path.read_bytes()).items()}
    change(tensors)
    data = st_save(tensors)
    path.write_bytes(data)
    edit_json(folder / "config.json", lambda m: m.update(weights_sha256=hashlib.sha256(data).hexdigest()))


def _unchecked(folder: Path, change: Callable[[bytes], bytes]) -> None:
    """Damage model.safetensors' bytes with its checksum dropped, so the loader's own checks must see it."""
    path = folder / "model.safetensors"
    path.write_bytes(change(path.read_bytes()))
    edit_json(folder / "config.json", lambda m: m.update(weights_sha256=None))


def _sized(header: bytes) -> bytes:
    """A safetensors file that is nothing but this header."""
    return len(header).to_bytes(8, "little") + header


def _flip(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x10]) + data[offset + 1 :]


def _set(tensor: str, index: tuple[int, ...], value: float) -> Callable[[dict[str, np.ndarray]], None]:
    return lambda t: t[tensor].__setitem__(index, value)


def _model(**changes: Any) -> Damage:
    return lambda f: edit_json(f / "config.json", lambda m: m["model"].update(changes))


def _meta(**changes: Any) -> Damage:
    return lambda f: edit_json(f / "config.json", lambda m: m.update(changes))


def _config_text(text: str) -> Damage:
    return lambda f: (f / "config.json").write_text(text, encoding="utf-8")


def _vocab(change: Callable[[str], Any]) -> Damage:
    return lambda f: edit_json(f / "config.json", lambda m: m.update(vocab=change(m["vocab"])))


CKPT_FAULTS: dict[str, tuple[Damage, str]] = {
    "weights-missing": (lambda f: (f / "model.safetensors").unlink(), "model.safetensors"),
    "weights-truncated": (lambda f: _unchecked(f, lambda d: d[: len(d) // 2]), "model.safetensors"),
    "weights-random-bytes": (lambda f: _unchecked(f, lambda d: np.random.default_rng(0).bytes(len(d))), "safetensors"),
    "weights-header-bitflip": (lambda f: _unchecked(f, lambda d: _flip(d, 8)), "model.safetensors"),
    "weights-header-nested": (lambda f: _unchecked(f, lambda d: _sized(NESTED.encode())), "model.safetensors"),
    "weights-data-bitflip": (lambda f: (f / "model.safetensors").write_bytes(_flip(_read(f), -40)), "checksum"),
    "weights-wrong-shape": (lambda f: _weights(f, lambda t: t.update({"embed.weight": np.zeros((3, 8))})), "shape"),
    "weights-nan": (lambda f: _weights(f, _set("embed.weight", (0, 0), np.nan)), "NaN"),
    "weights-inf": (lambda f: _weights(f, _set("head.weight", (1, 1), -np.inf)), "infinite"),
    "config-invalid-json": (_config_text('{"format": "rnnedge-checkpoint",'), "config.json"),
    "config-nested-json": (_config_text(NESTED), "config.json"),
    "config-not-object": (_config_text("[1, 2]"), "config.json"),
    "config-empty-file": (_config_text(""), "config.json"),
    "config-newer-format": (_meta(format_version=99), "format_version"),
    "config-string-size": (_model(d_model="16"), "d_model"),
    "config-float-layers": (_model(n_layers=1.5), "n_layers"),
    "config-nan-expansion": (_model(expansion=float("nan")), "expansion"),
    "config-inf-ratio": (_model(mlp_ratio=float("inf")), "mlp_ratio"),
    "config-unknown-key": (_model(n_experts=8), "unknown keys"),
    "config-absurd-layers": (_model(n_layers=10**9), "n_layers"),
    "config-absurd-width": (_model(d_model=10**12), "impossible"),
    "config-unknown-arch": (_model(arch="mamba"), "arch"),
    "vocab-empty": (_vocab(lambda v: ""), "empty"),
    "vocab-duplicates": (_vocab(lambda v: v[:-1] + v[0]), "repeated"),
    "vocab-size-mismatch": (_vocab(lambda v: v[:-1]), "vocab"),
    "vocab-not-a-string": (_vocab(list), "vocab"),
}


def _read(folder: Path) -> bytes:
    return (folder / "model.safetensors").read_bytes()


# -- ONNX graphs ----------------------------------------------------------------------------------------


def _graphs(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.onnx"))


def _bytes(change: Callable[[bytes], bytes]) -> Damage:
    def damage(folder: Path) -> None:
        for path in _graphs(folder):
            path.write_bytes(change(path.read_bytes()))

    return damage


def _metadata(change: Callable[[dict[str, str]], None]) -> Damage:
    """Edit every graph's metadata_props (a dict of strings) and save the graph."""

    def damage(folder: Path) -> None:
        for path in _graphs(folder):
            model = onnx.load(str(path))
            meta = {p.key: p.value for p in model.metadata_props}
            change(meta)
            del model.metadata_props[:]
            onnx.helper.set_model_props(model, meta)
            path.write_bytes(model.SerializeToString())

    return damage


def _entry(key: str, value: str | None) -> Damage:
    def change(meta: dict[str, str]) -> None:
        if value is None:
            meta.pop("rnnedge." + key, None)
        else:
            meta["rnnedge." + key] = value

    return _metadata(change)


def _states(change: Callable[[list[dict[str, Any]]], Any]) -> Damage:
    def edit(meta: dict[str, str]) -> None:
        states = json.loads(meta["rnnedge.states"])
        new = change(states)
        meta["rnnedge.states"] = json.dumps(states if new is None else new)

    return _metadata(edit)


def _each_state(**changes: Any) -> Callable[[list[dict[str, Any]]], None]:
    def change(states: list[dict[str, Any]]) -> None:
        for s in states:
            s.update(changes)

    return change


def _many_states(states: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """64 states of 2**25 elements each: every one plausible, together 8 GiB of fp32 per stream."""
    return [{**states[0], "name": f"{i}.h", "shape": ["batch", 1 << 25]} for i in range(64)]


def _no_metadata(folder: Path) -> None:
    for path in _graphs(folder):
        model = onnx.load(str(path))
        del model.metadata_props[:]
        path.write_bytes(model.SerializeToString())


def _external_outside(folder: Path) -> None:
    """Move each graph's largest weight to external data named `../outside.bin` (beside the folder)."""
    for path in _graphs(folder):
        model = onnx.load(str(path))
        tensor = max(model.graph.initializer, key=lambda t: len(t.raw_data))
        (folder.parent / "outside.bin").write_bytes(tensor.raw_data)
        external_data_helper.set_external_data(tensor, location="../outside.bin", offset=0, length=len(tensor.raw_data))
        tensor.ClearField("raw_data")
        path.write_bytes(model.SerializeToString())


def _swap_kinds(folder: Path) -> None:
    """step.onnx holds the parallel graph and parallel.onnx the step graph."""
    step, parallel = (folder / "step.onnx").read_bytes(), (folder / "parallel.onnx").read_bytes()
    (folder / "step.onnx").write_bytes(parallel)
    (folder / "parallel.onnx").write_bytes(step)


def _drop_last_char(meta: dict[str, str]) -> None:
    meta["rnnedge.vocab"] = meta["rnnedge.vocab"][:-1]


ALL_GRAPH = frozenset({"eval-export", "quantize", "drift", "generate", "bench", "build-engine", "compare", "inspect"})
RUNS_GRAPH = ALL_GRAPH - {"build-engine"}  # build-engine without tensorrt stops after the static checks
PARALLEL = frozenset({"eval-export", "quantize", "bench", "build-engine", "compare"})  # read parallel.onnx
STEP = frozenset({"quantize", "drift", "generate", "bench", "compare"})  # read step.onnx

# {case: (damage, needle, the commands that read what it damages)}
GRAPH_FAULTS: dict[str, tuple[Damage, str, frozenset[str]]] = {
    "onnx-truncated": (_bytes(lambda d: d[: len(d) // 2]), ".onnx", ALL_GRAPH),
    "onnx-empty": (_bytes(lambda d: b""), ".onnx", ALL_GRAPH),
    "onnx-random-bytes": (_bytes(lambda d: np.random.default_rng(1).bytes(len(d))), ".onnx", ALL_GRAPH),
    "onnx-no-rnnedge-metadata": (_no_metadata, "no rnnedge metadata", ALL_GRAPH),
    "onnx-external-data-outside": (_external_outside, ".onnx", ALL_GRAPH),
    "onnx-kinds-swapped": (_swap_kinds, "graph", RUNS_GRAPH | {"build-engine"}),
    "meta-newer-format": (_entry("format", "99"), "format 99", ALL_GRAPH),
    "meta-format-not-a-number": (_entry("format", "two"), "damaged", ALL_GRAPH),
    "meta-oversized-string": (_entry("config", json.dumps({"pad": "x" * (2 << 20)})), "implausibly long", ALL_GRAPH),
    "meta-nested-json": (_entry("states", NESTED), "damaged", ALL_GRAPH),
    "meta-states-not-a-list": (_entry("states", '{"0.h": 1}'), "states", ALL_GRAPH),
    "meta-states-missing": (_entry("states", None), "damaged", ALL_GRAPH),
    "meta-absurd-state-shape": (_states(_each_state(shape=["batch", 100_000, 100_000])), "implausibly", ALL_GRAPH),
    "meta-absurd-total-state": (_states(_many_states), "implausibly", ALL_GRAPH),
    "meta-negative-dim": (_states(_each_state(shape=["batch", -4])), "positive integer", ALL_GRAPH),
    "meta-state-rank-9": (_states(_each_state(shape=["batch", *[1] * 8])), "8 dims", ALL_GRAPH),
    "meta-bogus-dtype": (_states(_each_state(dtype="float128")), "dtype", ALL_GRAPH),
    "meta-config-not-object": (_entry("config", "[1]"), "config", ALL_GRAPH),
    "meta-vocab-empty": (_entry("vocab", ""), "vocabulary", ALL_GRAPH),
    "meta-vocab-duplicates": (_entry("vocab", "aab"), "repeated", ALL_GRAPH),
    "meta-vocab-mismatch": (_metadata(_drop_last_char), "vocabulary", RUNS_GRAPH),
    "meta-absurd-max-seq-len": (_entry("max_seq_len", str(10**15)), "max_seq_len", PARALLEL),
    "meta-zero-max-seq-len": (_entry("max_seq_len", "0"), "max_seq_len", PARALLEL),
    "meta-absurd-matmuls": (_entry("matmuls", json.dumps([["0.x", 10**9, 10**9]])), "matmuls", STEP),
    "meta-variant-with-path": (_entry("variant", "../../int8"), "variant name", ALL_GRAPH),
}


# -- manifest.json (read by `rnnedge quantize`, which rewrites it) -------------------------------------


def _manifest(change: Callable[[dict[str, Any]], Any]) -> Damage:
    return lambda folder: edit_json(folder / "manifest.json", change)


def _variant_file(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda m: m["variants"]["int8-dynamic"]["graphs"]["step"].update(file=name)


MANIFEST_FAULTS: dict[str, tuple[Damage, str]] = {
    "manifest-invalid-json": (lambda f: (f / "manifest.json").write_text("{", encoding="utf-8"), "manifest"),
    "manifest-nested-json": (lambda f: (f / "manifest.json").write_text(NESTED, encoding="utf-8"), "manifest"),
    "manifest-not-object": (lambda f: (f / "manifest.json").write_text("[]", encoding="utf-8"), "manifest"),
    "manifest-variants-not-object": (_manifest(lambda m: m.update(variants=[1])), "variants"),
    "manifest-names-parent-file": (_manifest(_variant_file("../step.int8-dynamic.onnx")), "outside"),
    "manifest-names-absolute-file": (_manifest(_variant_file("/etc/passwd")), "outside"),
    "manifest-names-subfolder-file": (_manifest(_variant_file("sub/step.onnx")), "outside"),
    "manifest-absurd-size": (lambda f: (f / "manifest.json").write_text(" " * (17 << 20) + "{}"), "too large"),
}


# -- text ---------------------------------------------------------------------------------------------------


def _write(name: str, data: bytes) -> Callable[[Path, str], Path]:
    def make(root: Path, text: str) -> Path:
        path = root / name
        path.write_bytes(data)
        return path

    return make


def _unknown(root: Path, text: str) -> Path:
    """Unknown characters near the start and near the end (whichever part a command reads)."""
    path = root / "unknown.txt"
    path.write_text(text[:200] + "€ and 😀" + text[200:-100] + "€" + text[-100:], encoding="utf-8")
    return path


def _folder(root: Path, text: str) -> Path:
    (root / "a-folder").mkdir()
    return root / "a-folder"


TextDamage = Callable[[Path, str], Path]
TEXT_FAULTS: dict[str, tuple[TextDamage, str]] = {
    "text-empty": (_write("empty.txt", b""), "empty.txt"),
    "text-not-utf8": (_write("latin1.txt", "café crème brûlée ".encode("latin-1") * 40), "latin1.txt"),
    "text-unknown-characters": (_unknown, "'€'"),
    "text-is-a-folder": (_folder, "a-folder"),
    "text-missing": (lambda root, text: root / "missing.txt", "missing.txt"),
}
