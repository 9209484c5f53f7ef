"""`rnnedge drift` through the CLI: a multi-model report, --variant/--baseline, and every bad input ->
one line, exit 1, no REPORT."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from rnnedge._cli.drift import register
from tests.test_drift_helpers import TEXT, VOCAB, copy_variant, dynamic_int8, label_variant, step_graph


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command("noop")
    def _noop() -> None:  # a second command keeps typer from collapsing the app into `drift`
        pass

    return app


APP = _app()
QUICK = ("--steps", "32", "--streams", "2", "--gen-steps", "5")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("drift_cli")
    a = step_graph(root / "a", layers=1, seed=0)
    dynamic_int8(a)
    b = step_graph(root / "b", dims=(2, 4), layers=2, position=True, seed=3)
    dynamic_int8(b)
    data = root / "data.txt"
    data.write_text(TEXT)
    return {"root": root, "a": a, "b": b, "data": data}


def _run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(APP, ["drift", *args])
    return res.exit_code, res.output


def test_two_models_one_comparison(env: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "cmp"
    code, output = _run(str(env["a"]), str(env["b"]), "--data", str(env["data"]), *QUICK, "--out", str(out))
    assert code == 0, output
    data = json.loads((out / "report.json").read_text())
    assert [m["name"] for m in data["models"]] == ["a", "b"]
    assert data["settings"]["variant"] is None and data["settings"]["baseline"] == "fp32"
    assert "int8-dynamic vs fp32: 32 steps" in output and "nats/char" in output and (out / "drift.png").is_file()


def text_file(folder: Path) -> Path:
    path = folder / "text.txt"
    path.write_text(TEXT)
    return path


def test_variant_and_baseline_options(env: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "m"
    shutil.copytree(env["a"], folder)
    copy_variant(folder, "int8-dynamic", "int8-copy")
    _bad(tmp_path, [str(folder), "--data", str(text_file(tmp_path))], "several step variants (int8-copy, int8-dynamic)")
    out = tmp_path / "R"
    code, output = _run(
        str(folder), "--data", str(text_file(tmp_path)), "--variant", "int8-copy", "--baseline", "int8-dynamic",
        *QUICK, "--out", str(out),
    )  # fmt: skip
    assert code == 0, output
    m = json.loads((out / "report.json").read_text())["models"][0]
    assert (m["baseline"]["variant"], m["variant"]["variant"]) == ("int8-dynamic", "int8-copy")
    assert "reproduces the int8-dynamic states exactly" in m["verdict"]


def test_rerun_into_the_same_folder_keeps_user_files(env: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "R"
    args = (str(env["a"]), "--data", str(env["data"]), *QUICK, "--out", str(out))
    assert _run(*args)[0] == 0
    (out / "notes.txt").write_text("mine")
    (out / "sub").mkdir()
    (out / "sub" / "x.txt").write_text("mine too")
    code, output = _run(*args)
    assert code == 0, output
    assert (out / "notes.txt").read_text() == "mine" and (out / "sub" / "x.txt").read_text() == "mine too"


def _bad(tmp_path: Path, args: list[str], needle: str) -> None:
    out = tmp_path / "REPORT"
    code, output = _run(*args, "--out", str(out), *QUICK)
    assert code == 1, output
    lines = [ln for ln in output.splitlines() if ln.startswith("rnnedge: error:")]
    assert len(lines) == 1 and needle in lines[0], output
    assert "Traceback" not in output
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".REPORT")]


def test_folder_without_graphs(env: dict[str, Path], tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    _bad(tmp_path, [str(empty), "--data", str(env["data"])], "has no step.onnx")


def test_missing_variant_says_quantize_first(env: dict[str, Path], tmp_path: Path) -> None:
    only = tmp_path / "only_fp32"
    only.mkdir()
    shutil.copy(env["a"] / "step.onnx", only / "step.onnx")
    _bad(tmp_path, [str(only), "--data", str(env["data"])], "run `rnnedge quantize")
    _bad(tmp_path, [str(env["a"]), "--data", str(env["data"]), "--variant", "fp16"], "no step.fp16.onnx")
    _bad(tmp_path, [str(env["a"]), "--data", str(env["data"]), "--variant", "Bad_Name"], "variant name 'Bad_Name'")


def test_unknown_characters_named_then_skipped(env: dict[str, Path], tmp_path: Path) -> None:
    data = tmp_path / "odd.txt"
    data.write_text(TEXT.replace("question", "quest§on"))
    _bad(tmp_path, [str(env["a"]), "--data", str(data)], "'§'")
    code, output = _run(
        str(env["a"]), "--data", str(data), "--on-unknown", "skip", *QUICK, "--out", str(tmp_path / "ok")
    )
    assert code == 0, output
    assert "skipped 6 character" in output


def test_text_too_short(env: dict[str, Path], tmp_path: Path) -> None:
    data = tmp_path / "short.txt"
    data.write_text("To be")
    _bad(tmp_path, [str(env["a"]), "--data", str(data)], "at least")


def test_variant_from_another_model(env: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    shutil.copytree(env["a"], folder)
    shutil.copy(env["b"] / "step.int8-dynamic.onnx", folder / "step.int8-dynamic.onnx")
    _bad(tmp_path, [str(folder), "--data", str(env["data"])], "different model")
    other = step_graph(tmp_path / "other", layers=1, seed=0, vocab=type(VOCAB)(VOCAB.chars[:-1] + "#"))
    shutil.copy(other / "step.onnx", folder / "step.int8-dynamic.onnx")
    label_variant(folder / "step.int8-dynamic.onnx", "int8-dynamic")
    _bad(tmp_path, [str(folder), "--data", str(env["data"])], "vocabularies differ")


def test_corrupt_graph_and_missing_data(env: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "step.onnx").write_bytes(b"not an onnx file")
    (bad / "step.int8.onnx").write_bytes(b"nor this")
    _bad(tmp_path, [str(bad), "--data", str(env["data"])], "cannot load")
    _bad(tmp_path, [str(env["a"]), "--data", str(tmp_path / "nope.txt")], "data file not found")


def test_out_folder_that_is_not_a_report(env: dict[str, Path], tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("keep me")
    code, output = _run(str(env["a"]), "--data", str(env["data"]), "--out", str(precious), *QUICK)
    assert code == 1 and "was not written by rnnedge; pass --overwrite" in output
    assert [p.name for p in precious.iterdir()] == ["thesis.tex"]


def test_unwritable_out_fails_before_the_run(env: dict[str, Path]) -> None:
    code, output = _run(str(env["a"]), "--data", str(env["data"]), "--out", "/proc/x", *QUICK)
    assert code == 1 and output.strip().splitlines() == [output.strip().splitlines()[-1]]
    assert output.startswith("rnnedge: error: cannot write the report to /proc/x:") and "drift a:" not in output
