"""Files rnnedge reads but did not necessarily write: refused before anything they name is loaded.

The graph metadata cases run through every command in test_corrupt_inputs.py; here: the order
(refusal before loading), the drift report folder's own manifest, and the checkpoint an export's
manifest names for `bench`'s PyTorch baseline.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import rnnedge.quantization.quantize as quantize_mod
import rnnedge.training.checkpoint as checkpoint_mod
from rnnedge.errors import RnnedgeError
from rnnedge.exporter.eager_baseline import make_eager_baseline
from rnnedge.quantization import quantize_export
from tests.faults.breakage import MANIFEST_FAULTS, NESTED
from tests.faults.support import Inputs, assert_refused, cli, edit_json, snapshot


@pytest.mark.parametrize(
    "case",
    ["manifest-names-parent-file", "manifest-names-absolute-file", "manifest-nested-json", "manifest-absurd-size"],
)
def test_manifest_is_refused_before_any_graph_is_loaded(case: str, inputs: Inputs, monkeypatch) -> None:
    damage, needle = MANIFEST_FAULTS[case]
    damage(inputs.export)

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("a graph was loaded before the manifest was checked")

    monkeypatch.setattr(quantize_mod, "load_fp32_graphs", never)
    with pytest.raises(RnnedgeError, match=needle):
        quantize_export(inputs.export, "int8-dynamic", eval_text=inputs.text)


@pytest.mark.parametrize(
    "content",
    [NESTED, '{"schema": "rnnedge-drift-report/2", "files": ["../text.txt"]}'],
    ids=["nested-json", "names-a-file-outside"],
)
def test_drift_report_folder_with_a_hostile_report_json(content: str, inputs: Inputs, world: dict[str, Path]) -> None:
    """A report.json nested too deeply, or listing a file outside its folder: refused, nothing touched."""
    shutil.copytree(world["report"], inputs.out)
    (inputs.out / "report.json").write_text(content, encoding="utf-8")
    before = snapshot(inputs.ckpt.parent)
    args = ["drift", inputs.export, "--data", inputs.text, "--out", inputs.out, "--steps", 16, "--streams", 1]
    assert_refused(cli(*args), str(inputs.out))
    assert snapshot(inputs.ckpt.parent) == before


def _point_at(export: Path, checkpoint: object) -> None:
    edit_json(export / "manifest.json", lambda m: m["source"].update(checkpoint=checkpoint))


BASELINE_CASES = {
    "absurd-config": (
        lambda p: edit_json(p.ckpt / "config.json", lambda m: m["model"].update(n_layers=10**9)),
        "n_layers",
    ),
    "nested-config": (lambda p: (p.ckpt / "config.json").write_text(NESTED), "nested too deeply"),
    "nested-manifest": (lambda p: (p.export / "manifest.json").write_text(NESTED), "nested too deeply"),
    "not-a-path": (lambda p: _point_at(p.export, ["x"]), "names no source checkpoint"),
    "no-such-folder": (lambda p: _point_at(p.export, "../../no-such-folder"), "was not found"),
}


@pytest.mark.parametrize("case", sorted(BASELINE_CASES))
def test_bench_baseline_from_a_hostile_manifest_says_why_and_builds_nothing(
    case: str, inputs: Inputs, monkeypatch
) -> None:
    """`bench` measures whatever checkpoint the manifest names; a damaged one is a reason, not a model."""
    _point_at(inputs.export, str(inputs.ckpt))
    damage, needle = BASELINE_CASES[case]
    damage(inputs)

    def never(config: object) -> None:
        raise AssertionError(f"a model was built for {config}")

    monkeypatch.setattr(checkpoint_mod, "build_model", never)
    reason = make_eager_baseline(inputs.export, steps=10)
    assert isinstance(reason, str) and needle in reason, reason


def test_bench_baseline_refuses_a_checkpoint_of_another_model(inputs: Inputs) -> None:
    """Same weights, another config (n_heads, which a minGRU ignores): not the model that was exported."""
    _point_at(inputs.export, str(inputs.ckpt))
    edit_json(inputs.ckpt / "config.json", lambda m: m["model"].update(n_heads=2))
    reason = make_eager_baseline(inputs.export, steps=10)
    assert isinstance(reason, str) and "no longer has the exported model's config" in reason, reason


def test_manifest_with_plain_names_still_quantizes(inputs: Inputs) -> None:
    """The refusal is about where a name points, not about names: a manifest naming its own files is fine."""
    manifest = json.loads((inputs.export / "manifest.json").read_text())
    assert manifest["variants"]["int8-dynamic"]["graphs"]["step"]["file"] == "step.int8-dynamic.onnx"
    res = cli("quantize", inputs.export, "--eval", inputs.text)
    assert res.exit_code == 0, res.output
