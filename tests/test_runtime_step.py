"""StepSession and ParallelSession: agreement with PyTorch, state handling, batching, bad input."""

# ruff: noqa: F811  (the `exports` fixture is imported from tests.test_runtime_graphs)
from __future__ import annotations

import math
import tracemalloc

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from rnnedge.errors import GraphError, InputError, UnknownCharacterError
from rnnedge.runtime import ParallelSession, StepSession, evaluate_export
from tests.conftest import ARCHS, TEXT
from tests.test_runtime_graphs import VARIANT, VOCAB, exports, make_variant, torch_model, torch_step_logits  # noqa: F401


@pytest.mark.parametrize("arch", ARCHS)
def test_step_matches_torch(exports, arch) -> None:
    root = exports[arch]
    sess = StepSession(root / "export", batch=2)
    ids = np.random.default_rng(1).integers(0, len(VOCAB), size=(2, 40))
    ref = torch_step_logits(torch_model(root), ids)  # (2, 40, V)
    got = np.stack([sess.feed(ids[:, t]) for t in range(ids.shape[1])], axis=1)
    assert np.abs(got - ref).max() < 1e-4
    assert sess.steps == 40


def test_batched_streams_are_independent(exports) -> None:
    path = exports["lstm"] / "export" / "step.onnx"
    ids = np.random.default_rng(2).integers(0, len(VOCAB), size=(3, 25))
    batched = StepSession(path, batch=3)
    out = np.stack([batched.feed(ids[:, t]) for t in range(25)], axis=1)  # (3, 25, V)
    for b in range(3):
        single = StepSession(path)
        alone = np.stack([single.feed(int(i))[0] for i in ids[b]])
        assert np.abs(out[b] - alone).max() < 1e-5
    batched.reset(stream=1)
    assert not batched.state["0.h"][1].any() and batched.state["0.h"][0].any()


def test_state_save_resume_and_reset(exports) -> None:
    sess = StepSession(exports["gru"] / "export")
    sess.feed_text("First Citizen")
    saved = sess.state
    a = sess.feed_text(" speak")
    sess.state = saved
    b = sess.feed_text(" speak")
    np.testing.assert_array_equal(a, b)
    sess.state = [saved[n] for n in sess.state_names]  # a list in state order works too
    np.testing.assert_array_equal(sess.feed_text(" speak"), a)
    sess.reset()
    assert all(not v.any() for v in sess.state.values())
    fresh = StepSession(exports["gru"] / "export")
    np.testing.assert_array_equal(sess.feed(3), fresh.feed(3))


def test_bad_state_is_rejected(exports) -> None:
    sess = StepSession(exports["lstm"] / "export")
    good = sess.state
    cases = [
        ({**good, "0.h": good["0.h"].astype(np.float64)}, "float32"),
        ({**good, "0.h": np.zeros((2, 32), np.float32)}, r"shape \(1, 32\)"),
        ({**good, "0.c": np.full((1, 32), np.nan, np.float32)}, "NaN"),
        ({k: v for k, v in good.items() if k != "1.c"}, "missing"),
        ([good["0.h"]], "4 arrays"),
        ("nope", "dict or list"),
    ]
    for bad, word in cases:
        with pytest.raises(InputError, match=word):
            sess.state = bad
    np.testing.assert_array_equal(sess.state["0.h"], good["0.h"])  # nothing half-set


def test_bad_token_ids(exports) -> None:
    sess = StepSession(exports["mingru"] / "export", batch=2)
    with pytest.raises(InputError, match=r"\[34, 99\]"):
        sess.feed([34, 99])
    with pytest.raises(InputError, match=r"\[-1\]"):
        sess.feed([0, -1])
    with pytest.raises(InputError, match="shape"):
        sess.feed([1, 2, 3])
    with pytest.raises(InputError, match="integers"):
        sess.feed(np.array([1.0, 2.0]))
    with pytest.raises(InputError, match="batch"):
        StepSession(exports["mingru"] / "export", batch=0)
    with pytest.raises(UnknownCharacterError, match="'~'"):
        sess.feed_text("ab~")


def test_step_reuses_its_buffers(exports) -> None:
    sess = StepSession(exports["mingru"] / "export")
    first = sess.feed(1, copy=False)
    ptrs = [a.ctypes.data for bufs in sess._bufs for a in bufs]
    for i in range(50):
        sess.feed(i % len(VOCAB), copy=False)
    tracemalloc.start()
    for i in range(2000):
        out = sess.feed(i % len(VOCAB), copy=False)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert out is first
    assert [a.ctypes.data for bufs in sess._bufs for a in bufs] == ptrs
    assert peak < 20_000  # bytes traced during 2000 steps: no per-step arrays pile up


def test_variant_step_loads_and_stays_close(exports) -> None:
    export = exports["mingru"] / "export"
    fp32, int8 = StepSession(export), StepSession(export, variant=VARIANT)
    assert int8.describe()["variant"] == VARIANT and fp32.describe()["variant"] == "fp32"
    assert int8.path.name == f"step.{VARIANT}.onnx" and int8.describe()["recipe"]["name"] == VARIANT
    ids = VOCAB.encode(TEXT[:60])
    a = np.stack([fp32.feed(int(i))[0] for i in ids])
    b = np.stack([int8.feed(int(i))[0] for i in ids])
    assert np.isfinite(b).all() and np.abs(a - b).mean() < 0.15 * a.std()  # a d_model=16 model is coarse in int8
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.95
    with pytest.raises(GraphError, match=rf"no step\.int8-qdq\.onnx; its step variants: fp32, {VARIANT}"):
        StepSession(export, variant="int8-qdq")
    with pytest.raises(GraphError, match=r"variants: fp32;.*rnnedge quantize"):
        StepSession(exports["lstm"] / "export", variant=VARIANT)
    with pytest.raises(GraphError, match="lower-case"):
        StepSession(export, variant="INT8")
    with pytest.raises(GraphError, match="holds variant 'fp32'"):
        StepSession(export / "step.onnx", variant=VARIANT)  # a file must be the variant asked for


def test_legacy_int8_file_is_variant_int8(exports, tmp_path) -> None:
    """An rnnedge 0.1 folder's step.int8.onnx (no rnnedge.variant metadata) loads as variant 'int8'."""
    import shutil

    for name in ("step.onnx", "parallel.onnx"):
        shutil.copy(exports["gru"] / "export" / name, tmp_path / name)
    legacy = make_variant(tmp_path, variant="int8", file_name="step.int8.onnx")
    proto = onnx.load(str(legacy))
    kept = [p for p in proto.metadata_props if p.key not in ("rnnedge.variant", "rnnedge.recipe", "rnnedge.format")]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    onnx.save(proto, str(legacy))
    sess = StepSession(tmp_path, variant="int8")
    assert sess.variant == "int8" and np.isfinite(sess.feed(3)).all()


def test_wrong_or_broken_graphs(exports, tmp_path) -> None:
    with pytest.raises(GraphError, match="parallel graph"):
        StepSession(exports["mingru"] / "export" / "parallel.onnx")
    with pytest.raises(GraphError, match="step graph"):
        ParallelSession(exports["mingru"] / "export" / "step.onnx")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    plain = helper.make_model(
        helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y]),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    plain.ir_version = 9
    onnx.save(plain, str(tmp_path / "plain.onnx"))
    with pytest.raises(GraphError, match="no rnnedge metadata"):
        StepSession(tmp_path / "plain.onnx")
    data = (exports["mingru"] / "export" / "step.onnx").read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(GraphError, match="ONNX Runtime cannot load"):
        StepSession(tmp_path / "cut.onnx")
    with pytest.raises(GraphError, match="not found"):
        StepSession(tmp_path / "missing.onnx")
    with pytest.raises(GraphError, match=r"no step\.onnx and no other step graph"):
        StepSession(tmp_path)


@pytest.mark.parametrize("arch", ["minlstm", "lstm"])
def test_evaluate_export_matches_torch(exports, arch) -> None:
    text = TEXT[:700]
    ids = VOCAB.encode(text)
    model = torch_model(exports[arch])
    with torch.no_grad():
        logits, _ = model(torch.from_numpy(ids[None, :-1]))  # (1, T-1, V)
        loss = torch.nn.functional.cross_entropy(logits[0].double(), torch.from_numpy(ids[1:])).item()
    for chunk in (None, 64, 699):  # 64 carries the state across 11 chunks
        got = evaluate_export(exports[arch] / "export", text, chunk=chunk)
        assert abs(got["loss_nats"] - loss) < 1e-4
        assert got["chars"] == len(text) - 1
        assert got["bits_per_char"] == pytest.approx(got["loss_nats"] / math.log(2))
        assert got["graph"] == "parallel.onnx"


def test_evaluate_variants_and_step_only_folders(exports, tmp_path) -> None:
    """A variant without a parallel graph is scored through its step graph (same convention)."""
    import shutil

    text = TEXT[:300]
    export = exports["gru"] / "export"
    ref = evaluate_export(export, text)
    step_only = tmp_path / "step_only"
    step_only.mkdir()
    shutil.copy(export / "step.onnx", step_only / "step.onnx")
    got = evaluate_export(step_only, text)
    assert got["graph"] == "step.onnx" and got["chars"] == ref["chars"]
    assert abs(got["loss_nats"] - ref["loss_nats"]) < 1e-4
    both = tmp_path / "both"
    both.mkdir()
    for name in ("step.onnx", "parallel.onnx"):
        shutil.copy(export / name, both / name)
    make_variant(both, "parallel")
    make_variant(both, "step", variant="int8-step")
    par = evaluate_export(both, text, variant=VARIANT)
    assert par["graph"] == f"parallel.{VARIANT}.onnx" and abs(par["loss_nats"] - ref["loss_nats"]) < 0.05
    assert ParallelSession(both, variant=VARIANT).info.variant == VARIANT
    assert evaluate_export(both, text, variant="int8-step")["graph"] == "step.int8-step.onnx"
    with pytest.raises(GraphError, match=rf"its parallel variants: fp32, {VARIANT}"):
        evaluate_export(both, text, variant="fp16")


def test_parallel_session_bad_input(exports) -> None:
    export = exports["mingru"] / "export"
    sess = ParallelSession(export, chunk=32)
    with pytest.raises(InputError, match="max_seq_len"):
        ParallelSession(export, chunk=sess.info.max_seq_len + 1)
    with pytest.raises(InputError, match="at least 2"):
        sess.score([3])
    with pytest.raises(InputError, match="out of range"):
        sess.score([3, 99])
    with pytest.raises(InputError, match="max_seq_len"):
        sess.run(np.zeros((1, sess.info.max_seq_len + 1), dtype=np.int64))
    with pytest.raises(InputError, match="out of range"):
        sess.run(np.full((1, 4), len(VOCAB)))
    with pytest.raises(InputError, match="too short"):
        sess.evaluate_text("~a~", on_unknown="skip")
    with pytest.raises(UnknownCharacterError, match="'~'"):
        evaluate_export(export, "sp~ea")
    assert evaluate_export(export, "sp~ea", on_unknown="skip")["chars"] == 3
    with pytest.raises(InputError, match=r"state '0.h' must have shape \(1, 32\)"):
        sess.run(np.zeros((1, 4), dtype=np.int64), [np.zeros((1, 5), np.float32)] * len(sess.info.states))
    nll = sess.score(VOCAB.encode(TEXT[:100]))
    assert nll.shape == (99,) and np.isfinite(nll).all() and (nll > 0).all()
