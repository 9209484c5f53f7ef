"""StepSession serving streams that come and go: add_stream / drop_stream / feed({slot: id}).

A stream's logits and state are bit-identical whether it runs alone or beside streams added and
dropped mid-way (and across steps it sits out); nothing is reallocated; bad use is one InputError.
"""

# ruff: noqa: F811  (the `exports` fixture is imported from tests.test_runtime_graphs)
from __future__ import annotations

import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from rnnedge.errors import InputError
from rnnedge.runtime import StepSession
from tests.conftest import ARCHS, TEXT
from tests.test_runtime_graphs import VARIANT, VOCAB, exports  # noqa: F401
from tests.test_runtime_states import HEADS, synthetic_step_graph

CAPACITY = 4
STEPS = 24


def alone(export: Path, tokens: np.ndarray, variant: str = "fp32") -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(logits (T, V), final state of its slot) of one stream that is the only one in a CAPACITY session."""
    sess = StepSession(export, batch=CAPACITY, streams=0, variant=variant)
    slot = sess.add_stream()
    logits = np.stack([sess.feed({slot: int(t)})[slot] for t in tokens])
    return logits, {name: a[slot] for name, a in sess.state.items()}


def crowded(export: Path, tokens: np.ndarray, variant: str = "fp32") -> tuple[np.ndarray, dict[str, np.ndarray], dict]:
    """The same stream (`a`) beside others that are added, dropped and re-added while it runs, with two
    steps where `a` sits out. Returns a's logits, a's final state and what the late stream `d` saw."""
    rng = np.random.default_rng(7)
    sess = StepSession(export, batch=CAPACITY, streams=0, variant=variant)
    b = sess.add_stream()
    a = sess.add_stream()  # slot 1: not the slot it had alone
    others = {b}
    got, d_tokens, d_logits = [], [], []
    sits_out = {12, 13}
    t = 0
    for step in range(STEPS + len(sits_out)):
        if step == 5:
            others.add(sess.add_stream())  # c
        if step == 8:
            sess.drop_stream(b)
            others.discard(b)
        if step == 10:
            d = sess.add_stream()  # b's old slot, handed out zeroed
            assert d == b and all(not v[d].any() for v in sess.state.values())
            others.add(d)
        feed = {o: int(rng.integers(0, len(VOCAB))) for o in others}
        if step in sits_out:
            before = sess.state
            logits = sess.feed(feed)
            after = sess.state
            for name in before:  # a's state carried over bit for bit
                np.testing.assert_array_equal(after[name][a], before[name][a])
            assert np.isnan(logits[a]).all()
        else:
            logits = sess.feed({**feed, a: int(tokens[t])})
            got.append(logits[a])
            t += 1
        if step >= 10:
            d_tokens.append(feed[d])
            d_logits.append(logits[d])
    assert sess.active_streams == tuple(sorted({a, *others}))
    late = {"tokens": np.array(d_tokens), "logits": np.stack(d_logits)}
    return np.stack(got), {name: v[a] for name, v in sess.state.items()}, late


@pytest.mark.parametrize("arch", ARCHS)
def test_a_stream_is_bit_identical_alone_or_in_company(exports, arch) -> None:
    export = exports[arch] / "export"
    tokens = np.random.default_rng(3).integers(0, len(VOCAB), STEPS)
    ref_logits, ref_state = alone(export, tokens)
    logits, state, late = crowded(export, tokens)
    np.testing.assert_array_equal(logits, ref_logits)
    for name in ref_state:
        np.testing.assert_array_equal(state[name], ref_state[name])
    late_alone, _ = alone(export, late["tokens"])  # a stream added into a dropped stream's slot starts fresh
    np.testing.assert_array_equal(late["logits"], late_alone)
    single = StepSession(export)  # a batch-1 session agrees too (to rounding: another kernel shape)
    np.testing.assert_allclose(np.stack([single.feed(int(t))[0] for t in tokens]), ref_logits, atol=1e-5)


@pytest.mark.parametrize("recipe", ["int8-qdq", "fp16", "int4-weight"])
def test_row_wise_recipes_keep_streams_bit_identical(exports, recipe, tmp_path) -> None:
    """Recipes whose math works row by row (fixed scales, float16, weight-only blocks) keep the guarantee."""
    from rnnedge.quantization import quantize_export

    export = tmp_path / "export"
    export.mkdir()
    shutil.copy(exports["mingru"] / "export" / "step.onnx", export / "step.onnx")
    text = tmp_path / "text.txt"
    text.write_text(TEXT, encoding="utf-8")
    quantize_export(export, recipe, calib_text=text, eval_text=text, graphs=("step",))
    tokens = np.random.default_rng(3).integers(0, len(VOCAB), STEPS)
    ref, _ = alone(export, tokens, recipe)
    logits, _, _ = crowded(export, tokens, recipe)
    np.testing.assert_array_equal(logits, ref)


def test_dynamic_int8_streams_share_activation_scales(exports) -> None:
    """Dynamic int8 quantizes each activation with one scale per call over the whole batch, so a stream's
    result depends on its neighbours: close to the lone stream's, not bit-identical (docs/runtime.md)."""
    export = exports["mingru"] / "export"
    tokens = np.random.default_rng(3).integers(0, len(VOCAB), STEPS)
    ref, _ = alone(export, tokens, VARIANT)
    logits, _, _ = crowded(export, tokens, VARIANT)
    assert np.isfinite(logits).all() and np.abs(logits - ref).max() < 0.1 * ref.std()


def test_slots_with_rank4_and_position_states(tmp_path: Path) -> None:
    """A stream sitting out keeps its cache and its position counter; drop zeroes, add hands out zeros."""
    sess = StepSession(synthetic_step_graph(tmp_path / "step.onnx"), batch=3, streams=2)
    assert sess.active_streams == (0, 1) and sess.describe()["active_streams"] == [0, 1]
    np.testing.assert_array_equal(sess.feed({0: 1, 1: 0})[:2], [[13, 13], [1, 1]])
    out = sess.feed({1: 1})
    assert np.isnan(out[[0, 2]]).all() and out[1].tolist() == [14, 14]
    assert sess.state["0.pos"].tolist() == [1, 2, 0] and (sess.state["0.kv"][0] == 1).all()
    sess.drop_stream(0)
    assert sess.active_streams == (1,) and sess.state["0.pos"].tolist() == [0, 2, 0]
    assert sess.add_stream() == 0 and sess.add_stream() == 2 and sess.active_streams == (0, 1, 2)
    np.testing.assert_array_equal(sess.feed({2: 1, 0: 1}), [[13] * HEADS, [np.nan] * HEADS, [13] * HEADS])


def test_streams_reuse_the_buffers(exports) -> None:
    """add / drop / partial feeds rebind and reallocate nothing; 2000 of them pile nothing up."""
    sess = StepSession(exports["gru"] / "export", batch=CAPACITY, streams=0)
    slots = [sess.add_stream() for _ in range(3)]
    first = sess.feed({s: 1 for s in slots}, copy=False)
    arrays = [sess._ids, sess._logits, *(a for bufs in sess._bufs for a in bufs)]
    ptrs = [a.ctypes.data for a in arrays]
    bindings = list(sess._bindings)
    for i in range(50):
        sess.feed({slots[0]: i % len(VOCAB)}, copy=False)
    tracemalloc.start()
    for i in range(2000):
        if i % 50 == 25:
            sess.drop_stream(slots[1])
        if i % 50 == 30:
            assert sess.add_stream() == slots[1]
        active = sess.active_streams
        out = sess.feed({s: (i + s) % len(VOCAB) for s in active[: 1 + i % len(active)]}, copy=False)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert out is first and sess._bindings == bindings
    assert [a.ctypes.data for a in [sess._ids, sess._logits, *(a for b in sess._bufs for a in b)]] == ptrs
    assert peak < 20_000  # bytes traced during 2000 steps


def test_bad_stream_use_is_one_line(exports) -> None:
    export = exports["mingru"] / "export"
    sess = StepSession(export, batch=2, streams=1)
    cases = [
        (lambda: sess.feed({1: 3}), "slot 1 holds no stream"),
        (lambda: sess.feed({2: 3}), "slot 2 out of range"),
        (lambda: sess.feed({0: len(VOCAB)}), "token id .* for slot 0 out of range"),
        (lambda: sess.feed({0: 1.5}), "token id 1.5"),
        (lambda: sess.feed({}), "at least one stream"),
        (lambda: sess.drop_stream(1), "slot 1 holds no stream"),
        (lambda: sess.drop_stream(True), "out of range"),
        (lambda: StepSession(export, batch=2, streams=3), "streams must be an integer in 0..batch"),
    ]
    for call, message in cases:
        with pytest.raises(InputError, match=message):
            call()
    assert sess.add_stream() == 1
    with pytest.raises(InputError, match="all 2 stream slots are in use"):
        sess.add_stream()
    assert sess.steps == 0  # nothing ran
