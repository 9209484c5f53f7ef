"""The fused-scan mapping (rnnedge/models/fused_scan.py), checked on CPU.

fla-core's Triton kernels need a GPU, so here a plain-loop HGRN kernel with fla's signature and
semantics (h_t = exp(g_t)·h_{t−1} + x_t) stands in for `chunk_hgrn`; tests/test_gpu.py runs the real
kernel. What is checked here is everything rnnedge adds around the kernel: the (g, x) mapping of both
cells, the carried state (including its gradient, which `chunk_hgrn` does not return), when the fused
path is chosen, and that nothing off CUDA or inside an export ever reaches it.
"""

from __future__ import annotations

import importlib

import pytest
import torch

from rnnedge.errors import ConfigError, DependencyError
from rnnedge.models import fused_scan
from rnnedge.models.fused_scan import (
    DOUBLING,
    FUSED,
    SCAN_ENV,
    choose_scan,
    forced_scan,
    fused_decay_scan,
    scan_choice,
    scan_mode,
)
from rnnedge.models.scan import sequential_scan

from .conftest import tiny_model


def loop_hgrn(x, g, initial_state=None, output_final_state=False):
    """h_t = exp(g_t)·h_{t−1} + x_t as a loop, fla's HGRN signature: (o, final state or None)."""
    h = torch.zeros_like(x[:, 0]) if initial_state is None else initial_state.to(x.dtype)  # (B, H)
    out = []
    for x_t, g_t in zip(x.unbind(1), g.to(x.dtype).unbind(1), strict=True):
        h = g_t.exp() * h + x_t  # (B, H)
        out.append(h)
    return torch.stack(out, dim=1), (h if output_final_state else None)  # (B, T, H)


def chunk_like_hgrn(x, g, initial_state=None, output_final_state=False):
    """As loop_hgrn, but like fla's chunk_hgrn returns no gradient for the initial state."""
    h0 = None if initial_state is None else initial_state.detach()
    return loop_hgrn(x, g, h0, output_final_state)


def _inputs(seed: int = 0, batch: int = 3, steps: int = 50, width: int = 8):
    gen = torch.Generator().manual_seed(seed)
    k = (2 * torch.randn(batch, steps, width, generator=gen, dtype=torch.float64)).requires_grad_()
    b = torch.randn(batch, steps, width, generator=gen, dtype=torch.float64).requires_grad_()
    h0 = torch.randn(batch, width, generator=gen, dtype=torch.float64).requires_grad_()
    return k, b, h0


def test_mapping_equals_the_sequential_recurrence() -> None:
    k, b, h0 = _inputs()
    want = sequential_scan(torch.sigmoid(-k), b, h0)  # a = σ(−k)
    got = fused_decay_scan(k, b, h0, kernel=loop_hgrn)
    assert (got - want).abs().max() < 1e-12
    zero_start = fused_decay_scan(k, b, None, kernel=loop_hgrn)
    assert (zero_start - sequential_scan(torch.sigmoid(-k), b)).abs().max() < 1e-12


@pytest.mark.parametrize("kernel", [loop_hgrn, chunk_like_hgrn])
def test_gradients_reach_k_b_and_the_carried_state(kernel) -> None:
    k, b, h0 = _inputs(1)
    weights = torch.randn(b.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    (sequential_scan(torch.sigmoid(-k), b, h0) * weights).sum().backward()
    want = [t.grad.clone() for t in (k, b, h0)]
    for t in (k, b, h0):
        t.grad = None
    (fused_decay_scan(k, b, h0, kernel=kernel) * weights).sum().backward()
    for got, ref in zip((k.grad, b.grad, h0.grad), want, strict=True):
        assert (got - ref).abs().max() < 1e-10


def test_state_without_gradient_goes_to_the_kernel_unchanged() -> None:
    k, b, h0 = (t.detach() for t in _inputs(2))
    seen = {}

    def spy(x, g, initial_state=None, output_final_state=False):
        seen.update(x=x, g=g, initial_state=initial_state)
        return loop_hgrn(x, g, initial_state, output_final_state)

    fused_decay_scan(k, b, h0, kernel=spy)
    assert seen["x"] is b and seen["initial_state"] is h0
    assert torch.allclose(seen["g"].exp(), torch.sigmoid(-k), rtol=1e-12)
    fused_decay_scan(k.bfloat16(), b.bfloat16(), h0, kernel=spy)
    assert seen["g"].dtype == torch.float32 and seen["x"].dtype == torch.bfloat16  # log-decay never below fp32
    seen.clear()
    fused_decay_scan(k, b, h0.clone().requires_grad_(), kernel=spy)  # needs a gradient: folded into x_0
    assert seen["initial_state"] is None and torch.equal(seen["x"][:, 1:], b[:, 1:])


@pytest.mark.parametrize("arch", ["mingru", "minlstm"])
def test_mixer_call_site_maps_its_gate_to_the_kernel(arch, monkeypatch) -> None:
    """Each mixer's fused branch (kernel = the loop) equals its doubling branch, outputs and gradients."""
    layer = tiny_model(arch, d_model=8).blocks[0].mixer.double()
    x = torch.randn(2, 40, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    h0 = torch.randn(2, layer.state_shapes[0][0], dtype=torch.float64).requires_grad_()

    def run() -> tuple[torch.Tensor, list[torch.Tensor]]:
        layer.zero_grad()
        h0.grad = None
        y, (h_last,) = layer(x, (h0,))
        (y.sum() + h_last.sum()).backward()
        return y.detach(), [h0.grad.clone(), *(p.grad.clone() for p in layer.parameters())]

    ref_y, ref_grads = run()
    module = importlib.import_module(f"rnnedge.models.{arch}")
    monkeypatch.setattr(module, "choose_scan", lambda k, levels: FUSED)
    monkeypatch.setattr(fused_scan, "fla_kernel", lambda: chunk_like_hgrn)
    y, grads = run()
    assert (y - ref_y).abs().max() < 1e-10
    for got, ref in zip(grads, ref_grads, strict=True):
        assert (got - ref).abs().max() < 1e-9


def test_scan_choice_rule() -> None:
    cuda = dict(is_cuda=True, seq_len=64, levels=None, tracing=False, fla_found=True)
    assert scan_choice("auto", **cuda) == FUSED
    assert scan_choice("fused", **cuda) == FUSED
    assert scan_choice("doubling", **cuda) == DOUBLING
    for change in ({"is_cuda": False}, {"seq_len": 1}, {"levels": 12}, {"tracing": True}):
        for mode in ("auto", "fused"):
            assert scan_choice(mode, **{**cuda, **change}) == DOUBLING, (mode, change)
    assert scan_choice("auto", **{**cuda, "fla_found": False}) == DOUBLING
    with pytest.raises(DependencyError, match="fla-core"):
        scan_choice("fused", **{**cuda, "fla_found": False})


def test_scan_mode_from_environment_and_override(monkeypatch) -> None:
    monkeypatch.delenv(SCAN_ENV, raising=False)
    assert scan_mode() == "auto"
    monkeypatch.setenv(SCAN_ENV, " Doubling ")
    assert scan_mode() == "doubling"
    with forced_scan("fused"):
        assert scan_mode() == "fused"
        with forced_scan("auto"):
            assert scan_mode() == "auto"
        assert scan_mode() == "fused"
    assert scan_mode() == "doubling"
    monkeypatch.setenv(SCAN_ENV, "triton")
    with pytest.raises(ConfigError, match=SCAN_ENV):
        scan_mode()
    with pytest.raises(ConfigError, match="scan mode"), forced_scan("fast"):
        pass


@pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated")
def test_cpu_and_traced_calls_never_touch_fla(monkeypatch) -> None:
    def no_fla():
        raise AssertionError("fla must not be imported here")

    monkeypatch.setattr(fused_scan, "fla_kernel", no_fla)
    monkeypatch.setenv(SCAN_ENV, "fused")
    assert choose_scan(torch.zeros(2, 30, 4), None) == DOUBLING  # CPU tensor
    seen = []

    def traced(k: torch.Tensor) -> torch.Tensor:
        seen.append(fused_scan._tracing())
        return k * 2

    torch.jit.trace(traced, torch.zeros(1, 3, 2), check_trace=False)
    assert seen == [True]
    model = tiny_model("mingru").train()  # a whole training step on CPU takes the doubling scan
    logits, _ = model(torch.randint(0, 20, (2, 17)))
    logits.sum().backward()


def test_fused_scan_without_fla_is_one_clear_error(monkeypatch) -> None:
    monkeypatch.setattr(fused_scan, "_load_fla", lambda: (None, "ModuleNotFoundError: No module named 'fla'"))
    k, b, _ = _inputs()
    with pytest.raises(DependencyError, match="pip install fla-core"):
        fused_decay_scan(k, b)
    assert fused_scan.fla_status().startswith("ModuleNotFoundError")
