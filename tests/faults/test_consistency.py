"""One-unit results without strace: drift refuses two models' graphs, `export --from` honours
--overwrite, a tampered ledger decides nothing, leftovers of killed runs are removed, and readers see a
commit a killed writer left as its new version."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import save_file

from rnnedge import commit
from rnnedge.commit import COMMIT
from rnnedge.graphmeta import MANIFEST
from rnnedge.ownership import LEDGER, read_ledger
from tests.faults.support import EXPORT, Inputs, assert_refused, cli, snapshot
from tests.test_byom import _word_lm


def _export_of_other_weights(inputs: Inputs, root: Path) -> Path:
    """The same model shape trained from another seed, exported (its step.onnx has other weights)."""
    other = root / "other-ckpt"
    shape = ["--arch", "mingru", "--layers", "1", "--d-model", "16", "--seq-len", "16", "--batch-size", "4"]
    done = cli("train", *shape, "--steps", "2", "--seed", "7", "--threads", "1", "--quiet", "--data", inputs.text,
               "--out", other)  # fmt: skip
    assert done.exit_code == 0, done.output
    assert cli("export", other, "--out", root / "other", *EXPORT).exit_code == 0
    return root / "other"


def test_drift_refuses_a_variant_made_from_other_weights(inputs: Inputs, tmp_path: Path) -> None:
    other = _export_of_other_weights(inputs, tmp_path)
    shutil.copy(other / "step.onnx", inputs.export / "step.onnx")  # same shapes, another model's weights
    result = cli("drift", inputs.export, "--data", inputs.text, "--out", inputs.out, "--steps", "16", "--streams", "1")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    last = result.stderr.strip().splitlines()[-1]  # (a warning that step.onnx changed may come first)
    assert last.startswith("rnnedge: error: ") and "made from other weights" in last, result.stderr
    assert "step.int8-dynamic.onnx" in last and "two different models" in last
    assert not inputs.out.exists()


def test_the_weights_hash_is_recorded_and_old_exports_keep_working(inputs: Inputs) -> None:
    manifest = json.loads((inputs.export / MANIFEST).read_text())
    digest = manifest["weights_sha256"]
    assert manifest["variants"]["int8-dynamic"]["weights_sha256"] == digest
    del manifest["weights_sha256"], manifest["variants"]["int8-dynamic"]["weights_sha256"]  # an older export
    (inputs.export / MANIFEST).write_text(json.dumps(manifest))
    result = cli("drift", inputs.export, "--data", inputs.text, "--out", inputs.out, "--steps", "16", "--streams", "1")
    assert result.exit_code == 0, result.output


def test_export_from_honours_overwrite(tmp_path: Path) -> None:
    save_file(dict(_word_lm(256, tie=False).state_dict()), str(tmp_path / "w.safetensors"))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's")
    args = [
        "export",
        "--from",
        "word-lm",
        "--weights",
        tmp_path / "w.safetensors",
        "--max-seq-len",
        "64",
        "--out",
        mine,
    ]
    assert_refused(cli(*args), "--overwrite")
    done = cli(*args, "--overwrite")
    assert done.exit_code == 0, done.output
    assert (mine / "step.onnx").is_file() and (mine / "notes.txt").read_text() == "the user's"


def test_a_tampered_ledger_deletes_nothing_it_cannot_prove(inputs: Inputs, world: dict[str, Path]) -> None:
    (inputs.export / "thesis.docx").write_bytes(b"a user's thesis")
    ledger = json.loads((inputs.export / LEDGER).read_text())
    ledger["files"]["thesis.docx"] = [{"size": 15, "sha256": "0" * 64}]  # listed, but not these bytes
    ledger["files"]["step.int8-dynamic.onnx"] = [{"size": 1, "sha256": "0" * 64}]  # its bytes changed since
    (inputs.export / LEDGER).write_text(json.dumps(ledger))
    result = cli("export", inputs.ckpt, "--out", inputs.export, *EXPORT)
    assert_refused(result, "step.int8-dynamic.onnx", "cannot prove")  # would be stale, not provably ours
    done = cli("export", inputs.ckpt, "--out", inputs.export, *EXPORT, "--overwrite")
    assert done.exit_code == 0, done.output
    assert (inputs.export / "thesis.docx").read_bytes() == b"a user's thesis"
    assert (inputs.export / "step.int8-dynamic.onnx").is_file()  # kept: nothing proves it rnnedge's


def test_a_damaged_ledger_is_one_line_and_changes_nothing(inputs: Inputs) -> None:
    (inputs.export / LEDGER).write_text('{"format": "rnnedge-ledger", "files": ')
    before = snapshot(inputs.export)
    assert_refused(cli("export", inputs.ckpt, "--out", inputs.export, *EXPORT), "damaged")
    assert snapshot(inputs.export) == before


def test_a_probe_file_and_staging_folder_of_a_killed_run_are_removed(inputs: Inputs) -> None:
    (inputs.export / ".rnnedge-probe.abcd1234").write_bytes(b"")
    (inputs.export / ".rnnedge-staging-abcd1234").mkdir()
    (inputs.export / ".rnnedge-staging-abcd1234" / "step.onnx").write_bytes(b"half")
    done = cli("export", inputs.ckpt, "--out", inputs.export, *EXPORT)
    assert done.exit_code == 0, done.output
    assert sorted(p.name for p in inputs.export.iterdir() if p.name.startswith(".")) == [LEDGER]


def test_readers_see_the_new_version_of_an_unfinished_commit(
    inputs: Inputs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit killed after its commit point (the record renamed in, nothing moved yet): inspect/eval
    roll it forward before reading (commit.settle), so they see the new manifest, not the old one."""
    manifest = json.loads((inputs.export / MANIFEST).read_text())
    manifest["created_utc"] = "new"
    stopped = tmp_path / "stopped"

    def stop_before_roll_forward(folder: object) -> None:
        if stopped.exists():
            raise SystemExit("killed")
        stopped.touch()

    with monkeypatch.context() as patched:
        patched.setattr(commit, "roll_forward", stop_before_roll_forward)
        with pytest.raises(SystemExit):
            commit.commit_tree(inputs.export, {MANIFEST: json.dumps(manifest).encode()})
    assert (inputs.export / COMMIT).is_dir()
    assert cli("eval", inputs.export, "--data", inputs.text).exit_code == 0
    assert not (inputs.export / COMMIT).exists()
    assert json.loads((inputs.export / MANIFEST).read_text())["created_utc"] == "new"
    assert read_ledger(inputs.export) is not None
