"""Training loop, resume, data loading, evaluation (tiny models, inline text)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from rnnedge.errors import CheckpointError, ConfigError, UnknownCharacterError
from rnnedge.models import MIXER_NAMES
from rnnedge.training import data as data_mod
from rnnedge.training.checkpoint import load_checkpoint
from rnnedge.training.config import TrainConfig, lr_at
from rnnedge.training.evaluate import evaluate_checkpoint
from rnnedge.training.train import TrainingError, train

REPEAT = "abcdefgh ijk. " * 200  # tiny, perfectly predictable after a few chars


def tiny(**kw) -> TrainConfig:
    base = dict(
        arch="mingru", n_layers=1, d_model=16, expansion=1.0, mlp_ratio=2.0, seq_len=16, batch_size=8,
        steps=60, lr=1e-2, warmup=5, eval_every=20, eval_batches=2, seed=3, threads=1,
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture()
def text_file(tmp_path: Path) -> Path:
    p = tmp_path / "text.txt"
    p.write_text(REPEAT, encoding="utf-8")
    return p


@pytest.mark.parametrize("arch", MIXER_NAMES)
def test_training_reduces_loss(arch: str, text_file: Path, tmp_path: Path) -> None:
    out = tmp_path / arch
    res = train(tiny(arch=arch, steps=60), text_file, out, quiet=True)
    hist = res.history
    assert res.steps_done == 60 and len(hist) == 3
    assert hist[-1]["val_loss"] < 0.5 * math.log(12)  # well below a uniform guess over the 12 chars
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    ck = load_checkpoint(out, with_optimizer=True)
    assert ck.val_loss == pytest.approx(res.val_loss)
    assert ck.training["steps_done"] == 60 and ck.training["tokens_seen"] == 60 * 8 * 16
    assert ck.training["config"]["arch"] == arch and ck.optimizer_tensors
    ev = evaluate_checkpoint(out, REPEAT[:500], chunk_len=64)
    assert ev["chars"] == 499 and ev["bits_per_char"] == pytest.approx(ev["loss_nats"] / math.log(2))
    assert ev["loss_nats"] < 0.5 * math.log(12)


def test_resume_continues_identically(text_file: Path, tmp_path: Path) -> None:
    cfg = tiny(steps=40, eval_every=20)
    full = train(cfg, text_file, tmp_path / "full", quiet=True)
    part = train(cfg, text_file, tmp_path / "part", quiet=True, stop_at=20)  # as if interrupted at step 20
    assert part.steps_done == 20
    resumed = train(cfg, text_file, tmp_path / "part", resume=tmp_path / "part", quiet=True)
    assert resumed.steps_done == 40
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]
    assert resumed.val_loss == pytest.approx(full.val_loss, abs=1e-6)
    a = load_checkpoint(tmp_path / "full").model.state_dict()
    b = load_checkpoint(tmp_path / "part").model.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_resume_refuses_mismatched_config(text_file: Path, tmp_path: Path) -> None:
    train(tiny(steps=10, eval_every=10), text_file, tmp_path / "c", quiet=True)
    with pytest.raises(ConfigError, match="d_model"):
        train(tiny(steps=20, d_model=32), text_file, tmp_path / "c", resume=tmp_path / "c", quiet=True)
    other = tmp_path / "other.txt"
    other.write_text(REPEAT[::-1], encoding="utf-8")
    with pytest.raises(ConfigError, match="sha256"):
        train(tiny(steps=20), other, tmp_path / "c", resume=tmp_path / "c", quiet=True)
    with pytest.raises(ConfigError, match="already completed"):
        train(tiny(steps=10, eval_every=10), text_file, tmp_path / "c", resume=tmp_path / "c", quiet=True)


def test_nan_loss_stops_and_keeps_last_checkpoint(text_file: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "nan"
    train(tiny(steps=10, eval_every=10), text_file, out, quiet=True)
    before = (out / "model.safetensors").read_bytes()
    import rnnedge.training.train as tr

    real = tr.F.cross_entropy
    monkeypatch.setattr(tr.F, "cross_entropy", lambda *a, **k: real(*a, **k) * float("nan"))
    with pytest.raises(TrainingError, match="NaN"):
        train(tiny(steps=20, eval_every=10), text_file, out, resume=out, quiet=True)
    assert (out / "model.safetensors").read_bytes() == before


def test_lr_schedule() -> None:
    cfg = tiny(steps=100, warmup=10, lr=1e-2, min_lr=1e-3)
    assert lr_at(cfg, 0) == pytest.approx(1e-3)
    assert lr_at(cfg, 9) == pytest.approx(1e-2)
    assert lr_at(cfg, 10) == pytest.approx(1e-2)
    assert lr_at(cfg, 55) == pytest.approx(5.5e-3)
    assert lr_at(cfg, 100) == pytest.approx(1e-3)
    assert lr_at(cfg, 20, time_fraction=1.0) == pytest.approx(1e-3)


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="arch"):
        TrainConfig(arch="rwkv")
    with pytest.raises(ConfigError, match="--seq-len"):
        TrainConfig(seq_len=0)
    with pytest.raises(ConfigError, match="--layers"):
        TrainConfig(n_layers=True)
    with pytest.raises(ConfigError, match="--device"):
        TrainConfig(device="cuda:zero")
    assert TrainConfig.from_dict(TrainConfig().to_dict()) == TrainConfig()
    with pytest.raises(ConfigError, match="unknown keys"):
        TrainConfig.from_dict({"bogus": 1})


def test_text_too_short(tmp_path: Path) -> None:
    p = tmp_path / "short.txt"
    p.write_text("hello world", encoding="utf-8")
    with pytest.raises(ConfigError, match="too short"):
        train(tiny(), p, tmp_path / "o", quiet=True)
    assert not (tmp_path / "o").exists()


def test_read_text_errors(tmp_path: Path) -> None:
    with pytest.raises(data_mod.DataError, match="not found"):
        data_mod.read_text(tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(data_mod.DataError, match="empty"):
        data_mod.read_text(tmp_path / "empty.txt")
    (tmp_path / "bin.txt").write_bytes(b"ok \xff\xfe")
    with pytest.raises(data_mod.DataError, match="not UTF-8"):
        data_mod.read_text(tmp_path / "bin.txt")


def test_split_and_sampler() -> None:
    td = data_mod.prepare(REPEAT, seq_len=16)
    assert len(td.val) == int(len(REPEAT) * 0.1) and len(td.train) + len(td.val) == len(REPEAT)
    assert td.vocab.decode(td.val[:5].numpy()) == REPEAT[len(td.train) : len(td.train) + 5]
    s0 = data_mod.BatchSampler(td.train, 4, 16, seed=1, rank=0)
    s1 = data_mod.BatchSampler(td.train, 4, 16, seed=1, rank=1)
    b = s0.sample(7)
    assert b.shape == (4, 17) and torch.equal(b, s0.sample(7))
    assert not torch.equal(b, s1.sample(7)) and not torch.equal(b, s0.sample(8))
    windows = data_mod.BatchSampler(torch.arange(100), 5, 16, seed=2).sample(0)  # contiguous, in range
    assert bool((windows[:, 1:] - windows[:, :-1] == 1).all()) and int(windows.max()) < 100


def test_shakespeare_cache_offline(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RNNEDGE_CACHE", str(tmp_path / "cache"))

    def offline(*a, **k):
        raise data_mod.urllib.error.URLError("no network")

    monkeypatch.setattr(data_mod.urllib.request, "urlopen", offline)
    with pytest.raises(data_mod.DataError, match="offline"):
        data_mod.resolve_data("shakespeare")
    assert not (tmp_path / "cache" / data_mod.SHAKESPEARE_FILE).exists()
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / data_mod.SHAKESPEARE_FILE).write_text("To be, or not to be", encoding="utf-8")
    assert data_mod.resolve_data("shakespeare") == tmp_path / "cache" / data_mod.SHAKESPEARE_FILE
    assert data_mod.resolve_data(tmp_path / "x.txt") == tmp_path / "x.txt"  # explicit paths never download


def test_shakespeare_download_is_atomic(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RNNEDGE_CACHE", str(tmp_path / "c"))

    class Resp:
        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

        def read(self) -> bytes:
            return b"First Citizen:\n"

    monkeypatch.setattr(data_mod.urllib.request, "urlopen", lambda *a, **k: Resp())
    path = data_mod.shakespeare_path()
    assert path.read_text(encoding="utf-8") == "First Citizen:\n"
    assert [p.name for p in path.parent.iterdir()] == [data_mod.SHAKESPEARE_FILE]


def test_evaluate_unknown_characters(text_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    train(tiny(steps=5, eval_every=5), text_file, out, quiet=True)
    with pytest.raises(UnknownCharacterError, match="'Z' at position 3"):
        evaluate_checkpoint(out, "abcZdef")
    ev = evaluate_checkpoint(out, "abcZdef", on_unknown="skip")
    assert ev["chars"] == 5
    # chunking with carried state gives the same loss as one call
    one = evaluate_checkpoint(out, REPEAT[:300], chunk_len=1000)
    many = evaluate_checkpoint(out, REPEAT[:300], chunk_len=7)
    assert many["loss_nats"] == pytest.approx(one["loss_nats"], rel=1e-5)
    with pytest.raises(CheckpointError):
        evaluate_checkpoint(tmp_path / "nope", "abc")


def test_bundled_default_model() -> None:
    from rnnedge.assets import default_model_path

    path = default_model_path()
    ck = load_checkpoint(path)
    assert ck.model.config.arch == "mingru" and len(ck.vocab) == 65
    assert ck.training["config"]["arch"] == "mingru" and ck.val_loss is not None
    assert sum(f.stat().st_size for f in path.iterdir()) < 5_000_000
    verse = "ROMEO:\nBut, soft! what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n"
    ev = evaluate_checkpoint(ck, verse * 3)
    assert ev["loss_nats"] < 2.3  # a uniform guess is ln 65 = 4.17
