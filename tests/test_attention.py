"""The attention mixers: sliding-window transformer (ring-buffer KV cache) and Aaren (attention as a scan)."""

from __future__ import annotations

import copy
import json
from unittest import mock

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F

from rnnedge.errors import ConfigError, InputError
from rnnedge.exporter import export_model
from rnnedge.graphmeta import parse_metadata
from rnnedge.models import ModelConfig, build_model, fixed_scan_levels
from rnnedge.models.scan import attention_combine, attention_scan, sequential_attention
from rnnedge.training.checkpoint import save_checkpoint
from rnnedge.vocab import CharVocab

ATTENTION = ("transformer", "aaren")
WINDOW = 8  # small, so every test crosses it


def lm(arch: str, seed: int = 0, n_layers: int = 2, window: int = WINDOW, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = ModelConfig(vocab_size=20, arch=arch, n_layers=n_layers, d_model=16, window=window, **kwargs)
    return build_model(config).eval()


def ids(batch: int, time: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 20, (batch, time), generator=torch.Generator().manual_seed(seed))


def random_state(model, batch: int, seed: int = 3) -> tuple[torch.Tensor, ...]:
    """Float states N(0, 0.25); positions anywhere in 0..999 (a cache full of earlier tokens, or not)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for s in model.config.state_infos():
        shape = s.concrete_shape(batch)
        if s.dtype == "int64":
            out.append(torch.randint(0, 1000, shape, generator=gen))
        else:
            out.append(0.5 * torch.randn(shape, generator=gen))
    return tuple(out)


def max_diff(a, b) -> float:
    return max(float((x.double() - y.double()).abs().max()) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("arch", ATTENTION)
@pytest.mark.parametrize("start", ["zero", "random"])
def test_parallel_equals_single_steps_fp64(arch: str, start: str) -> None:
    model = lm(arch).double()
    x = ids(2, 5 * WINDOW + 3)  # crosses the window several times
    state = (
        None if start == "zero" else tuple(s.double() if s.is_floating_point() else s for s in random_state(model, 2))
    )
    with torch.no_grad():
        logits, final = model(x, state)
        steps, st = [], state
        for t in range(x.shape[1]):
            out, st = model(x[:, t : t + 1], st)
            steps.append(out)
    assert max_diff([logits, *final], [torch.cat(steps, 1), *st]) < 1e-10


@pytest.mark.parametrize("arch", ATTENTION)
def test_two_chunks_with_carried_state_equal_one_call(arch: str) -> None:
    model = lm(arch)
    x = ids(3, 61)
    state = random_state(model, 3)
    with torch.no_grad():
        whole, whole_state = model(x, state)
        first, st = model(x[:, :13], state)
        second, st = model(x[:, 13:], st)
    assert max_diff([torch.cat([first, second], 1), *st], [whole, *whole_state]) < 1e-5


def full_causal_attention(mixer, x: torch.Tensor) -> torch.Tensor:
    """Plain causal attention (no window, no cache) with the mixer's weights and rotary positions."""
    batch, time = x.shape[:2]
    q, k, v = mixer.qkv(x).view(batch, time, 3, mixer.n_heads, mixer.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    positions = torch.arange(time).expand(batch, time)
    q, k = mixer.rotate(q, positions), mixer.rotate(k, positions)
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, F)
    return mixer.out(y.transpose(1, 2).reshape(batch, time, -1))


@pytest.mark.parametrize("time", [2, 31, 32])
def test_transformer_within_its_window_is_plain_causal_attention(time: int) -> None:
    mixer = lm("transformer", window=32).blocks[0].mixer.double()
    x = torch.randn(2, time, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y, _ = mixer(x)
        assert (y - full_causal_attention(mixer, x)).abs().max() < 1e-12


def test_transformer_sees_exactly_its_window() -> None:
    """One layer: changing token 10 changes outputs 10 .. 10 + W − 1 and nothing else."""
    model = lm("transformer", n_layers=1)
    x = ids(1, 40)
    y = x.clone()
    y[0, 10] = (x[0, 10] + 1) % 20
    with torch.no_grad():
        moved = (model(x)[0] - model(y)[0]).abs().amax(-1)[0]  # (T,)
    changed = torch.nonzero(moved > 1e-6).flatten().tolist()
    assert changed == list(range(10, 10 + WINDOW))


def test_transformer_depends_only_on_distance_at_any_position() -> None:
    """Rotary angles from (p mod P_i) in int64: starting at position 10^5 + 7 (the cache full of zeros, which are
    more than a receptive field back by t = 2(W − 1)) gives the outputs of a stream starting at 0, in fp32."""
    model = lm("transformer")
    x = ids(2, 4 * WINDOW)
    far = tuple(s if s.is_floating_point() else torch.full_like(s, 100_007) for s in model.init_state(2))
    with torch.no_grad():
        near_logits, _ = model(x)
        far_logits, far_state = model(x, far)
    settled = 2 * (WINDOW - 1)
    assert (near_logits[:, settled:] - far_logits[:, settled:]).abs().max() < 1e-5
    assert far_state[2].tolist() == [100_007 + x.shape[1]] * 2


def test_aaren_scan_matches_its_recurrence_at_4096_fp32() -> None:
    gen = torch.Generator().manual_seed(0)
    s = 3 * torch.randn(2, 4096, 3, generator=gen, dtype=torch.float64)  # (B, T, H): sharp, shifting maxima
    v = torch.randn(2, 4096, 3, 5, generator=gen, dtype=torch.float64)  # (B, T, H, F)
    lse0, o0 = (
        torch.randn(2, 3, generator=gen, dtype=torch.float64),
        torch.randn(2, 3, 5, generator=gen, dtype=torch.float64),
    )
    want_o, want_lse = sequential_attention(s, v, lse0, o0)
    got_o, got_lse = attention_scan(s.float(), v.float(), lse0.float(), o0.float())
    assert (got_o.double() - want_o).abs().max() < 1e-4
    assert (got_lse.double() - want_lse).abs().max() < 1e-4
    # and it is softmax attention over [prefix token, s_0 .. s_t]
    scores = torch.cat([lse0.unsqueeze(1), s], 1)[:, :100]  # (B, 100, H)
    values = torch.cat([o0.unsqueeze(1), v], 1)[:, :100]  # (B, 100, H, F)
    weights = torch.softmax(scores, 1)  # (B, 100, H)
    assert (want_o[:, 98] - (weights.unsqueeze(-1) * values).sum(1)).abs().max() < 1e-12


def test_aaren_combine_is_associative() -> None:
    gen = torch.Generator().manual_seed(4)

    def element():
        m = 5 * torch.randn(4, 3, generator=gen, dtype=torch.float64)
        return (
            m,
            torch.rand(4, 3, generator=gen, dtype=torch.float64) + 0.1,
            torch.randn(4, 3, 2, generator=gen, dtype=torch.float64),
        )

    a, b, c = element(), element(), element()
    left = attention_combine(*attention_combine(*a, *b), *c)
    right = attention_combine(*a, *attention_combine(*b, *c))
    for x, y in zip(left, right, strict=True):
        assert (x - y).abs().max() < 1e-12


def test_aaren_fixed_scan_levels_match() -> None:
    model = lm("aaren")
    x = ids(1, 100)
    with torch.no_grad():
        ref, _ = model(x)
        with fixed_scan_levels(model, 16):
            fixed, _ = model(x)
    assert (ref - fixed).abs().max() < 1e-6


@pytest.mark.slow
def test_aaren_lm_exact_at_65536_fp32() -> None:
    """Logits of the fp32 parallel scan vs the fp64 LM with every Aaren layer run as its recurrence."""
    model = lm("aaren")
    x = ids(1, 65536)
    with torch.no_grad():
        got, _ = model(x)
        reference = copy.deepcopy(model).double()
        with mock.patch(
            "rnnedge.models.aaren.attention_scan", lambda s, v, lse0, o0, levels: sequential_attention(s, v, lse0, o0)
        ):
            want, _ = reference(x)
    assert (got.double() - want).abs().max() < 1e-4


@pytest.mark.parametrize("arch", ATTENTION)
def test_backward_through_parallel_path(arch: str) -> None:
    model = lm(arch).train()
    logits, _ = model(ids(2, 3 * WINDOW))
    logits.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize(
    "kwargs",
    [{"n_heads": 0}, {"n_heads": 3.0}, {"window": 0}, {"window": 1 << 17}, {"window": True}],
)
def test_bad_attention_config_is_a_config_error(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        ModelConfig(vocab_size=10, arch="transformer", **kwargs)


@pytest.mark.parametrize("arch", ATTENTION)
def test_heads_must_divide_d_model(arch: str) -> None:
    config = ModelConfig(vocab_size=10, arch=arch, d_model=18, n_heads=4)
    with pytest.raises(ConfigError, match="not divisible by n_heads"):
        build_model(config)
    with pytest.raises(ConfigError, match="not divisible by n_heads"):
        config.state_infos()


def test_old_configs_load_and_rnns_ignore_heads() -> None:
    old = {"vocab_size": 10, "arch": "mingru", "n_layers": 2, "d_model": 18, "expansion": 2.0, "mlp_ratio": 4.0}
    config = ModelConfig.from_dict(json.loads(json.dumps(old)))
    assert (config.n_heads, config.window) == (4, 128)
    build_model(config)  # 18 is not divisible by 4 heads, and a minGRU does not care


def test_state_of_another_architecture_is_one_clear_error() -> None:
    model = lm("transformer")
    gru_state = lm("mingru").init_state(1)
    with pytest.raises(InputError, match="another architecture"):
        model(ids(1, 3), gru_state[:1] * 6)
    state = list(model.init_state(1))
    state[2] = state[2].float()
    with pytest.raises(InputError, match="integer"):
        model(ids(1, 3), tuple(state))


@pytest.mark.parametrize("arch", ATTENTION)
def test_export_passes_every_check_and_declares_its_states(tmp_path, arch: str) -> None:
    torch.manual_seed(0)
    model = lm(arch)
    vocab = CharVocab("abcdefghijklmnopqrs\n")
    ckpt = save_checkpoint(tmp_path / "ckpt", model, vocab, val_loss=1.0, training={"steps": 1})
    # checks past 64 tokens chunk the parallel graph; the .ort copies are checked against the .onnx files
    result = export_model(ckpt, tmp_path / "out", max_seq_len=64, ort_format=True)
    assert result.manifest["verification"]["passed"] is True
    assert {"step.ort", "parallel.ort"} <= set(result.manifest["ort_format"]["files"])
    assert {c.name for c in result.checks} >= {"step_vs_parallel", "carried_state", "parallel_vs_torch_fp64"}
    states = model.config.state_infos()
    heads, head_dim = model.config.n_heads, model.config.head_dim
    if arch == "transformer":
        expect = [("0.k", ("batch", heads, WINDOW, head_dim), "float32", "kv")]
        expect += [
            ("0.v", ("batch", heads, WINDOW, head_dim), "float32", "kv"),
            ("0.pos", ("batch",), "int64", "position"),
        ]
    else:
        expect = [
            ("0.lse", ("batch", heads), "float32", "recurrent"),
            ("0.o", ("batch", heads, head_dim), "float32", "recurrent"),
        ]
    assert [(s.name, s.shape, s.dtype, s.kind) for s in states[: len(expect)]] == expect
    step = onnx.load(result.paths["step"])
    assert not {n.op_type for n in step.graph.node} & {"Loop", "If", "Scan"}
    info = parse_metadata({p.key: p.value for p in step.metadata_props}, "step")
    assert info.states == states
    sess = ort.InferenceSession(str(result.paths["step"]), providers=["CPUExecutionProvider"])
    onnx_types = {"float32": "tensor(float)", "int64": "tensor(int64)"}
    for s, inp, out in zip(states, sess.get_inputs()[1:], sess.get_outputs()[1:], strict=True):
        assert inp.shape == out.shape == list(s.shape)
        assert inp.type == out.type == onnx_types[s.dtype]


def test_exported_transformer_streams_from_any_position(tmp_path) -> None:
    """The step graph far into a stream (position 2^40): no error, the counter counts on, outputs stay finite."""
    vocab = CharVocab("abcdefghijklmnopqrs\n")
    ckpt = save_checkpoint(tmp_path / "ckpt", lm("transformer"), vocab, val_loss=1.0, training={"steps": 1})
    result = export_model(ckpt, tmp_path / "out", max_seq_len=256, simplify=False, verify=False)
    sess = ort.InferenceSession(str(result.paths["step"]), providers=["CPUExecutionProvider"])
    infos = lm("transformer").config.state_infos()
    state = [np.full(s.concrete_shape(1), 1 << 40 if s.kind == "position" else 0, np.dtype(s.dtype)) for s in infos]
    names = [i.name for i in sess.get_inputs()]
    for t in range(3 * WINDOW):
        out = sess.run(None, dict(zip(names, [np.array([t % 20]), *state], strict=True)))
        assert np.isfinite(out[0]).all()
        state = out[1:]
    assert [int(s[0]) for s, i in zip(state, infos, strict=True) if i.kind == "position"] == [
        (1 << 40) + 3 * WINDOW
    ] * 2
