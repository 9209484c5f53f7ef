"""`rnnedge train` / `rnnedge eval` through the CLI: outputs, resume, and one-line errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rnnedge.cli import app
from rnnedge.models import MIXER_NAMES

TEXT = "the cat sat on the mat. " * 120
TINY = ["--layers", "1", "--d-model", "16", "--seq-len", "16", "--batch-size", "4", "--threads", "1"]
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnedge: error: "), result.stderr
    assert "Traceback" not in result.output
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cli")
    text = root / "text.txt"
    text.write_text(TEXT, encoding="utf-8")
    out = root / "ckpt"
    res = run("train", "--data", text, "--out", out, *TINY, "--steps", "30", "--eval-every", "15", "--lr", "1e-2")
    assert res.exit_code == 0, res.output
    assert "saved" in res.stdout and "30 steps" in res.stdout
    return text, out


def test_train_writes_checkpoint(trained) -> None:
    _, out = trained
    meta = json.loads((out / "config.json").read_text())
    assert {"model.safetensors", "config.json", "optimizer.safetensors"} <= {p.name for p in out.iterdir()}
    assert meta["model"]["arch"] == "mingru" and meta["training"]["steps_done"] == 30
    assert meta["training"]["config"]["seq_len"] == 16 and math.isfinite(meta["val_loss"])
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_resume_via_cli_keeps_config(trained, tmp_path: Path) -> None:
    text, out = trained
    import shutil

    ck = tmp_path / "ck"
    shutil.copytree(out, ck)
    res = run("train", "--resume", ck, "--out", ck, "--data", text, "--steps", "40", "--quiet")
    assert res.exit_code == 0, res.output
    meta = json.loads((ck / "config.json").read_text())
    assert meta["training"]["steps_done"] == 40 and meta["training"]["data"]["name"] == text.name
    res = run("train", "--resume", ck, "--out", ck, "--data", text, "--steps", "50", "--d-model", "32")
    assert_one_line_error(res, "cannot resume", "d_model")


@pytest.mark.parametrize("arch", MIXER_NAMES)
def test_every_registered_mixer_trains_and_resumes(arch: str, trained, tmp_path: Path) -> None:
    text, _ = trained
    out = tmp_path / arch
    res = run("train", "--arch", arch, "--data", text, "--out", out, *TINY, "--steps", "4", "--eval-every", "2", "-q")
    assert res.exit_code == 0, res.output
    assert f"({arch}," in res.stdout and "4 steps" in res.stdout
    res = run("train", "--resume", out, "--out", out, "--data", text, "--steps", "6", "--quiet")
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "config.json").read_text())
    assert meta["model"]["arch"] == arch and meta["training"]["steps_done"] == 6
    assert [h["step"] for h in meta["training"]["history"]] == [2, 4, 6]
    assert math.isfinite(meta["val_loss"])


def test_eval_checkpoint(trained) -> None:
    text, out = trained
    res = run("eval", out, "--data", text)
    assert res.exit_code == 0, res.output
    assert "nats/char" in res.stdout and "bits/char" in res.stdout
    res = run("eval", out, "--data", text, "--json", "--chunk-len", "50")
    d = json.loads(res.stdout)
    assert d["kind"] == "checkpoint" and d["chars"] == len(TEXT) - 1
    assert d["bits_per_char"] == pytest.approx(d["loss_nats"] / math.log(2))


def test_eval_unknown_characters(trained, tmp_path: Path) -> None:
    _, out = trained
    bad = tmp_path / "bad.txt"
    bad.write_text("the cat Zat", encoding="utf-8")
    assert_one_line_error(run("eval", out, "--data", bad), "'Z' at position 8")
    res = run("eval", out, "--data", bad, "--on-unknown", "skip", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["chars"] == 9
    assert_one_line_error(run("eval", out, "--data", bad, "--variant", "int8-dynamic"), "--variant")
    assert_one_line_error(run("eval", out, "--data", bad, "--on-unknown", "drop"), "--on-unknown")


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("optimizer.safetensors"))
    return dst


def test_corrupt_checkpoints_give_one_line(trained, tmp_path: Path) -> None:
    text, out = trained
    trunc = _copy(out, tmp_path / "trunc")
    raw = (trunc / "model.safetensors").read_bytes()
    (trunc / "model.safetensors").write_bytes(raw[: len(raw) // 2])
    assert_one_line_error(run("eval", trunc, "--data", text), "model.safetensors")

    garbage = _copy(out, tmp_path / "garbage")
    (garbage / "config.json").write_text("{not json", encoding="utf-8")
    assert_one_line_error(run("eval", garbage, "--data", text), "config")

    shapes = _copy(out, tmp_path / "shapes")
    meta = json.loads((shapes / "config.json").read_text())
    meta["model"]["d_model"] = 24
    meta["weights_sha256"] = None
    (shapes / "config.json").write_text(json.dumps(meta), encoding="utf-8")
    assert_one_line_error(run("eval", shapes, "--data", text), "shape")
    assert_one_line_error(run("train", "--resume", shapes, "--out", tmp_path / "x", "--steps", "50"))

    missing = _copy(out, tmp_path / "missing")
    (missing / "model.safetensors").unlink()
    assert_one_line_error(run("eval", missing, "--data", text), "not found")
    assert_one_line_error(run("eval", tmp_path / "nowhere", "--data", text), "not found")


def test_train_bad_inputs(tmp_path: Path) -> None:
    assert_one_line_error(run("train", "--data", tmp_path / "none.txt", "--out", tmp_path / "o"), "not found")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00abc" * 100)
    assert_one_line_error(run("train", "--data", tmp_path / "bin.txt", "--out", tmp_path / "o"), "UTF-8")
    assert_one_line_error(run("train", "--out", tmp_path / "o"), "--data")
    (tmp_path / "t.txt").write_text(TEXT, encoding="utf-8")
    assert_one_line_error(run("train", "--data", tmp_path / "t.txt", "--out", tmp_path / "o", "--arch", "rwkv"), "arch")
    assert not (tmp_path / "o").exists()


def test_train_refuses_to_overwrite(trained) -> None:
    text, out = trained
    before = (out / "model.safetensors").read_bytes()
    assert_one_line_error(run("train", "--data", text, "--out", out, *TINY, "--steps", "2"), "--overwrite")
    assert (out / "model.safetensors").read_bytes() == before


def test_eval_export_folder(trained, tmp_path: Path) -> None:
    exporter = pytest.importorskip("rnnedge.exporter")
    pytest.importorskip("rnnedge.runtime.evaluate")
    text, out = trained
    exp = tmp_path / "exp"
    exporter.export_model(out, exp, max_seq_len=1024)
    torch_res = json.loads(run("eval", out, "--data", text, "--json").stdout)
    res = run("eval", exp, "--data", text, "--json")
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout)
    assert d["kind"] == "export" and d["chars"] == torch_res["chars"]
    assert d["loss_nats"] == pytest.approx(torch_res["loss_nats"], abs=1e-3)
