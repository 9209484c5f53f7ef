"""`rnnedge drift` through the CLI: a multi-model report and every bad input -> one line, exit 1, no REPORT."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from rnnedge._cli.drift import register
from tests.test_drift_helpers import TEXT, export_step, quantize_step


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command("noop")
    def _noop() -> None:  # a second command keeps typer from collapsing the app into `drift`
        pass

    return app


APP = _app()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("drift_cli")
    a = export_step(root / "mingru", arch="mingru", d_model=16, n_layers=1, seed=0)
    quantize_step(a)
    b = export_step(root / "minlstm", arch="minlstm", d_model=16, n_layers=2, seed=3)
    quantize_step(b)
    data = root / "data.txt"
    data.write_text(TEXT)
    return {"root": root, "a": a, "b": b, "data": data}


def _run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(APP, ["drift", *args])
    return res.exit_code, res.output


def test_two_models_one_comparison(env: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    code, output = _run(
        str(env["a"]),
        str(env["b"]),
        "--data",
        str(env["data"]),
        "--steps",
        "64",
        "--streams",
        "3",
        "--gen-steps",
        "20",
        "--out",
        str(out),
    )
    assert code == 0, output
    data = json.loads((out / "report.json").read_text())
    assert [m["arch"] for m in data["models"]] == ["mingru", "minlstm"]
    assert "nats/char" in output and (out / "drift.png").is_file()


def _bad(env: dict[str, Path], tmp_path: Path, args: list[str], needle: str) -> None:
    out = tmp_path / "REPORT"
    code, output = _run(*args, "--out", str(out), "--steps", "32", "--streams", "2", "--gen-steps", "5")
    assert code == 1, output
    lines = [ln for ln in output.splitlines() if ln.startswith("rnnedge: error:")]
    assert len(lines) == 1 and needle in lines[0], output
    assert "Traceback" not in output
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".REPORT")]


def test_folder_without_graphs(env: dict[str, Path], tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    _bad(env, tmp_path, [str(empty), "--data", str(env["data"])], "has no step.onnx")


def test_missing_int8_says_quantize_first(env: dict[str, Path], tmp_path: Path) -> None:
    only = tmp_path / "only_fp32"
    only.mkdir()
    shutil.copy(env["a"] / "step.onnx", only / "step.onnx")
    _bad(env, tmp_path, [str(only), "--data", str(env["data"])], "run `rnnedge quantize")


def test_unknown_characters_named_then_skipped(env: dict[str, Path], tmp_path: Path) -> None:
    data = tmp_path / "odd.txt"
    data.write_text(TEXT.replace("question", "quest§on"))
    _bad(env, tmp_path, [str(env["a"]), "--data", str(data)], "'§'")
    code, output = _run(
        str(env["a"]),
        "--data",
        str(data),
        "--on-unknown",
        "skip",
        "--steps",
        "32",
        "--streams",
        "2",
        "--gen-steps",
        "5",
        "--out",
        str(tmp_path / "ok"),
    )
    assert code == 0, output
    assert "skipped 6 character" in output


def test_text_too_short(env: dict[str, Path], tmp_path: Path) -> None:
    data = tmp_path / "short.txt"
    data.write_text("To be")
    _bad(env, tmp_path, [str(env["a"]), "--data", str(data)], "at least")


def test_int8_from_another_model(env: dict[str, Path], tmp_path: Path) -> None:
    _bad(
        env,
        tmp_path,
        [str(env["a"]), "--int8", str(env["b"] / "step.int8.onnx"), "--data", str(env["data"])],
        "different model",
    )
    other = export_step(tmp_path / "other", arch="mingru", d_model=16, n_layers=1, seed=0, text=TEXT + "#")
    _bad(
        env,
        tmp_path,
        [str(env["a"]), "--int8", str(other / "step.onnx"), "--data", str(env["data"])],
        "different model",
    )


def test_corrupt_graph_and_missing_data(env: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "step.onnx").write_bytes(b"not an onnx file")
    (bad / "step.int8.onnx").write_bytes(b"nor this")
    _bad(env, tmp_path, [str(bad), "--data", str(env["data"])], "cannot load")
    _bad(env, tmp_path, [str(env["a"]), "--data", str(tmp_path / "nope.txt")], "data file not found")


def test_out_folder_that_is_not_a_report(env: dict[str, Path], tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("keep me")
    code, output = _run(str(env["a"]), "--data", str(env["data"]), "--out", str(precious))
    assert code == 1 and "not an rnnedge drift report" in output
    assert (precious / "thesis.tex").read_text() == "keep me"
