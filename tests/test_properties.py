"""Property-based tests (hypothesis): the scan and the state contract hold for any input, not just examples.

- Scan: for any T in 1..300 and any split of the sequence into chunks with the state carried from one
  chunk to the next, the parallel scan equals one call and the sequential loop; the same holds for
  CharLM.forward with every registered mixer.
- State contract: any valid StateInfo / GraphInfo survives to_metadata -> parse_metadata unchanged;
  invalid shapes and dtypes are refused with GraphError, directly and when read from metadata.
"""

from __future__ import annotations

import itertools
import json
from functools import cache

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnedge.errors import GraphError
from rnnedge.graphmeta import (
    FP32,
    GRAPH_KINDS,
    MAX_FIXED_BATCH,
    PREFIX,
    STATE_DTYPES,
    STATE_KINDS,
    GraphInfo,
    StateInfo,
    make_state,
    parse_metadata,
)
from rnnedge.models import MIXER_NAMES, ModelConfig, build_model
from rnnedge.models.scan import g, linear_scan, sequential_scan
from rnnedge.vocab import CharVocab

FAST = settings(max_examples=25, deadline=None)


@st.composite
def split_sequence(draw: st.DrawFn, max_len: int = 300) -> tuple[int, list[int]]:
    """(T, chunk boundaries): T in 1..max_len and up to 8 cut points strictly inside (0, T)."""
    length = draw(st.integers(1, max_len))
    cuts = draw(st.sets(st.integers(1, length - 1), max_size=8)) if length > 1 else set()
    return length, [0, *sorted(cuts), length]


def _scan_inputs(length: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    k = 3 * torch.randn(2, length, 5, generator=gen, dtype=torch.float64)  # (B, T, H)
    a = torch.sigmoid(-k)  # (B, T, H), in (0, 1) as minGRU's 1 − z
    b = torch.sigmoid(k) * g(torch.randn(2, length, 5, generator=gen, dtype=torch.float64))  # (B, T, H)
    h0 = torch.randn(2, 5, generator=gen, dtype=torch.float64)  # (B, H)
    return a, b, h0


@FAST
@given(split=split_sequence(), seed=st.integers(0, 2**16))
def test_linear_scan_in_chunks_equals_one_call_and_the_loop(split: tuple[int, list[int]], seed: int) -> None:
    length, bounds = split
    a, b, h0 = _scan_inputs(length, seed)
    whole = linear_scan(a, b, h0)  # (B, T, H)
    loop = sequential_scan(a, b, h0)  # (B, T, H)
    h, parts = h0, []
    for start, end in itertools.pairwise(bounds):
        part = linear_scan(a[:, start:end], b[:, start:end], h)  # (B, end - start, H)
        parts.append(part)
        h = part[:, -1]  # (B, H): the state carried into the next chunk
    chunked = torch.cat(parts, dim=1)  # (B, T, H)
    assert chunked.shape == whole.shape == (2, length, 5)
    assert (chunked - loop).abs().max() < 1e-10
    assert (whole - loop).abs().max() < 1e-10


@cache
def _fp64_model(arch: str) -> torch.nn.Module:
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=11, arch=arch, n_layers=2, d_model=8, expansion=1.5, mlp_ratio=2.0)
    return build_model(config).double().eval()


@FAST
@given(arch=st.sampled_from(MIXER_NAMES), split=split_sequence(), seed=st.integers(0, 2**16))
def test_charlm_in_chunks_with_carried_state_equals_one_call(arch: str, split, seed: int) -> None:
    length, bounds = split
    model = _fp64_model(arch)
    ids = torch.randint(0, 11, (2, length), generator=torch.Generator().manual_seed(seed))  # (B, T)
    with torch.no_grad():
        whole, whole_state = model(ids)  # (B, T, V)
        state, parts = None, []
        for start, end in itertools.pairwise(bounds):
            logits, state = model(ids[:, start:end], state)  # (B, end - start, V)
            parts.append(logits)
    assert (torch.cat(parts, dim=1) - whole).abs().max() < 1e-9
    assert state is not None and len(state) == len(whole_state) == len(model.config.state_infos())
    for carried, direct in zip(state, whole_state, strict=True):
        assert (carried - direct).abs().max() < 1e-9


# -- the state contract --------------------------------------------------------------------------------

state_shapes = st.lists(st.integers(1, 64), min_size=1, max_size=4).map(lambda dims: ("batch", *dims))
state_names = st.builds(
    lambda layer, short: f"{layer}.{short}", st.integers(0, 40), st.text("hckvpos", min_size=1, max_size=4)
)
valid_states = st.builds(
    make_state, state_names, state_shapes, st.sampled_from(STATE_DTYPES), st.sampled_from(STATE_KINDS)
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**31), 2**31) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=4)
vocabs = st.sets(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40).map(
    lambda chars: CharVocab("".join(sorted(chars)))
)
matmuls = st.lists(
    st.tuples(st.text("abcxyz_.0123", min_size=1, max_size=10), st.integers(1, 4096), st.integers(1, 4096))
)
variants = st.just(FP32) | st.from_regex(r"[a-z0-9][a-z0-9-]{0,20}", fullmatch=True)


@st.composite
def graph_infos(draw: st.DrawFn) -> GraphInfo:
    kind = draw(st.sampled_from(GRAPH_KINDS))
    states = draw(st.lists(valid_states, max_size=6, unique_by=lambda s: s.name))
    variant = draw(variants)
    return GraphInfo(
        kind=kind,
        vocab=draw(vocabs),
        config=draw(json_objects),
        states=tuple(states),
        version=draw(st.from_regex(r"[0-9]{1,2}\.[0-9]{1,2}\.[0-9]{1,2}", fullmatch=True)),
        max_seq_len=draw(st.integers(1, 1 << 20)) if kind == "parallel" else None,
        quantization=draw(json_objects) if variant != FP32 else None,
        variant=variant,
        recipe=draw(json_objects) if variant != FP32 else None,
        matmuls=tuple(draw(matmuls)) if kind == "step" else (),
    )


@FAST
@given(info=graph_infos())
def test_graph_info_survives_the_metadata_round_trip(info: GraphInfo) -> None:
    meta = info.to_metadata()
    assert all(isinstance(k, str) and k.startswith(PREFIX) and isinstance(v, str) for k, v in meta.items())
    back = parse_metadata(meta)
    assert back == info
    for state in back.states:
        assert state.concrete_shape(3) == (3, *state.shape[1:])
        width = {"float32": 4, "float16": 2, "int64": 8, "int32": 4}[state.dtype]
        assert state.nbytes_per_stream() == state.elements_per_stream * width


bad_dims = st.one_of(
    st.integers(max_value=0),
    st.floats(allow_nan=True),
    st.text(max_size=5).filter(lambda s: s != "batch"),
    st.booleans(),
    st.none(),
)


@st.composite
def invalid_shapes(draw: st.DrawFn) -> list:
    """A shape that breaks the contract: empty, not starting with 'batch' or a fixed batch in 1..MAX_FIXED_BATCH
    (a fixed-shape graph's, e.g. the mobile graph's [1, 256]), or with a bad fixed dim."""
    good = list(draw(state_shapes))
    how = draw(st.sampled_from(["empty", "first", "dim"]))
    if how == "empty":
        return []
    if how == "first":
        first = st.one_of(
            st.integers(max_value=0),
            st.integers(min_value=MAX_FIXED_BATCH + 1),
            st.booleans(),
            st.text(max_size=5).filter(lambda s: s != "batch"),
        )
        return [draw(first), *good[1:]]
    good.insert(draw(st.integers(1, len(good))), draw(bad_dims))
    return good


bad_dtypes = st.text(max_size=10).filter(lambda s: s not in STATE_DTYPES) | st.sampled_from(["float64", "int8", "bf16"])


def _metadata_with_state(entry: dict) -> dict[str, str]:
    good = GraphInfo(kind="step", vocab=CharVocab("ab"), config={}, states=(), version="0.2.0")
    return {**good.to_metadata(), PREFIX + "states": json.dumps([entry])}


@FAST
@given(shape=invalid_shapes(), dtype=st.sampled_from(STATE_DTYPES))
def test_invalid_state_shapes_are_refused(shape: list, dtype: str) -> None:
    with pytest.raises(GraphError):
        StateInfo("0.h", "state_in.0.h", "state_out.0.h", tuple(shape), dtype)
    entry = {"name": "0.h", "input": "state_in.0.h", "output": "state_out.0.h", "shape": shape, "dtype": dtype}
    with pytest.raises(GraphError):
        parse_metadata(_metadata_with_state(entry))


@FAST
@given(shape=state_shapes, dtype=bad_dtypes)
def test_invalid_state_dtypes_are_refused(shape: tuple, dtype: str) -> None:
    with pytest.raises(GraphError, match="dtype"):
        StateInfo("0.h", "state_in.0.h", "state_out.0.h", shape, dtype)
    entry = {"name": "0.h", "input": "state_in.0.h", "output": "state_out.0.h", "shape": list(shape), "dtype": dtype}
    with pytest.raises(GraphError, match="dtype"):
        parse_metadata(_metadata_with_state(entry))
