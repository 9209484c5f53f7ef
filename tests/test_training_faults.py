"""Training and checkpoints under bad input and failing disks: one line, exit 1, nothing half-written.

Issue 13, items 8-11 (train part) and the bundled model's machine path.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import struct
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import rnnedge.training.checkpoint as checkpoint_mod
from rnnedge.assets import default_model_path
from rnnedge.cli import app
from rnnedge.errors import CheckpointError, RnnedgeError
from rnnedge.training.checkpoint import load_checkpoint
from rnnedge.training.evaluate import evaluate_checkpoint
from rnnedge.training.weights import parse_weights_header

TEXT = "the cat sat on the mat. " * 120
TINY = ["--layers", "1", "--d-model", "16", "--seq-len", "16", "--batch-size", "4", "--threads", "1", "--quiet"]
runner = CliRunner()


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnedge: error: "), result.output
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.fixture(scope="module")
def text(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def ckpt(text: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ck") / "ckpt"
    res = run("train", "--data", text, "--out", out, *TINY, "--steps", "6", "--eval-every", "3", "--warmup", "1")
    assert res.exit_code == 0, res.output
    return out


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def _set_model(folder: Path, **changes: int) -> None:
    meta = json.loads((folder / "config.json").read_text())
    meta["model"].update(changes)  # weights_sha256 stays valid: it covers the weights, not the config
    (folder / "config.json").write_text(json.dumps(meta), encoding="utf-8")


def _never_build(monkeypatch) -> None:
    def refuse(config):
        raise AssertionError(f"a model was built for {config} before its shapes were checked")

    monkeypatch.setattr(checkpoint_mod, "build_model", refuse)


# -- item 8: absurd configs are refused from the weights header, before anything is allocated --------


@pytest.mark.parametrize(
    ("changes", "needle"),
    [({"n_layers": 10**9}, "n_layers"), ({"d_model": 10**7}, "shape"), ({"d_model": 10**12}, "impossible")],
)
def test_huge_config_is_refused_before_building(ckpt: Path, tmp_path: Path, monkeypatch, changes, needle) -> None:
    bad = _copy(ckpt, tmp_path / "bad")
    _set_model(bad, **changes)
    _never_build(monkeypatch)
    with pytest.raises(CheckpointError, match=needle):
        load_checkpoint(bad)
    assert_one_line_error(run("train", "--resume", bad, "--out", bad, "--steps", "9", "--quiet"), needle)


def test_weights_header_is_checked_against_the_file(ckpt: Path, tmp_path: Path) -> None:
    raw = (ckpt / "model.safetensors").read_bytes()
    header = parse_weights_header(raw, "model.safetensors")
    assert header["embed.weight"].shape == (len(set(TEXT)), 16) and header["embed.weight"].dtype == "F32"
    cases = {
        "short": raw[:5],
        "huge-header": struct.pack("<Q", 1 << 40) + raw[8:],
        "not-json": struct.pack("<Q", 4) + b"{{{{" + raw[12:],
        "truncated-data": raw[: len(raw) - 100],
    }
    for name, data in cases.items():
        bad = _copy(ckpt, tmp_path / name)
        (bad / "model.safetensors").write_bytes(data)
        with pytest.raises(CheckpointError, match=r"model\.safetensors"):
            parse_weights_header(data, bad / "model.safetensors")
        assert_one_line_error(
            run("train", "--resume", bad, "--out", bad, "--steps", "9", "--quiet"), "model.safetensors"
        )


# -- item 9: a failing disk leaves no half-written file, no empty --out, and ends with one line ------


def _full_disk_under(root: Path, monkeypatch) -> list[Path]:
    """Every Path.write_bytes under `root` writes half its data, then fails as a full disk does."""
    real = Path.write_bytes
    hit: list[Path] = []

    def write_bytes(self: Path, data: bytes) -> int:
        if root not in self.absolute().parents:
            return real(self, data)
        hit.append(self)
        with open(self, "wb") as f:
            f.write(bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    return hit


def test_full_disk_on_a_fresh_run_leaves_nothing(text: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "new" / "deeper" / "ckpt"
    hit = _full_disk_under(tmp_path, monkeypatch)
    res = run("train", "--data", text, "--out", out, *TINY, "--steps", "4", "--eval-every", "2")
    assert_one_line_error(res, "cannot write the checkpoint", "No space left")
    assert hit, "the simulated full disk was never reached"
    assert not (tmp_path / "new").exists()  # no empty --out (nor its new parents) left behind


def test_full_disk_on_resume_keeps_the_last_good_checkpoint(ckpt: Path, text: Path, tmp_path: Path, monkeypatch):
    ck = _copy(ckpt, tmp_path / "ck")
    before = {p.name: p.read_bytes() for p in ck.iterdir()}
    hit = _full_disk_under(ck, monkeypatch)
    res = run("train", "--resume", ck, "--out", ck, "--data", text, "--steps", "9", "--quiet")
    assert_one_line_error(res, "cannot write the checkpoint", "No space left")
    assert hit
    assert {p.name: p.read_bytes() for p in ck.iterdir()} == before  # same files, same bytes, no .tmp
    monkeypatch.undo()
    assert load_checkpoint(ck, with_optimizer=True).training["steps_done"] == 6


def test_optimizer_file_from_another_save_is_refused(ckpt: Path, text: Path, tmp_path: Path) -> None:
    ck = _copy(ckpt, tmp_path / "ck")
    other = tmp_path / "other"
    res = run("train", "--data", text, "--out", other, *TINY, "--steps", "3", "--eval-every", "3", "--warmup", "1")
    assert res.exit_code == 0, res.output
    (ck / "optimizer.safetensors").write_bytes((other / "optimizer.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="optimizer"):
        load_checkpoint(ck, with_optimizer=True)
    assert_one_line_error(
        run("train", "--resume", ck, "--out", ck, "--data", text, "--steps", "9", "--quiet"), "optimizer"
    )


# -- items 10 and 11: devices and threads are checked first, each in one line ------------------------


@pytest.mark.parametrize(("device", "needle"), [("tpu", "--device"), ("cuda:x", "--device"), ("cuda", "CUDA")])
def test_unusable_device_is_one_line_before_any_work(text: Path, tmp_path: Path, monkeypatch, device, needle) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "o"
    assert_one_line_error(run("train", "--data", text, "--out", out, *TINY, "--device", device), needle)
    assert not out.exists()


@pytest.mark.parametrize("device", ["cuda", "tpu"])
def test_evaluate_checkpoint_checks_the_device_first(ckpt: Path, monkeypatch, device: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _never_build(monkeypatch)  # refused before the checkpoint is even loaded
    with pytest.raises(RnnedgeError, match="--device"):
        evaluate_checkpoint(ckpt, TEXT[:100], device=device)


@pytest.mark.parametrize("threads", ["0", "-3"])
def test_bad_threads_names_the_option(text: Path, tmp_path: Path, threads: str) -> None:
    res = run("train", "--data", text, "--out", tmp_path / "o", *TINY, "--threads", threads)
    assert_one_line_error(res, "--threads", threads)
    assert not (tmp_path / "o").exists()


# -- rough edge: no machine paths in what a checkpoint records about its data ------------------------


def test_checkpoint_records_its_data_without_paths(ckpt: Path, text: Path, tmp_path: Path) -> None:
    raw = (ckpt / "config.json").read_text()
    assert str(text.parent) not in raw and str(ckpt.parent) not in raw
    record = json.loads(raw)["training"]["data"]
    assert record == {
        "name": "text.txt",
        "sha256": hashlib.sha256(TEXT.encode()).hexdigest(),
        "chars": len(TEXT),
    }
    ck = _copy(ckpt, tmp_path / "ck")
    res = run("train", "--resume", ck, "--out", ck, "--steps", "9", "--quiet")
    assert_one_line_error(res, "--data is required", "text.txt", f"{len(TEXT):,} characters")
    other = tmp_path / "other.txt"
    other.write_text(TEXT.upper(), encoding="utf-8")
    assert_one_line_error(
        run("train", "--resume", ck, "--out", ck, "--data", other, "--steps", "9", "--quiet"), "sha256"
    )
    res = run("train", "--resume", ck, "--out", ck, "--data", text, "--steps", "9", "--quiet")
    assert res.exit_code == 0, res.output


def test_bundled_model_records_no_machine_path() -> None:
    meta = json.loads((default_model_path() / "config.json").read_text())
    record = meta["training"]["data"]
    assert record["name"] == "tinyshakespeare.txt" and record["chars"] == 1_115_394
    assert len(record["sha256"]) == 64 and "/" not in json.dumps(record)
    assert load_checkpoint(default_model_path()).model.config.arch == "mingru"  # weights_sha256 still valid
