"""Issue 19, bounded and typed reads, one line for everything: hostile sizes in a checkpoint's config,
hostile resume fields, odd encodings (a vocabulary, graph metadata, file names, the terminal), huge
options, and the paths that must not end in a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.support import (
    COMMANDS,
    ROOT,
    Inputs,
    assert_refused,
    assert_refused_subprocess,
    cli,
    rnnedge_subprocess,
    snapshot,
)


def _model(change):  # type: ignore[no-untyped-def]
    return lambda m: m["model"].update(change)


HUGE_CONFIGS = {
    "d_model-2**70": ({"d_model": 2**70}, "d_model"),
    "d_model-float": ({"d_model": 1e400}, "d_model"),
    "expansion-huge": ({"expansion": 1e30}, "expansion"),
    "vocab_size-2**40": ({"vocab_size": 2**40}, "vocab"),
}


@pytest.mark.parametrize("case", sorted(HUGE_CONFIGS))
def test_a_config_with_absurd_sizes_is_one_line_before_allocation(case: str, inputs: Inputs) -> None:
    change, needle = HUGE_CONFIGS[case]
    (inputs.ckpt / "config.json").write_text(
        json.dumps(
            {
                **json.loads((inputs.ckpt / "config.json").read_text()),
                "model": {**json.loads((inputs.ckpt / "config.json").read_text())["model"], **change},
            }
        ),
        encoding="utf-8",
    )
    for name in ("eval", "export"):
        assert_refused(cli(*COMMANDS[name](inputs)), needle)


def test_a_lone_surrogate_in_the_vocabulary_is_refused(inputs: Inputs) -> None:
    raw = (inputs.ckpt / "config.json").read_text(encoding="utf-8")
    meta = json.loads(raw)
    vocab = meta["vocab"]
    meta["vocab"] = vocab[:-1] + "\ud800"
    (inputs.ckpt / "config.json").write_text(json.dumps(meta, ensure_ascii=True), encoding="utf-8")
    for name in ("export", "eval"):
        assert_refused(cli(*COMMANDS[name](inputs)), "vocab")


RESUME_FIELDS = {
    "steps_done-abc": {"steps_done": "abc"},
    "steps_done-negative": {"steps_done": -5},
    "steps_done-1e400": {"steps_done": 1e400},
    "steps_done-float": {"steps_done": 2.5},
    "tokens_seen-text": {"tokens_seen": "many"},
    "train_time_s-nan": {"train_time_s": "nan"},
    "history-5": {"history": 5},
    "history-of-strings": {"history": ["x"]},
}


@pytest.mark.parametrize("case", sorted(RESUME_FIELDS))
def test_hostile_resume_fields_are_one_line(case: str, inputs: Inputs) -> None:
    fields = RESUME_FIELDS[case]
    raw = (inputs.ckpt / "config.json").read_text(encoding="utf-8")
    meta = json.loads(raw)
    meta["training"].update(fields)
    # json.dumps writes 1e400 as Infinity, which Python's json reads back as inf (as a hand edit would)
    (inputs.ckpt / "config.json").write_text(json.dumps(meta), encoding="utf-8")
    line = assert_refused(cli(*COMMANDS["train"](inputs)), next(iter(fields)))
    assert "resume" in line.lower() or "checkpoint" in line.lower()
    assert not inputs.out.exists()


def _corrupt_metadata_utf8(graph: Path) -> None:
    """The vocabulary's first two bytes become invalid UTF-8, same length (the protobuf stays well-formed)."""
    import onnx

    vocab = next(p.value for p in onnx.load(str(graph)).metadata_props if p.key == "rnnedge.vocab").encode()
    data = graph.read_bytes()
    at = data.find(vocab)
    assert at >= 0 and vocab[:2].isascii()
    graph.write_bytes(data[:at] + b"\xff\xfe" + vocab[2:] + data[at + len(vocab) :])


def test_graph_metadata_that_is_not_utf8_is_one_line(inputs: Inputs) -> None:
    for kind in ("step", "parallel"):
        _corrupt_metadata_utf8(inputs.export / f"{kind}.onnx")
    for name in ("generate", "eval-export", "inspect"):
        result = cli(*COMMANDS[name](inputs))
        assert_refused(result, "metadata")


@pytest.mark.parametrize(
    ("option", "value"), [("--d-model", "100000"), ("--batch-size", "1000000000"), ("--seq-len", "100000000")]
)
def test_a_training_run_too_big_for_memory_is_refused_before_allocating(
    option: str, value: str, inputs: Inputs
) -> None:
    args = ["train", "--out", inputs.out, "--data", inputs.text, "--steps", "2", "--quiet", option, value]
    result = rnnedge_subprocess(*args, timeout=120)
    assert_refused_subprocess(result, option)
    assert not inputs.out.exists()


def test_a_4800_character_out_path_is_one_line(inputs: Inputs) -> None:
    long_out = inputs.out
    for i in range(20):
        long_out = long_out / (f"{i:02d}" + "d" * 238)
    assert len(str(long_out)) > 4800
    for name in ("train", "export", "drift"):
        result = cli(*COMMANDS[name](Inputs(inputs.ckpt, inputs.export, inputs.text, long_out)))
        assert_refused(result, "too long")


LATIN1 = os.fsdecode("caf\xe9.txt".encode("latin-1"))  # b"caf\xe9.txt": not UTF-8, a surrogate escape in Python


def test_a_latin1_file_name_is_shown_safely_in_the_report(inputs: Inputs) -> None:
    text = inputs.text.parent / LATIN1
    os.rename(inputs.text, text)
    result = cli(*COMMANDS["drift"](Inputs(inputs.ckpt, inputs.export, text, inputs.out)))
    assert result.exit_code == 0, result.output
    md = (inputs.out / "report.md").read_text(encoding="utf-8")
    assert "caf" in md
    json.loads((inputs.out / "report.json").read_text(encoding="utf-8"))


def test_a_latin1_export_path_is_not_blamed_on_the_graph(inputs: Inputs) -> None:
    export = inputs.export.parent / os.fsdecode(b"exp\xe9")
    os.rename(inputs.export, export)
    result = cli(*COMMANDS["generate"](Inputs(inputs.ckpt, export, inputs.text, inputs.out)))
    assert result.exit_code == 0, result.output


def test_generate_to_an_ascii_terminal_replaces_what_it_cannot_show(inputs: Inputs, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONIOENCODING": "ascii", "OMP_NUM_THREADS": "1"}
    prompt = "caf\u00e9 \u2014 "
    cmd = [sys.executable, "-m", "rnnedge.cli", *map(str, COMMANDS["generate"](inputs)), "--prompt", prompt]
    cmd += ["--on-unknown", "skip"]  # the tiny model reads none of these; the prompt is still echoed
    result = subprocess.run(cmd, capture_output=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert b"Traceback" not in result.stderr
    assert result.stdout.startswith(b"caf\\xe9 \\u2014 "), result.stdout


def test_a_session_run_error_is_one_line(inputs: Inputs, monkeypatch: pytest.MonkeyPatch) -> None:
    """ONNX Runtime's own exception type, raised where the step loop runs the graph."""
    import onnxruntime as ort
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail

    def fail(*args: object, **kwargs: object) -> None:
        raise Fail("[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running Gather node.\nmore")

    monkeypatch.setattr(ort.InferenceSession, "run_with_iobinding", fail)
    monkeypatch.setattr(ort.InferenceSession, "run", fail)
    assert_refused(cli(*COMMANDS["generate"](inputs)), "ONNX Runtime", "Gather node")


def test_bench_checks_its_output_path_before_measuring(inputs: Inputs) -> None:
    inputs.out.mkdir()
    (inputs.out / "b.json").mkdir()
    before = snapshot(inputs.out)
    assert_refused(cli(*COMMANDS["bench"](inputs)), "b.json")
    assert snapshot(inputs.out) == before


def test_drift_and_train_on_a_fifo_and_dev_zero_are_refused(inputs: Inputs) -> None:
    fifo = inputs.text.parent / "fifo.txt"
    os.mkfifo(fifo)
    for text in (fifo, Path("/dev/zero")):
        for args in (
            ["quantize", inputs.export, "--eval"],
            ["pipeline", inputs.ckpt, "--out", inputs.out, "--data"],
            ["compare", inputs.export, "--out", inputs.out, "--data"],
        ):
            result = rnnedge_subprocess(*args, text, timeout=60)
            assert_refused_subprocess(result, "not a regular file")


def test_generate_threads_are_capped(inputs: Inputs) -> None:
    assert_refused(cli(*COMMANDS["generate"](inputs), "--threads", "10000"), "--threads")


def test_hand_edited_json_reads_are_bounded(inputs: Inputs) -> None:
    (inputs.export / "manifest.json").unlink()
    (inputs.export / "manifest.json").symlink_to("/dev/zero")
    for name in ("inspect", "quantize", "eval-export"):
        result = rnnedge_subprocess(*COMMANDS[name](inputs), timeout=60)
        assert result.returncode in (0, 1), result.stderr
        if result.returncode == 1:
            assert_refused_subprocess(result)


ENDINGS = {
    "cr-only": lambda t: t.replace("\n", "\r"),
    "crlf": lambda t: t.replace("\n", "\r\n"),
    "mixed": lambda t: "".join(ch.replace("\n", ("\r\n", "\r", "\n")[i % 3]) for i, ch in enumerate(t)),
}


@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_one_line_ending_rule_everywhere(ending: str, inputs: Inputs, world: dict[str, Path]) -> None:
    """The model trained on the LF text reads its CR / CRLF / mixed copy as the same text in every
    command (CR and CRLF are LF on read), and a model trained on such a copy has no CR in its vocabulary."""
    lf = world["text"].read_text(encoding="utf-8")
    odd = inputs.text.parent / f"{ending}.txt"
    odd.write_bytes(ENDINGS[ending](lf).encode("utf-8"))
    odd_inputs = Inputs(inputs.ckpt, inputs.export, odd, inputs.out)
    for name in ("eval", "eval-export"):
        same = cli(*COMMANDS[name](inputs), "--json")
        other = cli(*COMMANDS[name](odd_inputs), "--json")
        assert other.exit_code == 0, other.output
        assert json.loads(other.stdout)["loss_nats"] == pytest.approx(json.loads(same.stdout)["loss_nats"], rel=1e-6)
    assert cli(*COMMANDS["quantize"](odd_inputs)).exit_code == 0
    assert cli(*COMMANDS["drift"](odd_inputs)).exit_code == 0
    trained = inputs.out.parent / "trained"
    result = cli(
        "train", "--out", trained, "--data", odd, "--steps", "2", "--quiet", "--layers", "1", "--d-model", "16"
    )
    assert result.exit_code == 0, result.output
    vocab = json.loads((trained / "config.json").read_text(encoding="utf-8"))["vocab"]
    assert "\r" not in vocab and "\n" in vocab
    assert cli("eval", trained, "--data", world["text"]).exit_code == 0  # and reads the LF text as its own
