"""`rnnedge compare`, the cost counts behind it, `rnnedge train --heads/--window`, and their bad inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from rnnedge.cli import app
from rnnedge.compare.memory import state_memory
from rnnedge.compare.settings import CompareSettings
from rnnedge.errors import ConfigError, InputError
from rnnedge.exporter import export_model
from rnnedge.models import MIXER_NAMES, ModelConfig, build_model, mixer_spec
from rnnedge.models.costs import config_costs, count_costs
from rnnedge.ownership import LEDGER
from rnnedge.quantization import quantize_export
from rnnedge.runtime import StepSession
from rnnedge.training.checkpoint import save_checkpoint
from rnnedge.vocab import CharVocab
from tests.conftest import TEXT

runner = CliRunner()
WINDOW = 8
VOCAB = CharVocab("".join(sorted(set(TEXT))))


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnedge: error: "), result.stderr
    for n in needles:
        assert n in lines[0], lines[0]


# --- costs against the classic formulas ------------------------------------------------------------
# Per mixer, with n = d_hidden, m = d_model = d, H heads of F dims, W = window:
# (mixer parameters, MACs of the mixer's matrix products, other weight MACs, KV-cache MACs) per layer.
# The RNN cells are counted as torch builds them: nn.LSTM/GRU/RNN hold two biases (b_ih and b_hh), so
# an LSTM layer is 4(nm + n² + 2n), not the textbook 4(nm + n² + n); every RNN mixer adds its output
# projection n -> m (nm + m). minGRU's and minLSTM's gates read only x: 2nm + 2n and 3nm + 3n.
def classic(arch: str, c: ModelConfig) -> tuple[int, int, int, int]:
    n, m, d = c.d_hidden, c.d_model, c.d_model
    out = n * m + m
    return {
        "mingru": (2 * n * m + 2 * n + out, 3 * n * m, 0, 0),
        "minlstm": (3 * n * m + 3 * n + out, 4 * n * m, 0, 0),
        "gru": (3 * (n * m + n * n + 2 * n) + out, 3 * (n * m + n * n) + n * m, 0, 0),
        "lstm": (4 * (n * m + n * n + 2 * n) + out, 4 * (n * m + n * n) + n * m, 0, 0),
        "elman": (n * m + n * n + 2 * n + out, n * m + n * n + n * m, 0, 0),
        # q, k, v and output projections 4d² (+ 4d biases); the cache: q·k and weights·v over W slots
        "transformer": (4 * d * d + 4 * d, 4 * d * d, 0, 2 * c.n_heads * c.window * c.head_dim),
        # k, v and output projections 3d² (+ 3d biases), the learned query H·F = d, dotted with each key
        "aaren": (3 * d * d + 3 * d + d, 3 * d * d, d, 0),
    }[arch]


def test_every_registered_mixer_has_a_classic_formula() -> None:
    config = ModelConfig(vocab_size=5, d_model=8)
    for arch in MIXER_NAMES:
        classic(arch, ModelConfig(**{**config.to_dict(), "arch": arch}))  # KeyError: a mixer without a formula


SHAPES = [
    dict(vocab_size=20, n_layers=2, d_model=16, expansion=2.0, mlp_ratio=4.0, n_heads=4, window=8),
    dict(vocab_size=33, n_layers=3, d_model=24, expansion=1.5, mlp_ratio=2.0, n_heads=3, window=5),
]


@pytest.mark.parametrize("shape", range(len(SHAPES)))
@pytest.mark.parametrize("arch", MIXER_NAMES)
def test_costs_match_the_classic_formulas(arch: str, shape: int) -> None:
    config = ModelConfig(arch=arch, **SHAPES[shape])
    torch.manual_seed(0)
    model = build_model(config)
    costs = count_costs(model)
    params, matmuls, other, cache = classic(arch, config)
    d, mlp, v, layers = config.d_model, config.d_mlp, config.vocab_size, config.n_layers
    assert costs.mixer_params_per_layer == params
    block = params + 2 * 2 * d + (d * mlp + mlp) + (mlp * d + d)  # mixer, two LayerNorms, MLP
    assert costs.params == v * d + layers * block + 2 * d + (d * v + v) == model.num_params()
    assert costs.params_by_part["mixers"] == layers * params
    assert costs.macs_weights == layers * (matmuls + other + 2 * d * mlp) + d * v
    assert costs.macs_cache == layers * cache
    assert costs.macs_per_token == costs.macs_weights + costs.macs_cache
    # the mixer's own weight products (the runtime floor) are its matrix products
    assert sum(k * n for _, k, n in mixer_spec(arch).weight_products(config)) == matmuls
    assert config_costs(config) == costs  # the meta-device count (nothing allocated) agrees


def test_state_memory_is_constant_and_says_what_a_growing_cache_would_cost() -> None:
    ts = (1, 1024, 65536)
    config = ModelConfig(vocab_size=20, arch="transformer", n_layers=2, d_model=16, n_heads=4, window=WINDOW)
    mem = state_memory(config.state_infos(), ts)
    kv = 2 * 2 * 4 * WINDOW * 4 * 4  # k and v, 2 layers, (heads, window, head_dim) float32
    assert mem["bytes_per_stream"] == kv + 2 * 8 and mem["bytes_vs_t"] == [kv + 16] * 3
    assert mem["by_kind"] == {"kv": kv, "position": 16}
    per_token = 2 * 2 * 16 * 4  # k and v of every layer: d_model floats each
    assert mem["cache"]["capacity_tokens"] == WINDOW and mem["cache"]["bytes_per_token"] == per_token
    assert mem["cache"]["growing_bytes_vs_t"] == [16 + per_token * t for t in ts]
    rnn = state_memory(ModelConfig(vocab_size=20, arch="lstm", n_layers=2, d_model=16).state_infos(), ts)
    assert rnn["cache"] is None and rnn["bytes_vs_t"] == [2 * 2 * 32 * 4] * 3


def test_settings_refuse_bad_values() -> None:
    for bad in (
        dict(variant="fp32"),
        dict(positions=()),
        dict(positions=(0, 4)),
        dict(drift_steps=3),
        dict(eval_chars=1),
        dict(on_unknown="drop"),
    ):
        with pytest.raises(ConfigError):
            CompareSettings(**bad)
    assert CompareSettings(positions=(64, 1, 64)).positions == (1, 64)


# --- rnnedge compare end to end -------------------------------------------------------------------
FAST = ["--positions", "1,16", "--lengths", "32", "--latency-samples", "5", "--drift-steps", "32"]
FAST += ["--drift-streams", "2", "--stream-tokens", "64", "--max-seq-len", "64", "--eval-chars", "300"]


def checkpoint(root: Path, arch: str, vocab: CharVocab = VOCAB) -> Path:
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=len(vocab), arch=arch, n_layers=1, d_model=16, window=WINDOW)
    return save_checkpoint(root / arch, build_model(config), vocab, training={"steps_done": 0, "train_time_s": 0.0})


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A text, a minGRU checkpoint, and transformer and Aaren exports with an int8-dynamic variant."""
    root = tmp_path_factory.mktemp("compare")
    text = root / "text.txt"
    text.write_text(TEXT * 3, encoding="utf-8")
    out = {"text": text, "mingru": checkpoint(root / "ckpt", "mingru")}
    for arch in ("transformer", "aaren"):
        folder = root / f"{arch}-export"
        export_model(checkpoint(root / "ckpt", arch), folder, max_seq_len=64, simplify=False, verify=False)
        quantize_export(folder, "int8-dynamic", eval_text=text)
        out[arch] = folder
    return out


@pytest.fixture(scope="module")
def report(models, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "cmp"
    res = run(
        "compare",
        models["mingru"],
        models["transformer"],
        models["aaren"],
        "--data",
        models["text"],
        "--out",
        out,
        *FAST,
    )
    assert res.exit_code == 0, res.output
    return out


def test_compare_writes_json_markdown_html_and_plots(report: Path, models) -> None:
    data = json.loads((report / "compare.json").read_text())
    on_disk = {p.relative_to(report).as_posix() for p in report.rglob("*") if p.is_file()}
    assert data["schema"] == "rnnedge-compare-report/1" and set(data["files"]) == on_disk - {LEDGER}
    assert {"compare.md", "compare.html", "compare.png", "plots/drift.png"} <= set(data["files"])
    assert "exports/mingru/step.int8-dynamic.onnx" in data["files"]  # the checkpoint, exported and quantized here
    assert data["paper"]["nats_per_char"] == {"mingru": 1.548, "minlstm": 1.555, "transformer": 1.547}
    assert data["state_t"][0] == 1 and data["state_t"][-1] == 65536
    assert [m["arch"] for m in data["models"]] == ["mingru", "transformer", "aaren"]
    keys = {"name", "arch", "source", "config", "training", "costs", "loss", "paper_nats_per_char", "state"}
    keys |= {"resident", "step_latency_us", "parallel_throughput", "drift", "notes"}
    for m in data["models"]:
        assert set(m) == keys
        assert m["costs"] == config_costs(ModelConfig.from_dict(m["config"])).to_dict()
        for precision in ("fp32", "int8-dynamic"):
            assert 0 < m["loss"][precision]["nats_per_char"] < 10 and m["loss"][precision]["chars"] == 299
            assert set(m["step_latency_us"][precision]) == {"1", "16"}
            assert m["step_latency_us"][precision]["16"]["p99"] >= m["step_latency_us"][precision]["16"]["p50"] > 0
            assert set(m["parallel_throughput"][precision]) == {"32"}
            resident = m["resident"][precision]
            assert "skipped" in resident or resident["peak_bytes"] >= resident["after_import_bytes"] > 0
        assert len(set(m["state"]["bytes_vs_t"])) == 1 and len(m["state"]["bytes_vs_t"]) == 17
        assert m["drift"]["steps"] == 32 and m["drift"]["verdict"]
    mingru, transformer, aaren = data["models"]
    assert mingru["source"] == {"path": str(models["mingru"]), "kind": "checkpoint", "export": "exports/mingru"}
    assert transformer["source"]["kind"] == "export" and transformer["costs"]["macs_cache"] == 2 * WINDOW * 16
    assert transformer["state"]["cache"]["capacity_tokens"] == WINDOW
    assert transformer["drift"]["exact_states"] == ["0.pos"]
    assert mingru["state"]["cache"] is None and mingru["training"]["steps_done"] == 0
    assert aaren["state"]["bytes_per_stream"] == (4 + 4 * 4) * 4 and aaren["costs"]["macs_cache"] == 0  # lse + o
    md, page = (report / "compare.md").read_text(), (report / "compare.html").read_text()
    for name in ("mingru", "transformer", "aaren"):
        assert name in md and name in page
    assert "data:image/png;base64," in page and "<table>" in page and "| model |" in md


def test_rerun_replaces_only_its_own_files(report: Path, models) -> None:
    (report / "mine.txt").write_text("keep me", encoding="utf-8")
    res = run("compare", models["transformer"], "--data", models["text"], "--out", report, *FAST)
    assert res.exit_code == 0, res.output
    data = json.loads((report / "compare.json").read_text())
    assert [m["name"] for m in data["models"]] == ["transformer-export"]
    assert (report / "mine.txt").read_text() == "keep me"
    assert not (report / "exports").exists()  # the earlier report's exports went with it


def test_bad_inputs_are_one_line_and_write_nothing(models, tmp_path: Path) -> None:
    out = tmp_path / "r"
    other = checkpoint(tmp_path / "other", "lstm", CharVocab("abcdefghij \n"))
    res = run("compare", models["mingru"], other, "--data", models["text"], "--out", out)
    assert_one_line_error(res, "vocabularies differ")
    res = run("compare", models["transformer"], "--data", tmp_path / "none.txt", "--out", out, *FAST)
    assert_one_line_error(res, "not found")
    res = run("compare", models["transformer"], "--data", models["text"], "--out", out, "--variant", "int8-qdq")
    assert_one_line_error(res, "step.int8-qdq.onnx", "int8-dynamic")
    res = run("compare", tmp_path / "nothing", "--data", models["text"], "--out", out)
    assert_one_line_error(res, "not a folder")
    res = run("compare", models["transformer"], "--data", models["text"], "--out", out, "--positions", "1,x")
    assert_one_line_error(res, "--positions")
    unknown = tmp_path / "unknown.txt"
    unknown.write_text(TEXT * 3 + "~ held out", encoding="utf-8")
    res = run("compare", models["transformer"], "--data", unknown, "--out", out)
    assert_one_line_error(res, "held-out text", "'~'")
    assert not out.exists()
    inside = out / "transformer"
    shutil.copytree(models["transformer"], inside)
    assert_one_line_error(run("compare", inside, "--data", models["text"], "--out", out), "inside --out")
    assert [p.name for p in out.iterdir()] == ["transformer"]
    full = tmp_path / "full"
    (full / "notes.txt").parent.mkdir()
    (full / "notes.txt").write_text("mine", encoding="utf-8")
    res = run("compare", models["transformer"], "--data", models["text"], "--out", full, *FAST)
    assert_one_line_error(res, "was not written by rnnedge; pass --overwrite")
    assert [p.name for p in full.iterdir()] == ["notes.txt"]
    assert not [p for p in tmp_path.iterdir() if ".work-" in p.name or ".tmp-" in p.name]


# --- training flags and states from another architecture -------------------------------------------
def test_train_heads_and_window(models, tmp_path: Path) -> None:
    text = models["text"]
    tiny = ["--layers", "1", "--d-model", "16", "--seq-len", "16", "--batch-size", "2", "--steps", "2", "-q"]
    res = run(
        "train",
        "--arch",
        "transformer",
        "--heads",
        "2",
        "--window",
        "8",
        "--data",
        text,
        "--out",
        tmp_path / "t",
        *tiny,
    )
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "t" / "config.json").read_text())
    assert (meta["model"]["n_heads"], meta["model"]["window"]) == (2, 8)
    res = run("train", "--arch", "transformer", "--data", text, "--out", tmp_path / "d", *tiny)
    assert res.exit_code == 0 and json.loads((tmp_path / "d" / "config.json").read_text())["model"]["window"] == 16
    for args, needle in (
        (["--arch", "lstm", "--heads", "2"], "--heads does not apply to lstm"),
        (["--arch", "aaren", "--window", "8"], "--window does not apply to aaren"),
        (["--arch", "transformer", "--window", "32"], "--window 32 exceeds --seq-len 16"),
        (["--arch", "transformer", "--heads", "3"], "not divisible by --heads 3"),
        (["--arch", "aaren", "--heads", "0"], "--heads must be a positive integer"),
    ):
        res = run("train", *args, "--data", text, "--out", tmp_path / "x", *tiny)
        assert_one_line_error(res, needle)
    assert not (tmp_path / "x").exists()
    resume = ["--resume", tmp_path / "t", "--out", tmp_path / "t", "--data", text, "--steps", "3", "-q"]
    res = run("train", *resume, "--window", "4")
    assert_one_line_error(res, "cannot resume", "window")


def test_state_from_another_architecture_or_window_is_refused(models, tmp_path: Path) -> None:
    transformer = StepSession(models["transformer"])
    transformer.feed_text("First Citizen")
    before = transformer.state
    with pytest.raises(InputError, match="state must have exactly"):
        transformer.state = StepSession(models["aaren"]).state
    wide = tmp_path / "wide"
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=len(VOCAB), arch="transformer", n_layers=1, d_model=16, window=2 * WINDOW)
    ckpt = save_checkpoint(tmp_path / "ckpt", build_model(config), VOCAB)
    export_model(ckpt, wide, max_seq_len=64, simplify=False, verify=False)
    with pytest.raises(InputError, match="must have shape"):
        transformer.state = StepSession(wide).state
    after = transformer.state  # a refused state leaves the session's own untouched
    assert all(np.array_equal(before[k], after[k]) for k in before) and int(after["0.pos"][0]) == 13
