"""Drift reports: files and schema, what the pages say, and a report folder that only loses rnnedge's own files."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from rnnedge.drift import SCHEMA, DriftResult, run_drift, summarize, verdict, write_report
from rnnedge.drift.folder import schema1_files
from rnnedge.drift.report import report_files
from rnnedge.errors import RnnedgeError
from rnnedge.ownership import LEDGER
from tests.test_drift_helpers import TEXT, copy_variant, dynamic_int8, step_graph

SETTINGS = {"data": "inline", "steps": 120, "streams": 4}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> list[DriftResult]:
    root = tmp_path_factory.mktemp("drift_report")
    a = step_graph(root / "a", layers=2, seed=1)
    dynamic_int8(a)
    b = step_graph(root / "b", dims=(2, 3), layers=1, position=True, seed=2)
    dynamic_int8(b, variant="int8-qdq")
    c = step_graph(root / "c", layers=1, seed=3)
    copy_variant(c, "fp32", "same")
    return [
        run_drift(a, TEXT, steps=120, streams=4, gen_steps=40),
        run_drift(b, TEXT, steps=120, streams=4, gen_steps=40),
        run_drift(c, TEXT, steps=120, streams=4, gen_steps=40),
    ]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_report_files_schema_and_self_contained_html(results: list[DriftResult], tmp_path: Path) -> None:
    out = tmp_path / "REPORT"
    report = write_report(results, out, SETTINGS)
    assert sorted(set(_snapshot(out)) - {LEDGER}) == sorted(report_files(3)) == sorted(report["files"])
    assert (out / "drift.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((out / "report.json").read_text())
    assert data == json.loads(json.dumps(report)) and data["schema"] == SCHEMA == "rnnedge-drift-report/2"
    assert {"schema", "rnnedge_version", "created_utc", "settings", "steps_run", "files", "models"} <= set(data)
    m = data["models"][1]
    assert {"name", "arch", "baseline", "variant", "loss", "state_error", "states", "exact_states"} <= set(m)
    assert m["baseline"]["variant"] == "fp32" and m["variant"]["variant"] == "int8-qdq"
    assert m["variant"]["graph"].endswith("step.int8-qdq.onnx")
    assert [(s["name"], s["shape"]) for s in m["states"]] == [("0.h", ["batch", 2, 3])]
    assert m["exact_states"] == [{"name": "0.pos", "shape": ["batch"], "dtype": "int64", "kind": "position"}]
    assert set(m["state_error"]["at"]) == {"10", "100", "last"}
    assert len(m["curves"]["t"]) == len(m["curves"]["kl"]["mean"])
    assert "fp32" in m["verdict"] and "int8-qdq" in m["verdict"] and "0.pos" in m["verdict"]
    assert "exactly" in data["models"][2]["verdict"]
    html = (out / "report.html").read_text()
    assert "http://" not in html and "https://" not in html and "<link" not in html
    assert html.count("src='data:image/png;base64,") == 6
    md = (out / "report.md").read_text()
    assert "| int8-dynamic | fp32 |" in md and "| int8-qdq | fp32 |" in md
    assert "int8-dynamic:" in md and "fp32:" in md  # greedy texts labelled by variant, not 'int8'


def test_html_explains_columns_and_numbers_do_not_wrap(results: list[DriftResult], tmp_path: Path) -> None:
    write_report(results[:1], tmp_path / "R", SETTINGS)
    html = (tmp_path / "R" / "report.html").read_text()
    assert "white-space:nowrap" in html
    assert "<dt>α</dt><dd>power-law exponent" in html and "<dt>saturation</dt><dd>the level" in html
    assert "<th title='power-law exponent" in html


def _with_loss(m: dict, delta: float, stderr: float) -> dict:
    return {**m, "loss": {**m["loss"], "delta_nats_per_char": delta, "delta_stderr_nats_per_char": stderr}}


def test_negative_loss_delta_reads_as_improvement(results: list[DriftResult]) -> None:
    m = summarize(results[0])
    within = verdict(_with_loss(m, -0.0009, 0.001))
    assert "0.0009 nats/char better than fp32: an improvement within noise" in within and "costs" not in within
    assert "an improvement beyond the noise" in verdict(_with_loss(m, -0.02, 0.001))
    assert "costs 0.0050 nats/char more than fp32 (" in verdict(_with_loss(m, 0.005, 0.001))
    assert "costs 0.0005 nats/char more than fp32, within noise" in verdict(_with_loss(m, 0.0005, 0.001))


def test_header_records_steps_actually_run(tmp_path: Path) -> None:
    folder = step_graph(tmp_path / "m", layers=1)
    dynamic_int8(folder)
    short = TEXT[:60]
    r = run_drift(folder, short, steps=100, streams=2, gen_steps=5)
    assert (r.steps, r.steps_requested) == (59, 100)
    report = write_report([r], tmp_path / "R", {"data": "short", "steps": 100, "streams": 2})
    assert report["steps_run"] == 59 and report["settings"]["steps"] == 100
    assert report["models"][0]["steps_requested"] == 100
    for page in ("report.md", "report.html"):
        assert "59 steps (100 requested; the text is shorter) × 2 streams" in (tmp_path / "R" / page).read_text()


# --- the report folder: nothing lost, nothing half-written ---------------------------------------


@pytest.fixture
def quick_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    """The folder tests are about files, not figures: every plot is one fixed small PNG."""
    from rnnedge.drift import plots

    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 64
    for name in ("headline", "state_layers", "logits", "accumulation"):
        monkeypatch.setattr(plots, name, lambda *_: png)


def test_rerun_keeps_what_the_user_added(results: list[DriftResult], quick_plots: None, tmp_path: Path) -> None:
    out = tmp_path / "REPORT"
    write_report(results, out, SETTINGS)
    (out / "notes.txt").write_text("my notes")
    (out / "mine").mkdir()
    (out / "mine" / "data.csv").write_text("1,2")
    (out / "plots" / "extra.png").write_bytes(b"mine")
    write_report(results[:1], out, SETTINGS)  # one model now: layers_1/2.png are stale rnnedge files
    assert (out / "notes.txt").read_text() == "my notes" and (out / "mine" / "data.csv").read_text() == "1,2"
    assert (out / "plots" / "extra.png").read_bytes() == b"mine"
    assert sorted(_snapshot(out)) == sorted([*report_files(1), "notes.txt", "mine/data.csv", "plots/extra.png", LEDGER])
    assert len(json.loads((out / "report.json").read_text())["models"]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["REPORT"]  # no temp folder left beside it


def test_folder_without_a_report_is_refused(results: list[DriftResult], quick_plots: None, tmp_path: Path) -> None:
    out = tmp_path / "precious"
    out.mkdir()
    (out / "thesis.tex").write_text("keep me")
    with pytest.raises(RnnedgeError, match="is not empty and was not written by rnnedge; pass --overwrite"):
        write_report(results[:1], out, SETTINGS)
    assert _snapshot(out) == {"thesis.tex": b"keep me"}
    empty = tmp_path / "empty"
    empty.mkdir()
    write_report(results[:1], empty, SETTINGS)  # an empty folder is fine
    assert sorted(_snapshot(empty)) == sorted([*report_files(1), LEDGER])


def test_new_file_name_taken_by_a_user_file_is_refused(
    results: list[DriftResult], quick_plots: None, tmp_path: Path
) -> None:
    out = tmp_path / "R"
    write_report(results[:1], out, SETTINGS)
    (out / "plots" / "layers_1.png").write_bytes(b"the user's own plot")
    before = _snapshot(out)
    with pytest.raises(RnnedgeError, match=r"layers_1.png exists and was not written by rnnedge"):
        write_report(results[:2], out, SETTINGS)
    assert _snapshot(out) == before


def test_schema1_report_is_replaced_keeping_user_files(
    results: list[DriftResult], quick_plots: None, tmp_path: Path
) -> None:
    out = tmp_path / "old"
    for name in schema1_files(2):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(b"v1")
    (out / "report.json").write_text(json.dumps({"schema": "rnnedge-drift-report/1", "models": [{}, {}]}))
    (out / "notes.txt").write_text("keep")
    before = _snapshot(out)
    with pytest.raises(RnnedgeError, match=r"older rnnedge .*--overwrite"):  # legacy: nothing provably ours
        write_report(results[:1], out, SETTINGS)
    assert _snapshot(out) == before
    write_report(results[:1], out, SETTINGS, overwrite=True)  # same names replaced, nothing deleted
    assert sorted(_snapshot(out)) == sorted({*report_files(1), *schema1_files(2), "notes.txt", LEDGER})
    assert json.loads((out / "report.json").read_text())["schema"] == SCHEMA


def test_manifest_pointing_outside_the_folder_is_refused(
    results: list[DriftResult], quick_plots: None, tmp_path: Path
) -> None:
    out = tmp_path / "R"
    write_report(results[:1], out, SETTINGS)
    data = json.loads((out / "report.json").read_text())
    (tmp_path / "victim.txt").write_text("outside")
    data["files"].append("../victim.txt")
    (out / "report.json").write_text(json.dumps(data))
    with pytest.raises(RnnedgeError, match=r"report\.json exists and was not written by rnnedge"):  # edited
        write_report(results[:1], out, SETTINGS)
    write_report(results[:2], out, SETTINGS, overwrite=True)  # the file list is never trusted for deletion
    assert (tmp_path / "victim.txt").read_text() == "outside"


def test_unwritable_out_is_one_line(results: list[DriftResult], quick_plots: None) -> None:
    with pytest.raises(RnnedgeError, match=r"^cannot write the report to /proc/x: ") as info:
        write_report(results[:1], "/proc/x", SETTINGS)
    assert "\n" not in str(info.value)


def _disk_full_after(monkeypatch: pytest.MonkeyPatch, n_files: int) -> None:
    """Path.write_bytes writes half of the n-th file, then fails as a full disk does."""
    real = Path.write_bytes
    count = {"n": 0}

    def write_bytes(self: Path, data: bytes) -> int:  # type: ignore[override]
        count["n"] += 1
        if count["n"] >= n_files:
            real(self, bytes(data)[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)


def test_full_disk_leaves_the_earlier_report_as_it_was(
    results: list[DriftResult], quick_plots: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "R"
    write_report(results[:2], out, SETTINGS)
    (out / "notes.txt").write_text("mine")
    before = _snapshot(out)
    _disk_full_after(monkeypatch, 3)
    with pytest.raises(RnnedgeError, match=r"cannot write the report to .*No space left on device"):
        write_report(results[:1], out, SETTINGS)
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["R"]


def test_full_disk_on_a_new_folder_leaves_nothing(
    results: list[DriftResult], quick_plots: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _disk_full_after(monkeypatch, 2)
    with pytest.raises(RnnedgeError, match="No space left on device"):
        write_report(results[:1], tmp_path / "new" / "deeper" / "R", SETTINGS)
    assert list(tmp_path.iterdir()) == []  # the parents it created are gone too


def test_interrupt_while_plotting_leaves_nothing(
    results: list[DriftResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rnnedge.drift import report as rep

    def boom(*_: object) -> bytes:
        raise KeyboardInterrupt

    monkeypatch.setattr(rep.plots, "accumulation", boom)
    with pytest.raises(KeyboardInterrupt):
        write_report(results[:1], tmp_path / "R", SETTINGS)
    assert list(tmp_path.iterdir()) == []
