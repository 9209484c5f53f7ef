"""Issue 20 item 5: long commands show progress: a bar on a terminal, one line per stage otherwise."""

from __future__ import annotations

import io
import json

import pytest
from typer.testing import CliRunner

from rnnedge.cli import app
from rnnedge.progress import Stages, close_all
from tests.test_quantize_support import TEXT, make_export

runner = CliRunner()


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("progress")
    text = root / "t.txt"
    text.write_text(TEXT[:1200])
    return make_export(root / "m", "mingru", train_steps=1), text


def test_lines_off_a_terminal_and_a_bar_on_one():
    out = io.StringIO()
    with Stages("job", total=3, stream=out) as s:
        for name in ("one", "two", "three"):
            s.start(name)
    assert out.getvalue().splitlines() == ["job [1/3] one", "job [2/3] two", "job [3/3] three"]
    term = io.StringIO()
    with Stages("job", total=2, bar=True, stream=term) as s:
        s.start("first stage")
        s.say("a log line")
        s.start("second stage")
        assert s._progress is not None
    drawn = term.getvalue()
    assert "job" in drawn and "a log line" in drawn and "\x1b[" in drawn  # drawn with terminal control codes
    quiet = io.StringIO()
    with Stages("job", stream=quiet, lines=False) as s:
        s.start("x")
    assert quiet.getvalue() == ""


def test_a_bar_is_gone_before_the_error_line():
    term = io.StringIO()
    s = Stages("job", total=2, bar=True, stream=term)
    s.start("first")
    assert s._progress is not None
    close_all()
    assert s._progress is None
    s.start("after close")  # prints nothing more
    assert "after close" not in term.getvalue()


def test_bench_prints_a_line_per_measurement(export):
    d, _ = export
    res = runner.invoke(app, ["bench", str(d), "--steps", "10", "--no-torch", "--threads", "1"])
    assert res.exit_code == 0, res.output
    stages = [ln for ln in res.stdout.splitlines() if ln.startswith("bench [")]
    assert stages[0] == "bench [1/6] opening 1 variant(s)" and stages[-1].startswith("bench [6/6] fp32: parallel")
    assert any("step latency, batch 8" in ln for ln in stages) and res.stderr == ""


def test_eval_prints_its_stages_and_keeps_json_clean(export):
    d, text = export
    res = runner.invoke(app, ["eval", str(d), "--data", str(text)])
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines()[:2] == [f"eval [1/2] reading {text}", "eval [2/2] scoring 1,200 characters"]
    as_json = runner.invoke(app, ["eval", str(d), "--data", str(text), "--json"])
    assert json.loads(as_json.stdout)["chars"] == 1199


def test_scoring_reports_its_progress_to_the_end(export, tmp_path):
    from rnnedge.runtime.evaluate import evaluate_export
    from rnnedge.training.evaluate import evaluate_checkpoint

    d, text = export
    calls: list[tuple[int, int]] = []
    res = evaluate_export(d, text.read_text(), chunk=100, progress=lambda done, total: calls.append((done, total)))
    assert len(calls) == 12 and calls[-1] == (1199, 1199) == (res["chars"], res["chars"])
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)
    calls.clear()
    ckpt = d.parent / f"{d.name}-ckpt"  # make_export's checkpoint
    evaluate_checkpoint(ckpt, text.read_text(), chunk_len=500, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(500, 1199), (1000, 1199), (1199, 1199)]


def test_a_bar_follows_the_fraction_of_a_stage():
    term = io.StringIO()
    with Stages("eval", total=2, bar=True, stream=term) as s:
        s.start("reading")
        s.start("scoring")
        s.fraction(50, 100)
        assert s._progress.tasks[0].completed == 1.5
