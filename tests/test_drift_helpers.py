"""Step graphs for the drift tests, built with onnx.helper (no torch, no exporter), and their variants.

`step_graph` writes a real recurrent step graph with the export contract's I/O names and rnnedge
metadata: an embedding, per layer h' = tanh(x + h·U) on a float state of any shape (e.g. [batch, 16] or
[batch, 2, 3]), optionally a position counter state (int64 [batch], pos' = pos + 1), then a head.
`dynamic_int8` makes a variant file with ONNX Runtime's quantize_dynamic; `copy_variant` re-labels a
variant file under another name (as two recipes would).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from rnnedge.graphmeta import FP32, INPUT_IDS, LOGITS, PREFIX, GraphInfo, StateInfo, graph_file, make_state
from rnnedge.vocab import CharVocab

TEXT = (
    "To be, or not to be, that is the question:\n"
    "Whether 'tis nobler in the mind to suffer\n"
    "The slings and arrows of outrageous fortune,\n"
    "Or to take arms against a sea of troubles\n"
    "And by opposing end them. To die: to sleep;\n"
) * 6
VOCAB = CharVocab.from_text(TEXT)


def step_graph(
    folder: Path,
    *,
    dims: tuple[int, ...] = (16,),
    layers: int = 2,
    position: bool = False,
    seed: int = 0,
    vocab: CharVocab = VOCAB,
    gain: float = 0.9,
    position_step: int = 1,
) -> Path:
    """Write folder/step.onnx (variant fp32) and return the folder.

    Each layer's state `<l>.h` has shape ["batch", *dims]; `gain` scales the recurrent matrices
    (near 1: long memory). With `position`, state `0.pos` counts the tokens seen (+`position_step` each).
    """
    rng = np.random.default_rng(seed)
    width, last = math.prod(dims), dims[-1]
    inits = [
        numpy_helper.from_array(rng.normal(0, 1.0, (len(vocab), width)).astype(np.float32), "embed"),
        numpy_helper.from_array(rng.normal(0, 1 / math.sqrt(width), (width, len(vocab))).astype(np.float32), "head"),
        numpy_helper.from_array(np.array([-1, *dims], np.int64), "state_shape"),
        numpy_helper.from_array(np.array([-1, width], np.int64), "flat_shape"),
    ]
    states = [make_state(f"{layer}.h", ("batch", *dims)) for layer in range(layers)]
    nodes = [helper.make_node("Gather", ["embed", INPUT_IDS], ["x0"])]
    for layer, s in enumerate(states):
        u = rng.normal(0, gain / math.sqrt(last), (last, last)).astype(np.float32)
        inits.append(numpy_helper.from_array(u, f"U{layer}"))
        nodes += [
            helper.make_node("Reshape", [f"x{layer}", "state_shape"], [f"xs{layer}"]),
            helper.make_node("MatMul", [s.input, f"U{layer}"], [f"hu{layer}"]),
            helper.make_node("Add", [f"xs{layer}", f"hu{layer}"], [f"pre{layer}"]),
            helper.make_node("Tanh", [f"pre{layer}"], [s.output]),
            helper.make_node("Reshape", [s.output, "flat_shape"], [f"x{layer + 1}"]),
        ]
    nodes.append(helper.make_node("MatMul", [f"x{layers}", "head"], [LOGITS]))
    if position:
        pos = make_state("0.pos", ("batch",), dtype="int64", kind="position")
        states.append(pos)
        inits.append(numpy_helper.from_array(np.array(position_step, np.int64), "one"))
        nodes.append(helper.make_node("Add", [pos.input, "one"], [pos.output]))
    graph = helper.make_graph(
        nodes,
        "synthetic_step",
        [helper.make_tensor_value_info(INPUT_IDS, TensorProto.INT64, ["batch"]), *(_value(s, s.input) for s in states)],
        [
            helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, ["batch", len(vocab)]),
            *(_value(s, s.output) for s in states),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    config = {"arch": "synthetic", "n_layers": layers, "state_dims": list(dims), "vocab_size": len(vocab), "seed": seed}
    info = GraphInfo(kind="step", vocab=vocab, config=config, states=tuple(states), version="test")
    set_metadata(model, info.to_metadata())
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / graph_file("step")))
    return folder


def _value(s: StateInfo, name: str) -> onnx.ValueInfoProto:
    elem = {"float32": TensorProto.FLOAT, "int64": TensorProto.INT64}[s.dtype]
    return helper.make_tensor_value_info(name, elem, list(s.shape))


def set_metadata(model: onnx.ModelProto, entries: dict[str, str]) -> None:
    """Set (add or replace) metadata_props entries."""
    existing = {p.key: p for p in model.metadata_props}
    for key, value in entries.items():
        if key in existing:
            existing[key].value = value
        else:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value


def label_variant(path: Path, variant: str, recipe: dict | None = None) -> Path:
    """Rewrite a graph file's rnnedge.variant (and rnnedge.recipe) metadata."""
    model = onnx.load(str(path))
    entries = {PREFIX + "variant": variant}
    if recipe is not None:
        entries[PREFIX + "recipe"] = json.dumps(recipe, sort_keys=True)
    set_metadata(model, entries)
    onnx.save(model, str(path))
    return path


def dynamic_int8(folder: Path, variant: str = "int8-dynamic", source: str = FP32) -> Path:
    """folder/step.<variant>.onnx from the `source` step graph via ORT's quantize_dynamic (weights int8)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = folder / graph_file("step", variant)
    quantize_dynamic(str(folder / graph_file("step", source)), str(target), weight_type=QuantType.QInt8)
    return label_variant(target, variant, {"type": "DynamicInt8", "name": variant, "test": True})


def copy_variant(folder: Path, source: str, variant: str) -> Path:
    """folder/step.<variant>.onnx: a byte copy of the `source` variant's step graph, labelled `variant`."""
    target = folder / graph_file("step", variant)
    target.write_bytes((folder / graph_file("step", source)).read_bytes())
    return label_variant(target, variant)


def fp16_variant(folder: Path, variant: str = "fp16") -> Path:
    """folder/step.<variant>.onnx: the fp32 step graph in float16, float states and logits included."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(folder / graph_file("step"))), keep_io_types=False)
    states = json.loads(next(p.value for p in model.metadata_props if p.key == PREFIX + "states"))
    for s in states:
        s["dtype"] = "float16" if s["dtype"] == "float32" else s["dtype"]
    set_metadata(model, {PREFIX + "states": json.dumps(states), PREFIX + "variant": variant})
    target = folder / graph_file("step", variant)
    onnx.save(model, str(target))
    return target


def make_legacy(folder: Path) -> None:
    """Rewrite step.onnx and step.int8.onnx metadata as rnnedge 0.1 wrote it (format 1)."""
    for name, quantization in (("step.onnx", None), ("step.int8.onnx", {"method": "dynamic"})):
        model = onnx.load(str(folder / name))
        meta = {p.key: p.value for p in model.metadata_props}
        for key in ("format", "variant", "recipe"):
            meta.pop(PREFIX + key, None)
        states = json.loads(meta[PREFIX + "states"])
        meta[PREFIX + "states"] = json.dumps([{k: s[k] for k in ("name", "input", "output", "shape")} for s in states])
        if quantization is not None:
            meta[PREFIX + "quantization"] = json.dumps(quantization)
        del model.metadata_props[:]
        set_metadata(model, meta)
        onnx.save(model, str(folder / name))


def exported_model(folder: Path, arch: str, *, d_model: int = 16, n_layers: int = 2, seed: int = 0) -> Path:
    """folder/export: a random tiny `arch` model exported by `rnnedge.exporter` (verified, not simplified)."""
    import torch

    from rnnedge.exporter import export_model
    from rnnedge.models import ModelConfig, build_model
    from rnnedge.training.checkpoint import save_checkpoint

    torch.manual_seed(seed)
    model = build_model(ModelConfig(vocab_size=len(VOCAB), arch=arch, n_layers=n_layers, d_model=d_model)).eval()
    ckpt = save_checkpoint(folder / "ckpt", model, VOCAB, training={"note": "drift test"})
    return export_model(ckpt, folder / "export", max_seq_len=64, simplify=False).out_dir
