import pytest
import torch

from rnnedge.errors import ConfigError
from rnnedge.models import ModelConfig, fixed_scan_levels, mixer_spec

from .conftest import ARCHS, tiny_model


def _seq_reference(model, idx, state=None):
    """fp64, one token at a time: the sequential definition."""
    model = model.double()
    logits = []
    for t in range(idx.shape[1]):
        out, state = model(idx[:, t : t + 1], state)
        logits.append(out)
    return torch.cat(logits, dim=1), state


@pytest.mark.parametrize("arch", ARCHS)
def test_parallel_equals_fp64_steps(arch):
    model = tiny_model(arch)
    idx = torch.randint(0, 20, (2, 300), generator=torch.Generator().manual_seed(1))
    ref, ref_state = _seq_reference(tiny_model(arch), idx)
    logits, state = model(idx)
    assert (logits.double() - ref).abs().max() < 1e-5
    for s, r in zip(state, ref_state, strict=True):
        assert (s.double() - r).abs().max() < 1e-5


@pytest.mark.parametrize("arch", ARCHS)
def test_chunked_calls_with_carried_state_equal_one_call(arch):
    model = tiny_model(arch)
    idx = torch.randint(0, 20, (3, 2048), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full, full_state = model(idx)
        first, st = model(idx[:, :1000])
        second, st = model(idx[:, 1000:], st)
    assert (torch.cat([first, second], 1) - full).abs().max() < 1e-5
    for a, b in zip(st, full_state, strict=True):
        assert (a - b).abs().max() < 1e-5


@pytest.mark.parametrize("arch", [a for a in ARCHS if mixer_spec(a).uses_scan])
def test_fixed_levels_trace_matches(arch):
    model = tiny_model(arch)
    idx = torch.randint(0, 20, (1, 100))
    with torch.no_grad():
        ref, _ = model(idx)
        with fixed_scan_levels(model, 16):
            fixed, _ = model(idx)
    assert (ref - fixed).abs().max() < 1e-6
    assert all(b.mixer.scan_levels is None for b in model.blocks)


@pytest.mark.parametrize("arch", ARCHS)
def test_backward_reaches_every_parameter(arch):
    model = tiny_model(arch).train()
    logits, _ = model(torch.randint(0, 20, (2, 33)))
    logits.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("arch", ARCHS)
def test_spec_states_are_the_states_the_model_carries(arch):
    model = tiny_model(arch)
    infos = model.config.state_infos()
    _, state = model(torch.zeros(3, 5, dtype=torch.long))
    assert len(state) == len(infos) == model.n_states
    for info, tensor, zero in zip(infos, state, model.init_state(3), strict=True):
        assert tuple(tensor.shape) == tuple(zero.shape) == info.concrete_shape(3)
        assert str(tensor.dtype).removeprefix("torch.") == info.dtype
    spec = mixer_spec(arch)
    assert spec.name == arch


def test_state_infos_and_param_counts():
    cfg = ModelConfig(vocab_size=10, arch="lstm", n_layers=2, d_model=8)
    assert [(s.name, s.shape) for s in cfg.state_infos()] == [
        ("0.h", ("batch", 16)),
        ("0.c", ("batch", 16)),
        ("1.h", ("batch", 16)),
        ("1.c", ("batch", 16)),
    ]
    # Paper: minGRU has 2·d_h·d_x recurrent weights against GRU's 3·d_h·(d_x + d_h).
    mg = tiny_model("mingru").blocks[0].mixer.to_zh.weight.numel()
    gru = tiny_model("gru").blocks[0].mixer.rnn
    assert mg == 2 * 32 * 16
    assert gru.weight_ih_l0.numel() + gru.weight_hh_l0.numel() == 3 * 32 * (16 + 32)


@pytest.mark.parametrize("kwargs", [{"arch": "mamba"}, {"n_layers": 0}, {"d_model": -1}, {"expansion": 0}])
def test_bad_config_is_a_clear_error(kwargs):
    with pytest.raises(ConfigError):
        ModelConfig(vocab_size=10, **kwargs)


def test_wrong_state_count_raises():
    model = tiny_model("lstm")
    with pytest.raises(ValueError, match="state tensors"):
        model(torch.zeros(1, 3, dtype=torch.long), (torch.zeros(1, 32),))
