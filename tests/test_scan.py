import pytest
import torch

from rnnedge.models.scan import _shift, g, linear_scan, logspace_scan, scan_levels, sequential_scan


def _ab(T: int, H: int = 32, B: int = 2, seed: int = 0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    k = torch.randn(B, T, H, generator=gen, dtype=dtype) * 3
    a = torch.sigmoid(-k)
    b = torch.sigmoid(k) * g(torch.randn(B, T, H, generator=gen, dtype=dtype))
    h0 = torch.randn(B, H, generator=gen, dtype=dtype)
    return a, b, h0


@pytest.mark.parametrize("T", [1, 2, 3, 63, 64, 65, 1000, 2048])
def test_linear_scan_matches_fp64_sequential(T):
    a, b, h0 = _ab(T)
    ref = sequential_scan(a.double(), b.double(), h0.double())
    assert (linear_scan(a, b, h0).double() - ref).abs().max() < 1e-5


def test_linear_scan_long_sequence_stays_accurate():
    a, b, h0 = _ab(65_536, H=8, B=1)
    ref = sequential_scan(a.double(), b.double(), h0.double())
    h = linear_scan(a, b, h0)
    assert torch.isfinite(h).all()
    assert (h.double() - ref).abs().max() < 1e-4


def test_fixed_levels_cover_any_shorter_sequence():
    a, b, h0 = _ab(37)
    ref = linear_scan(a, b, h0)
    assert torch.allclose(linear_scan(a, b, h0, levels=16), ref, atol=1e-6)
    # Too few levels is wrong, which is why exported graphs record max_seq_len.
    assert not torch.allclose(linear_scan(a, b, h0, levels=3), ref, atol=1e-3)


def test_scan_levels():
    assert [scan_levels(t) for t in (1, 2, 3, 4, 5, 65536, 65537)] == [0, 1, 2, 2, 3, 16, 17]


def test_paper_logspace_scan_agrees_on_short_sequences_only():
    a, b, _ = _ab(256, dtype=torch.float64)
    ref = sequential_scan(a, b)
    assert (logspace_scan(a.log(), b.log()) - ref).abs().max() < 1e-9
    h0 = torch.rand(2, 32, dtype=torch.float64) + 0.1
    assert (logspace_scan(a.log(), b.log(), h0) - sequential_scan(a, b, h0)).abs().max() < 1e-9


def test_shift_matches_its_definition_for_any_length():
    x = torch.randn(2, 20, 3)
    for t in (1, 3, 8, 20):
        for steps in (1, 4, 16, 32):
            for fill in (0.0, 1.0):
                got = _shift(x[:, :t], steps, fill)
                want = torch.full_like(x[:, :t], fill)
                if steps < t:
                    want[:, steps:] = x[:, : t - steps]
                assert torch.equal(got, want)
