"""Exporter: parity of both graphs against an fp64 sequential torch reference, metadata, manifest."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from unittest import mock

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from rnnedge.exporter import export_model
from rnnedge.exporter.token_tables import TABLE_PREFIX
from rnnedge.graphmeta import INPUT_IDS, LOGITS, MANIFEST, graph_file, parse_metadata
from rnnedge.models import ModelConfig, build_model, mixer_spec
from rnnedge.models.scan import sequential_attention, sequential_scan
from rnnedge.ownership import LEDGER
from rnnedge.training.checkpoint import save_checkpoint
from rnnedge.vocab import CharVocab
from tests.conftest import ARCHS

VOCAB = CharVocab("abcdefghijklmnopqrs\n")


def tiny_lm(arch: str, seed: int = 0):
    """d_model 16, 2 layers, with weights scaled and jittered so gates saturate differently per unit."""
    torch.manual_seed(seed)
    model = build_model(ModelConfig(vocab_size=len(VOCAB), arch=arch, n_layers=2, d_model=16)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.5).add_(0.3 * torch.randn_like(p))
    return model


def make_checkpoint(path: Path, arch: str, seed: int = 0) -> Path:
    return save_checkpoint(path, tiny_lm(arch, seed), VOCAB, val_loss=1.234, training={"steps": 1})


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("export")
    out = {}
    for arch in ARCHS:
        ckpt = make_checkpoint(root / f"ckpt_{arch}", arch)
        out[arch] = (ckpt, export_model(ckpt, root / f"out_{arch}", max_seq_len=4096))
    return out


def _loop_scan(a, b, h0=None, levels=None):
    return sequential_scan(a, b, h0)


def _loop_attention(s, v, lse0, o0, levels=None):
    return sequential_attention(s, v, lse0, o0)


def sequential_fp64(model, ids: np.ndarray, state: list[np.ndarray]) -> list[np.ndarray]:
    """fp64 torch with every recurrence run step by step: min* and aaren scans replaced by the plain loop,
    gru/lstm through torch's own (sequential) nn.GRU/nn.LSTM kernels (the transformer is its own reference)."""
    ref = model.double()
    st = tuple(torch.from_numpy(s).double() if s.dtype.kind == "f" else torch.from_numpy(s) for s in state)
    with (
        torch.no_grad(),
        mock.patch("rnnedge.models.mingru.linear_scan", _loop_scan),
        mock.patch("rnnedge.models.minlstm.linear_scan", _loop_scan),
        mock.patch("rnnedge.models.aaren.attention_scan", _loop_attention),
    ):
        logits, st = ref(torch.from_numpy(ids), st)
    model.float()
    return [logits.numpy(), *(s.numpy() for s in st)]


def feed(sess: ort.InferenceSession, ids: np.ndarray, state: list[np.ndarray]) -> list[np.ndarray]:
    return sess.run(None, dict(zip([i.name for i in sess.get_inputs()], [ids, *state], strict=True)))


def random_inputs(model, batch: int, time: int, seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Random ids and states: floats N(0, 0.25), integer states (positions) anywhere in 0..999."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, len(VOCAB), size=(batch, time), dtype=np.int64)
    state = [
        (0.5 * rng.standard_normal(s.concrete_shape(batch))).astype(np.float32)
        if s.dtype.startswith("float")
        else rng.integers(0, 1000, size=s.concrete_shape(batch)).astype(s.dtype)
        for s in model.config.state_infos()
    ]
    return ids, state


def maxdiff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.abs(np.asarray(x, np.float64) - y).max()) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("arch", ARCHS)
def test_parallel_graph_matches_sequential_fp64(exported: dict, arch: str) -> None:
    _, result = exported[arch]
    model = tiny_lm(arch)
    sess = ort.InferenceSession(str(result.paths["parallel"]), providers=["CPUExecutionProvider"])
    for t in (1, 63, 65, 2048):
        ids, state = random_inputs(model, 2, t, seed=t)
        got = feed(sess, ids, state)
        assert got[0].shape == (2, t, len(VOCAB))
        assert maxdiff(got, sequential_fp64(model, ids, state)) <= mixer_spec(arch).atol, (arch, t)


@pytest.mark.parametrize("arch", ARCHS)
def test_step_graph_runs_token_by_token_like_parallel(exported: dict, arch: str) -> None:
    _, result = exported[arch]
    par = ort.InferenceSession(str(result.paths["parallel"]), providers=["CPUExecutionProvider"])
    step = ort.InferenceSession(str(result.paths["step"]), providers=["CPUExecutionProvider"])
    ids, state = random_inputs(tiny_lm(arch), 3, 200, seed=9)  # batch 3, different sequences
    want = feed(par, ids, state)
    st = state
    atol = mixer_spec(arch).atol
    for t in range(ids.shape[1]):
        out = feed(step, ids[:, t], st)
        assert out[0].shape == (3, len(VOCAB))
        assert np.abs(out[0] - want[0][:, t]).max() <= atol
        st = out[1:]
    assert maxdiff(st, want[1:]) <= atol


@pytest.mark.parametrize("arch", ARCHS)
def test_graph_structure(exported: dict, arch: str) -> None:
    _, result = exported[arch]
    step = onnx.load(result.paths["step"])
    par = onnx.load(result.paths["parallel"])
    step_ops = {n.op_type for n in step.graph.node}
    assert not step_ops & {"GRU", "LSTM", "RNN", "Scan", "Loop", "If"}, step_ops
    assert "MatMul" in step_ops or "Gemm" in step_ops
    par_ops = {n.op_type for n in par.graph.node}
    spec = mixer_spec(arch)
    if spec.parallel_training:  # doubling scans (Pad/Slice/Mul/Add) and attention (MatMul/Softmax)
        assert not par_ops & {"Scan", "Loop", "CumSum"}
    else:  # the classic cells export as ONNX's own recurrent ops (Elman: RNN)
        assert par_ops & {"GRU", "LSTM", "RNN"}, par_ops
    onnx.checker.check_model(par, full_check=True)
    onnx.checker.check_model(step, full_check=True)
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in par.graph.input}
    assert dims[INPUT_IDS] == ["batch", "time"]
    outs = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in par.graph.output}
    assert outs[LOGITS] == ["batch", "time", len(VOCAB)]


def constant_weight_products(model: onnx.ModelProto) -> list[tuple[int, int]]:
    """(k, n) of every MatMul/Gemm whose weight is an initializer (Gemm's transB honoured)."""
    inits = {i.name: tuple(i.dims) for i in model.graph.initializer}
    out = []
    for node in model.graph.node:
        if node.op_type in ("MatMul", "Gemm") and node.input[1] in inits and len(inits[node.input[1]]) == 2:
            k, n = inits[node.input[1]]
            trans = any(a.name == "transB" and a.i for a in node.attribute)
            out.append((n, k) if trans else (k, n))
    return sorted(out)


@pytest.mark.parametrize("arch", ARCHS)
def test_step_graph_records_its_weight_products(exported: dict, arch: str) -> None:
    """The floor's shapes (MixerSpec.weight_products via ModelConfig) are what the step graph multiplies."""
    _, result = exported[arch]
    step = onnx.load(result.paths["step"])
    info = parse_metadata({p.key: p.value for p in step.metadata_props}, "step")
    assert info.matmuls == tiny_lm(arch).config.weight_products()
    declared, done = Counter((k, n) for _, k, n in info.matmuls), Counter(constant_weight_products(step))
    assert not done - declared  # the graph does no product its metadata does not declare
    tabled = declared - done  # products of the token id alone, folded into per-token tables (token_tables.py)
    tables = [t for t in step.graph.initializer if t.name.startswith(TABLE_PREFIX)]
    assert bool(tabled) == bool(tables)
    assert all(k == tiny_lm(arch).config.d_model for k, _ in tabled)  # the first layer's input projections


def test_token_tables_replace_the_first_layers_token_only_work(exported: dict) -> None:
    """minGRU's first-layer gates read only x_t: Gather + LayerNorm + Gemm + Split + σ... become Gathers
    of per-token tables, and each table row is what that cone computes for that id."""
    _, result = exported["mingru"]
    step = onnx.load(result.paths["step"])
    gathers = [n for n in step.graph.node if n.op_type == "Gather" and n.input[0].startswith(TABLE_PREFIX)]
    assert len(gathers) == 3  # the residual embedding, z and g(h̃) of block 0
    assert not any(n.op_type == "Gather" and not n.input[0].startswith(TABLE_PREFIX) for n in step.graph.node)


@pytest.mark.parametrize("arch", ["lstm", "minlstm"])
def test_metadata_roundtrip(exported: dict, arch: str) -> None:
    _, result = exported[arch]
    cfg = tiny_lm(arch).config
    for kind in ("parallel", "step"):
        sess = ort.InferenceSession(str(result.paths[kind]), providers=["CPUExecutionProvider"])
        info = parse_metadata(sess.get_modelmeta().custom_metadata_map, kind)
        assert info.kind == kind
        assert info.vocab.chars == VOCAB.chars
        assert info.config == cfg.to_dict()
        assert info.states == cfg.state_infos()
        assert [i.name for i in sess.get_inputs()] == [INPUT_IDS] + [s.input for s in info.states]
        assert [o.name for o in sess.get_outputs()] == [LOGITS] + [s.output for s in info.states]
        for s, inp in zip(info.states, sess.get_inputs()[1:], strict=True):
            assert inp.shape == list(s.shape)
        assert info.max_seq_len == (4096 if kind == "parallel" else None)


def test_manifest_contents(exported: dict) -> None:
    ckpt, result = exported["gru"]
    manifest = json.loads((result.out_dir / MANIFEST).read_text())
    assert manifest == json.loads(json.dumps(result.manifest))
    assert manifest["source"]["checkpoint"] == str(ckpt.resolve())  # absolute: bench finds it from anywhere
    assert manifest["source"]["val_loss"] == pytest.approx(1.234)
    assert manifest["max_seq_len"] == 4096 and manifest["scan_levels"] == 12
    assert manifest["verification"]["passed"] is True
    names = {c["name"] for c in manifest["verification"]["checks"]}
    assert {"parallel_vs_torch_fp64", "step_vs_parallel", "carried_state", "batch_vs_single"} <= names
    for c in manifest["verification"]["checks"]:
        assert c["passed"] and 0 <= c["max_abs_diff"] <= 1e-4
    for kind, g in manifest["graphs"].items():
        path = result.out_dir / graph_file(kind)
        assert g["size_bytes"] == path.stat().st_size
        assert g["opset"] == 17
        assert g["nodes"] == len(onnx.load(path).graph.node) == g["nodes_after_simplify"]
        assert g["nodes_after_simplify"] <= g["nodes_before_simplify"]
        assert list(g["op_types"]) == sorted(g["op_types"]) and sum(g["op_types"].values()) == g["nodes"]
        assert isinstance(g["simplified"]["applied"], bool) and g["simplified"]["reason"]
        assert g["verification"] and g["export_seconds"] > 0
    assert manifest["tensorrt"]["ok"] is True and manifest["tensorrt"]["problems"] == []
    written = sorted(p.name for p in result.out_dir.iterdir())
    assert written == [LEDGER, "manifest.json", "parallel.onnx", "step.onnx"]  # the ledger: rnnedge/ownership.py
