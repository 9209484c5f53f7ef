"""Issue 20, quantize: relative .ort folders, unmeetable budgets, --keep-float on parameter paths."""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx
import pytest
from typer.testing import CliRunner

from rnnedge.cli import app
from rnnedge.errors import VerificationError
from rnnedge.graphmeta import list_variants, parse_metadata
from rnnedge.quantization import quantize_export
from tests.test_quantize_support import TEXT, make_export


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ux-exports")
    (root / "calib.txt").write_text(TEXT)
    (root / "eval.txt").write_text("\n".join(reversed(TEXT.splitlines()))[:1500])
    return {
        "mingru": make_export(root / "mingru", "mingru", train_steps=4),
        "ort": make_export(root / "ort", "mingru", train_steps=4, ort_format=True),
        "calib": root / "calib.txt",
        "eval": root / "eval.txt",
    }


def fresh(exports: dict[str, Path], key: str, tmp_path: Path) -> Path:
    out = tmp_path / key
    shutil.copytree(exports[key], out)
    return out


def test_ort_folder_given_as_a_relative_path(exports, tmp_path, monkeypatch):
    d = fresh(exports, "ort", tmp_path)
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(app, ["quantize", d.name, "--eval", str(exports["eval"])])
    assert res.exit_code == 0, res.output
    assert (d / "step.int8-dynamic.ort").is_file() and (d / "parallel.int8-dynamic.ort").is_file()
    assert "# - parallel.ort" in (d / "required_operators.config").read_text()


def _lossy_unless_all_float(monkeypatch):
    """Every variant that converts at least one node costs +1 nat/char; keeping all float costs nothing."""
    import rnnedge.quantization.loss as lmod

    real = lmod.held_out_loss

    def lossy(graph, ids):
        value = real(graph, ids)
        if isinstance(graph, bytes):
            meta = {p.key: p.value for p in onnx.load_from_string(graph).metadata_props}
            q = parse_metadata(meta, "variant").quantization
        else:
            q = graph.info.quantization
        return value + 1.0 if q and q.get("converted_nodes", 0) > 0 else value

    monkeypatch.setattr(lmod, "held_out_loss", lossy)


def test_budget_met_only_with_nothing_quantized_is_an_error(exports, tmp_path, monkeypatch):
    _lossy_unless_all_float(monkeypatch)
    d = fresh(exports, "mingru", tmp_path)
    before = sorted(p.name for p in d.iterdir())
    with pytest.raises(VerificationError, match="nothing quantized"):
        quantize_export(d, calib_text=exports["calib"], graphs=("step",), max_loss_delta=0.001)
    assert sorted(p.name for p in d.iterdir()) == before
    res = CliRunner().invoke(
        app, ["quantize", str(d), "--calib", str(exports["calib"]), "--graphs", "step", "--max-loss-delta", "0.001"]
    )
    assert res.exit_code == 1, res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("rnnedge: error:")]
    assert len(errors) == 1 and "--max-loss-delta 0.001" in errors[0] and "Traceback" not in res.output
    assert sorted(p.name for p in d.iterdir()) == before and set(list_variants(d)) == {"fp32"}


def test_node_params_are_the_same_in_both_graphs(exports):
    from rnnedge.quantization.graph_edits import absorbed_params, node_params

    step_graph = onnx.load(str(exports["mingru"] / "step.onnx"))
    step, par = node_params(step_graph), node_params(onnx.load(str(exports["mingru"] / "parallel.onnx")))
    assert "blocks.0.mixer.to_zh" in set(step.values()) & set(par.values())  # in the step: its token table's Gather
    tabled = {p for params in absorbed_params(step_graph).values() for p in params}  # exporter/token_tables.py
    assert set(step.values()) <= set(par.values()) and set(par.values()) - set(step.values()) <= tabled


@pytest.mark.parametrize("pattern", ["blocks.0.mixer.*", "blocks.0.mixer.to_zh", "*.mlp.0"])
def test_keep_float_glob_matches_the_parameter_path(exports, tmp_path, pattern):
    d = fresh(exports, "mingru", tmp_path)
    res = quantize_export(d, eval_text=exports["eval"], keep_float=[pattern])
    import fnmatch

    from rnnedge.quantization.graph_edits import absorbed_params, node_params

    kept, tabled = {}, set()
    for kind, r in res.graphs.items():
        graph = onnx.load(str(d / f"{kind}.onnx"))
        params = node_params(graph)
        tabled |= {p for ps in absorbed_params(graph).values() for p in ps}  # step: float token tables
        kept[kind] = sorted(params[n] for n in r["kept_float"])
        assert all(fnmatch.fnmatchcase(p, pattern) for p in kept[kind]), (kind, kept[kind])
    assert kept["parallel"] and kept["step"] == [p for p in kept["parallel"] if p not in tabled]


def test_report_lines_say_which_characters(exports, tmp_path):
    d = fresh(exports, "mingru", tmp_path)
    res = CliRunner().invoke(
        app, ["quantize", str(d), "--eval", str(exports["eval"]), "--sensitivity", "--graphs", "step"]
    )
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.output.splitlines() if ln.startswith("step.int8-dynamic.onnx: "))
    assert "on 1,500 held-out chars" in line, line
    assert any("on the first 4,000 held-out chars" in ln for ln in res.output.splitlines() if "sensitivity" in ln)
