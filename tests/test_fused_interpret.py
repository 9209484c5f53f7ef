"""fla-core's fused HGRN scan, its real Triton kernels, run on CPU under Triton's interpreter.

rnnedge's fused training path (models/fused_scan.py) only runs on CUDA; these tests execute the same
kernels through the interpreter (tests/fused_support.py) so a CPU run checks them: chunk_hgrn forward
and backward against an fp64 loop across chunk boundaries (chunk = 128), with and without h0;
`fused_decay_scan` and the minGRU/minLSTM layers against the doubling scan; `rnnedge train`'s loop with
the fused path forced; three sabotaged kernels that the same check rejects. Marker: fused_interpret.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from rnnedge.models import fused_scan
from rnnedge.models.mingru import MinGRU
from rnnedge.models.minlstm import MinLSTM
from rnnedge.models.scan import linear_scan
from tests import fused_support  # sets TRITON_INTERPRET=1, then imports fla (rnnedge imports fla lazily)

pytestmark = [
    pytest.mark.fused_interpret,
    pytest.mark.skipif(fused_support.chunk is None, reason=fused_support.REASON or "fla unavailable"),
]
TS = (1, 129, 260)  # one step, one past a chunk boundary (chunk = 128), three chunks
TOL = 1e-5  # measured <= 2.1e-6 (fp32 kernels vs fp64)


def _fp64_loop(x: torch.Tensor, g: torch.Tensor, h0: torch.Tensor | None) -> torch.Tensor:
    """h_t = exp(g_t) * h_{t-1} + x_t in fp64, one step at a time. x, g: (B, T, D); h0: (B, D)."""
    h = torch.zeros_like(x[:, 0]) if h0 is None else h0  # (B, D)
    out = []
    for t in range(x.shape[1]):
        h = g[:, t].exp() * h + x[:, t]  # (B, D)
        out.append(h)
    return torch.stack(out, dim=1)  # (B, T, D)


def kernel_errors(kernel: Callable[..., Any], seq_len: int, with_h0: bool, seed: int = 0) -> float:
    """Max abs error of kernel's output and its x, g (and h0) gradients vs the fp64 loop's."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, seq_len, 64, generator=gen)  # (B, T, D)
    g = -torch.rand(2, seq_len, 64, generator=gen) * 0.5  # log-decay < 0   (B, T, D)
    h0 = torch.randn(2, 64, generator=gen) if with_h0 else None  # (B, D)
    w = torch.randn(2, seq_len, 64, generator=gen)  # upstream gradient   (B, T, D)
    errs = []
    leaves = [x.clone().requires_grad_(), g.clone().requires_grad_()]
    o, _ = kernel(leaves[0], leaves[1], initial_state=h0, output_final_state=False)
    (o * w).sum().backward()
    ref_leaves = [x.double().requires_grad_(), g.double().requires_grad_()]
    ref = _fp64_loop(*ref_leaves, None if h0 is None else h0.double())
    (ref * w.double()).sum().backward()
    errs.append((o.double() - ref).abs().max().item())
    errs += [(a.grad.double() - b.grad).abs().max().item() for a, b in zip(leaves, ref_leaves, strict=True)]
    return max(errs)


@pytest.mark.parametrize("with_h0", [False, True])
def test_chunk_hgrn_matches_fp64_loop(with_h0: bool) -> None:
    from fla.ops.hgrn import chunk_hgrn

    for seq_len in TS:
        assert kernel_errors(chunk_hgrn, seq_len, with_h0) <= TOL, seq_len


def test_sabotaged_kernels_fail_the_check(monkeypatch) -> None:
    """The check is sensitive: no carry between chunks, flipped decay and a dropped h0 each fail it."""
    from fla.ops.hgrn import chunk_hgrn

    def flipped(x, g, **kw):
        return chunk_hgrn(x, -g, **kw)

    def no_h0(x, g, initial_state=None, **kw):
        return chunk_hgrn(x, g, initial_state=None, **kw)

    assert kernel_errors(flipped, 129, False) > 0.1
    assert kernel_errors(no_h0, 129, True) > 0.1

    class NoCarry:  # the second-stage kernel that carries each chunk's last state into the next
        def __getitem__(self, grid):
            return lambda *args, **kwargs: None

    monkeypatch.setattr(fused_support.chunk, "chunk_hgrn_fwd_kernel_o", NoCarry())
    assert kernel_errors(chunk_hgrn, 128, False) <= TOL  # one chunk: nothing to carry
    assert kernel_errors(chunk_hgrn, 260, False) > 0.1


@pytest.mark.parametrize("with_h0", [False, True])
def test_fused_decay_scan_matches_doubling(with_h0: bool) -> None:
    gen = torch.Generator().manual_seed(1)
    for seq_len in (200,):  # two chunks
        k = torch.randn(2, seq_len, 64, generator=gen, requires_grad=True)  # (B, T, H)
        b = torch.randn(2, seq_len, 64, generator=gen, requires_grad=True)  # (B, T, H)
        h0 = torch.randn(2, 64, generator=gen, requires_grad=True) if with_h0 else None  # (B, H)
        outs = []
        for fused in (True, False):
            leaves = [t for t in (k, b, h0) if t is not None]
            for t in leaves:
                t.grad = None
            h = fused_decay_scan_or_doubling(k, b, h0, fused)  # (B, T, H)
            h.square().sum().backward()
            outs.append([h.detach(), *[t.grad.clone() for t in leaves]])
        for got, want in zip(*outs, strict=True):
            assert (got - want).abs().max().item() <= 1e-5 * max(1.0, want.abs().max().item())


def fused_decay_scan_or_doubling(k, b, h0, fused: bool) -> torch.Tensor:
    """h_t = σ(−k_t) h_{t−1} + b_t by the fused kernel or by rnnedge's doubling scan."""
    if fused:
        return fused_scan.fused_decay_scan(k, b, h0)
    return linear_scan(torch.sigmoid(-k), b, h0)


@pytest.fixture
def force_fused(monkeypatch) -> list[int]:
    """Layers take the fused path on CPU tensors (T > 1, not tracing); returns a list counting kernel calls."""
    from fla.ops.hgrn import chunk_hgrn

    calls: list[int] = []

    def counted(*args, **kwargs):
        assert kwargs.get("output_final_state") is False  # rnnedge never uses fla's final_state (no grad through it)
        calls.append(1)
        return chunk_hgrn(*args, **kwargs)

    def choose(k, levels):
        ok = k.shape[1] > 1 and levels is None and not fused_scan._tracing()
        return fused_scan.FUSED if ok else fused_scan.DOUBLING

    monkeypatch.setattr(fused_scan, "fla_kernel", lambda: counted)
    for mod in ("rnnedge.models.mingru", "rnnedge.models.minlstm"):
        monkeypatch.setattr(f"{mod}.choose_scan", choose)
    return calls


@pytest.mark.parametrize("cls", [MinGRU, MinLSTM])
def test_layers_with_the_fused_path_match_doubling(cls, force_fused, monkeypatch) -> None:
    torch.manual_seed(0)
    layer = cls(16, 32)
    x = torch.randn(2, 130, 16)  # (B, T, D)
    results = []
    for fused in (True, False):
        layer.zero_grad()
        if not fused:
            monkeypatch.setattr(f"{cls.__module__}.choose_scan", lambda k, levels: fused_scan.DOUBLING)
        before = len(force_fused)
        y, _ = layer(x)  # (B, T, D)
        y.square().mean().backward()
        assert (len(force_fused) > before) == fused
        results.append([y.detach(), *[p.grad.clone() for p in layer.parameters()]])
    for got, want in zip(*results, strict=True):
        assert (got - want).abs().max().item() <= 1e-5 * max(1.0, want.abs().max().item())


@pytest.mark.parametrize("arch", ["mingru", "minlstm"])
def test_train_loop_with_the_fused_path(arch, force_fused, tmp_path) -> None:
    from rnnedge.training.train import train
    from tests.test_training import REPEAT, tiny

    text = tmp_path / "text.txt"
    text.write_text(REPEAT, encoding="utf-8")
    cfg = tiny(arch=arch, steps=4, eval_every=4, warmup=1)
    fused = train(cfg, text, tmp_path / "fused", quiet=True)
    assert force_fused, "the fused kernel never ran"
    with fused_scan.forced_scan(fused_scan.DOUBLING):
        from rnnedge.models import mingru, minlstm

        for mod in (mingru, minlstm):
            mod.choose_scan = fused_scan.choose_scan  # undone by monkeypatch at teardown
        doubling = train(cfg, text, tmp_path / "doubling", quiet=True)
    assert fused.steps_done == doubling.steps_done == 4
    assert abs(fused.train_loss - doubling.train_loss) <= 1e-3 * abs(doubling.train_loss)
    assert abs(fused.val_loss - doubling.val_loss) <= 1e-3 * abs(doubling.val_loss)


def test_fla_final_state_gradient_is_dropped_so_rnnedge_takes_h_last(force_fused) -> None:
    """fla's backward ignores a gradient through final_state (fla/ops/hgrn/chunk.py backward's dht);
    rnnedge's layers return h[:, -1] as their state, whose gradient flows through o (force_fused asserts
    every kernel call passes output_final_state=False)."""
    from fla.ops.hgrn import chunk_hgrn

    x = torch.randn(1, 5, 64, requires_grad=True)  # (B, T, D)
    g = -torch.rand(1, 5, 64)  # (B, T, D)
    _, final = chunk_hgrn(x, g, output_final_state=True)  # (B, D)
    final.sum().backward()
    assert x.grad is None or not x.grad.any()  # fla drops it: relying on it would train wrongly
    torch.manual_seed(0)
    layer = MinGRU(16, 64)
    xs = torch.randn(1, 5, 16, requires_grad=True)  # (B, T, D)
    _, state = layer(xs)
    state[0].sum().backward()  # gradient of the returned state only
    assert force_fused and xs.grad is not None and xs.grad.abs().sum() > 0
