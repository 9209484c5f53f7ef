"""Sampler: greedy, temperature, top-k, top-p; seeded reproducibility; parameter checks."""

from __future__ import annotations

import numpy as np
import pytest

from rnnedge.errors import ConfigError
from rnnedge.runtime import Sampler

LOGITS = np.log(np.array([[0.5, 0.2, 0.15, 0.1, 0.05]], dtype=np.float32))  # (1, 5)


def _counts(sampler: Sampler, logits: np.ndarray, n: int = 20_000) -> np.ndarray:
    rows = np.repeat(logits, n, axis=0)  # (n, V): one draw per row
    return np.bincount(sampler(rows), minlength=logits.shape[1]) / n


def test_greedy_is_argmax_per_row() -> None:
    logits = np.random.default_rng(0).standard_normal((6, 9)).astype(np.float32)
    np.testing.assert_array_equal(Sampler(temperature=0)(logits), logits.argmax(axis=1))
    np.testing.assert_array_equal(Sampler(temperature=1.0, top_k=1, seed=3)(logits), logits.argmax(axis=1))


def test_temperature_one_follows_the_softmax() -> None:
    freq = _counts(Sampler(temperature=1.0, seed=0), LOGITS)
    np.testing.assert_allclose(freq, [0.5, 0.2, 0.15, 0.1, 0.05], atol=0.015)


def test_temperature_sharpens_and_flattens() -> None:
    cold = _counts(Sampler(temperature=0.25, seed=0), LOGITS)
    hot = _counts(Sampler(temperature=4.0, seed=0), LOGITS)
    p = np.array([0.5, 0.2, 0.15, 0.1, 0.05])
    for t, freq in ((0.25, cold), (4.0, hot)):
        want = p ** (1 / t) / (p ** (1 / t)).sum()
        np.testing.assert_allclose(freq, want, atol=0.015)


def test_top_k_and_top_p_restrict_the_support() -> None:
    k2 = _counts(Sampler(top_k=2, seed=1), LOGITS)
    np.testing.assert_allclose(k2, [0.5 / 0.7, 0.2 / 0.7, 0, 0, 0], atol=0.015)
    # nucleus 0.8: 0.5 + 0.2 = 0.7 < 0.8, so the third token (0.15) is needed too, the rest never drawn
    p8 = _counts(Sampler(top_p=0.8, seed=1), LOGITS)
    np.testing.assert_allclose(p8, [0.5 / 0.85, 0.2 / 0.85, 0.15 / 0.85, 0, 0], atol=0.015)
    tiny = _counts(Sampler(top_p=0.01, seed=1), LOGITS)  # the top token always stays
    np.testing.assert_array_equal(tiny, [1, 0, 0, 0, 0])


def test_seeded_sampling_is_reproducible() -> None:
    logits = np.random.default_rng(5).standard_normal((1, 30))
    a, b, c = Sampler(seed=7, top_k=10), Sampler(seed=7, top_k=10), Sampler(seed=8, top_k=10)
    seq_a = [int(a(logits)[0]) for _ in range(50)]
    assert seq_a == [int(b(logits)[0]) for _ in range(50)]
    assert seq_a != [int(c(logits)[0]) for _ in range(50)]


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"temperature": -1.0}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_k": 0}, "top_k"),
        ({"top_k": 2.5}, "top_k"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"seed": -3}, "seed"),
    ],
)
def test_bad_parameters(kwargs, word) -> None:
    with pytest.raises(ConfigError, match=word):
        Sampler(**kwargs)


def test_non_finite_logits_are_refused() -> None:
    with pytest.raises(ConfigError, match="NaN"):
        Sampler(seed=0)(np.array([[0.0, np.nan]]))
    with pytest.raises(ConfigError, match="NaN"):
        Sampler(temperature=0)(np.array([[0.0, np.inf]]))
