"""`rnnedge train --preset`: the sizes hit their targets for minGRU, explicit options win, bad names are one line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rnnedge.cli import app
from rnnedge.errors import ConfigError
from rnnedge.models import MIXER_NAMES
from rnnedge.training.config import TrainConfig
from rnnedge.training.presets import PRESETS, TOLERANCE, param_count, param_counts, size_preset

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.mark.parametrize("name", list(PRESETS))
def test_mingru_count_is_within_ten_percent_of_the_target(name: str) -> None:
    preset = PRESETS[name]
    count = param_count(preset)
    assert abs(count - preset.target_params) <= TOLERANCE * preset.target_params, (name, count)
    TrainConfig().replace(**preset.fields())  # every preset is a valid run config


def test_small_is_the_bundled_models_shape() -> None:
    bundled = json.loads((ROOT / "rnnedge/assets/default_model/config.json").read_text())
    small = size_preset("small")
    assert param_count(small) == bundled["training"]["num_params"]
    assert {k: bundled["model"][k] for k in ("n_layers", "d_model", "expansion", "mlp_ratio")} == {
        k: small.fields()[k] for k in ("n_layers", "d_model", "expansion", "mlp_ratio")
    }


def test_docs_table_holds_the_counts() -> None:
    """docs/training.md's preset table: each mixer row it lists carries the counts computed here."""
    doc = (ROOT / "docs/training.md").read_text().split("### Size presets")[1].split("\n#")[0]
    counts = param_counts()
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `?(\w+)`? \|.*$", doc, re.M) if m.group(1) in MIXER_NAMES}
    assert "mingru" in rows
    for arch, row in rows.items():
        cells = [int(c.replace(",", "")) for c in re.findall(r"\b\d{1,3}(?:,\d{3})+\b", row)]
        assert cells == [counts[p][arch] for p in PRESETS], (arch, row)


def _train(tmp_path: Path, *args: str):
    text = tmp_path / "text.txt"
    text.write_text("the cat sat on the mat. " * 120, encoding="utf-8")
    out = tmp_path / "ckpt"
    res = runner.invoke(app, ["train", "--data", str(text), "--out", str(out), "--threads", "1", "--quiet", *args])
    return res, out


def test_explicit_options_override_the_preset(tmp_path: Path) -> None:
    tiny = ["--layers", "1", "--d-model", "16", "--seq-len", "16", "--batch-size", "4", "--steps", "2"]
    res, out = _train(tmp_path, "--preset", "large", *tiny, "--eval-every", "2")
    assert res.exit_code == 0, res.output
    config = json.loads((out / "config.json").read_text())["training"]["config"]
    large = size_preset("large")
    assert (config["n_layers"], config["d_model"], config["seq_len"], config["batch_size"]) == (1, 16, 16, 4)
    assert (config["lr"], config["warmup"], config["mlp_ratio"]) == (large.lr, large.warmup, large.mlp_ratio)


def test_unknown_preset_is_one_line(tmp_path: Path) -> None:
    res, out = _train(tmp_path, "--preset", "huge")
    assert res.exit_code == 1 and res.stderr.count("\n") == 1, res.output
    assert "unknown --preset 'huge'" in res.stderr and "medium (≈5M)" in res.stderr
    assert not out.exists()
    with pytest.raises(ConfigError, match="small"):
        size_preset("Small")
