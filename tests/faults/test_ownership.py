"""Ownership the ledger proves (rnnedge/ownership.py): a re-run never writes or deletes through a
symlink, never trusts a report's or manifest's own file list for deletion, refuses a folder that is not
rnnedge's in one line naming --overwrite, and leaves no temp file of an earlier killed run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rnnedge.ownership import LEDGER
from tests.faults.support import COMMANDS, Inputs, assert_refused, cli, edit_json, snapshot, temp_leftovers


def _report(world: dict[str, Path], inputs: Inputs) -> Path:
    return Path(shutil.copytree(world["report"], inputs.out))


def _user_folder(root: Path) -> Path:
    photos = root / "photos"
    photos.mkdir()
    (photos / "logits.png").write_bytes(b"holiday photo")
    (photos / "holiday.png").write_bytes(b"another photo")
    return photos


def test_drift_never_writes_or_deletes_through_a_symlinked_subfolder(inputs: Inputs, world: dict[str, Path]) -> None:
    rep = _report(world, inputs)
    photos = _user_folder(inputs.ckpt.parent)
    shutil.rmtree(rep / "plots")
    (rep / "plots").symlink_to(photos)
    edit_json(rep / "report.json", lambda r: r["files"].append("plots/holiday.png"))
    before = snapshot(photos)
    for extra in ([], ["--overwrite"]):
        assert_refused(cli(*COMMANDS["drift"](inputs), *extra), "symlink")
        assert snapshot(photos) == before


def test_a_report_file_list_is_never_trusted_for_deletion(inputs: Inputs, world: dict[str, Path]) -> None:
    rep = _report(world, inputs)
    (rep / "thesis.docx").write_bytes(b"the user's thesis")
    edit_json(rep / "report.json", lambda r: r["files"].append("thesis.docx"))
    assert_refused(cli(*COMMANDS["drift"](inputs)), "report.json", "--overwrite")  # edited: no longer ours
    result = cli(*COMMANDS["drift"](inputs), "--overwrite")
    assert result.exit_code == 0, result.stderr
    assert (rep / "thesis.docx").read_bytes() == b"the user's thesis"
    assert "thesis.docx" not in json.loads((rep / LEDGER).read_text())["files"]


def test_compare_file_list_is_never_trusted_for_deletion(inputs: Inputs) -> None:
    out = inputs.out
    assert cli(*COMMANDS["compare"](inputs)).exit_code == 0
    (out / "thesis.docx").write_bytes(b"the user's thesis")
    data = json.loads((out / "compare.json").read_text())
    data["files"] = [*data.get("files", []), "thesis.docx"]
    ledger = json.loads((out / LEDGER).read_text())
    ledger["files"]["thesis.docx"] = [{"size": 1, "sha256": "0" * 64}]  # a tampered ledger proves nothing
    (out / LEDGER).write_text(json.dumps(ledger))
    result = cli(*COMMANDS["compare"](inputs))
    assert result.exit_code == 0, result.stderr
    assert (out / "thesis.docx").read_bytes() == b"the user's thesis"


def test_export_into_a_users_folder_is_refused(inputs: Inputs) -> None:
    mine = inputs.out
    mine.mkdir()
    (mine / "step.v2.onnx").write_bytes(b"hand-made")
    (mine / "manifest.json").write_text("{}")
    before = snapshot(mine)
    assert_refused(cli(*COMMANDS["export"](inputs)), "--overwrite")
    assert snapshot(mine) == before
    result = cli(*COMMANDS["export"](inputs), "--overwrite")
    assert result.exit_code == 0, result.stderr
    assert (mine / "step.v2.onnx").read_bytes() == b"hand-made"  # not ours: kept, even with --overwrite


def test_a_re_export_removes_only_variants_the_ledger_proves(inputs: Inputs) -> None:
    export = inputs.export
    variant = export / "step.int8-dynamic.onnx"
    assert variant.is_file()
    variant.write_bytes(variant.read_bytes() + b"\0")  # changed since rnnedge wrote it: the user's now
    args = ["export", inputs.ckpt, "--out", export, "--max-seq-len", "64", "--no-simplify"]
    before = snapshot(export)
    assert_refused(cli(*args), "step.int8-dynamic.onnx")
    assert snapshot(export) == before


@pytest.mark.parametrize("name", ["sample.txt", "summary.json", "data/heldout.txt"])
def test_pipeline_refuses_a_users_sample(inputs: Inputs, name: str) -> None:
    mine = inputs.out / name  # the names a pipeline writes, put there by the user (issue 19's three)
    mine.parent.mkdir(parents=True)
    mine.write_text("my own words")
    before = snapshot(inputs.out)
    assert_refused(cli(*COMMANDS["pipeline"](inputs)), "--overwrite")
    assert snapshot(inputs.out) == before


def test_stale_temp_files_of_a_killed_run_are_removed(inputs: Inputs, world: dict[str, Path]) -> None:
    rep = _report(world, inputs)
    stale = [
        inputs.ckpt / ".model.safetensors.abcd1234.tmp",
        inputs.ckpt / ".rnnedge-staging-abcd1234",
        rep.parent / f".{rep.name}.tmp-abcd1234",
    ]
    stale[0].write_bytes(b"half a checkpoint")
    for folder in stale[1:]:
        folder.mkdir()
        (folder / "x").write_bytes(b"half")
    train = ["train", "--resume", inputs.ckpt, "--out", inputs.ckpt, "--data", inputs.text, "--steps", "3", "--quiet"]
    assert cli(*train).exit_code == 0
    assert cli(*COMMANDS["drift"](inputs)).exit_code == 0
    assert temp_leftovers(inputs.ckpt.parent) == []


def test_a_pipeline_re_run_never_silently_removes_variants_made_with_quantize(inputs: Inputs) -> None:
    assert cli(*COMMANDS["pipeline"](inputs)).exit_code == 0
    made = cli(
        "quantize", inputs.out / "export", "--method", "fp16", "--eval", inputs.text
    )  # the user's own variant, minutes of work
    assert made.exit_code == 0, made.stderr
    variant = inputs.out / "export" / "step.fp16.onnx"
    assert variant.is_file()
    before = snapshot(inputs.out)
    assert_refused(cli(*COMMANDS["pipeline"](inputs)), "fp16", "--overwrite")
    assert snapshot(inputs.out) == before
    result = cli(*COMMANDS["pipeline"](inputs), "--overwrite")
    assert result.exit_code == 0, result.stderr
    assert "fp16" in result.stdout and not variant.exists()  # removed only when asked, and said so
