"""Long runs, fast: benchmarks/long_stream.py's two loops on the tiny export, memory read by tracemalloc.

The benchmark streams 1,000,000 tokens and reads RSS (page-grained, shared with everything else in
the process); here the same loops run a few thousand tokens with tracemalloc as the memory probe,
which counts every Python and NumPy allocation still alive: a loop that kept anything per token
(a logits copy, a state array, a list entry) grows it by at least that much times the tokens timed.
"""

from __future__ import annotations

import importlib.util
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from rnnedge.graphmeta import FP32
from rnnedge.runtime import StepSession
from tests.conftest import TEXT

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "long_stream.py"
TOKENS = 4000  # 1000 warm-up + 3000 timed
PER_TOKEN_BYTES = 8  # a loop keeping even one small object per token grows by far more than this


@pytest.fixture(scope="module")
def long_stream() -> ModuleType:
    spec = importlib.util.spec_from_file_location("long_stream", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def traced() -> Iterator[None]:
    tracemalloc.start()
    yield
    tracemalloc.stop()


def _traced_bytes() -> int:
    return tracemalloc.get_traced_memory()[0]


@pytest.mark.parametrize("variant", [FP32, "int8-dynamic"])
def test_generate_loop_is_finite_and_allocates_nothing_per_token(
    long_stream: ModuleType, world: dict[str, Path], traced: None, variant: str
) -> None:
    result = long_stream.generate_loop(world["export"], TOKENS, variant, check_every=500, probe=_traced_bytes)
    assert result["all_logits_finite"] and result["all_states_finite"] and result["max_abs_state"] > 0
    assert result["warmup_tokens"] == 1000 and sorted(result["max_abs_state_at"], key=int)[-1] == str(TOKENS)
    assert result["memory_growth_bytes"] < PER_TOKEN_BYTES * (TOKENS - 1000), result
    assert long_stream.passed(result)


def test_drift_loop_is_finite_and_allocates_nothing_per_token(
    long_stream: ModuleType, world: dict[str, Path], traced: None
) -> None:
    ids = StepSession(world["export"]).vocab.encode(TEXT)
    result = long_stream.drift_loop(world["export"], ids, TOKENS, check_every=500, probe=_traced_bytes)
    assert result["all_logits_finite"] and result["all_states_finite"]
    assert 0 < result["mean_nll_nats"] < 10
    assert result["memory_growth_bytes"] < PER_TOKEN_BYTES * (TOKENS - 1000), result


def test_a_loop_that_keeps_something_per_token_is_caught(long_stream: ModuleType, traced: None) -> None:
    """The probe can fail: a loop that keeps a 4-float array per token shows up in the growth."""
    checks = long_stream.Checks([0], 500, TOKENS, _traced_bytes)
    kept = []
    import numpy as np

    for t in range(1, TOKENS + 1):
        checks.before(t)
        kept.append(np.zeros(4, dtype=np.float32))
        checks.after(t, kept[-1], [kept[-1]] if checks.due(t) else [])
    assert checks.result()["memory_growth_bytes"] > PER_TOKEN_BYTES * (TOKENS - 1000)


def test_benchmark_cli_writes_nothing_without_write(long_stream: ModuleType, world: dict[str, Path], capsys) -> None:
    before = long_stream.RESULTS.read_bytes() if long_stream.RESULTS.exists() else None
    code = long_stream.main(["--tokens", "1200", "--export", str(world["export"]), "--data", str(world["text"])])
    assert code == 0
    assert '"passed"' in capsys.readouterr().out
    assert (long_stream.RESULTS.read_bytes() if long_stream.RESULTS.exists() else None) == before
