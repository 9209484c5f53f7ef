"""Every command against damaged checkpoints, graphs, manifests and texts (tables in breakage.py).

Each run must exit 1 with one line naming the problem and leave every file where it was: the damaged
inputs themselves, the output location (never created), the shared inputs, no temp file anywhere.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import TEXT
from tests.faults.breakage import CKPT_FAULTS, GRAPH_FAULTS, MANIFEST_FAULTS, TEXT_FAULTS
from tests.faults.support import (
    CKPT_COMMANDS,
    COMMANDS,
    Inputs,
    assert_refused,
    cli,
    error_line,
    snapshot,
    temp_leftovers,
)


def refused_untouched(inputs: Inputs, world: dict[str, Path], args: list, *needles: str) -> str:
    """Run the command: one error line naming `needles`, and nothing changed under work/ or the world."""
    work = inputs.ckpt.parent
    before, shared = snapshot(work.parent), snapshot(world["root"])
    line = assert_refused(cli(*args), *needles)
    assert snapshot(work.parent) == before, "files changed under the test's folder"
    assert snapshot(world["root"]) == shared, "the shared inputs changed"
    return line


def test_every_command_works_on_the_undamaged_inputs(inputs: Inputs, world: dict[str, Path]) -> None:
    """The control: every failure below is the damage's doing, not the command line's. Each command
    writes into a folder holding a file of the user's (drift's: an earlier report too) and keeps it."""
    work = inputs.ckpt.parent
    (inputs.export / "notes.txt").write_text("the user's notes")
    sources = snapshot(inputs.ckpt, inputs.text)
    for name, command in COMMANDS.items():
        out = inputs.out.with_name(f"out-{name}")
        if name == "drift":
            shutil.copytree(world["report"], out)
        if name != "compare":  # like drift, compare refuses a folder holding no report of its own
            out.mkdir(exist_ok=True)
            (out / "notes.txt").write_text("the user's notes")
        # a folder rnnedge did not write (no ledger) takes --overwrite (issue 19); drift's holds a report
        extra = ["--overwrite"] if name in ("train", "export", "pipeline") else []
        res = cli(*command(Inputs(inputs.ckpt, inputs.export, inputs.text, out)), *extra)
        if name == "build-engine":  # this machine has no TensorRT: refused after every static check
            assert_refused(res, "tensorrt is not installed")
        else:
            assert res.exit_code == 0, f"{name}: {res.output}"
        assert name == "compare" or (out / "notes.txt").read_text() == "the user's notes", name
    assert (inputs.export / "notes.txt").read_text() == "the user's notes"
    assert snapshot(inputs.ckpt, inputs.text) == sources, "a command changed its checkpoint or text"
    assert temp_leftovers(work.parent) == []


@pytest.mark.parametrize("command", CKPT_COMMANDS)
@pytest.mark.parametrize("case", sorted(CKPT_FAULTS))
def test_damaged_checkpoint(case: str, command: str, inputs: Inputs, world: dict[str, Path]) -> None:
    damage, needle = CKPT_FAULTS[case]
    damage(inputs.ckpt)
    refused_untouched(inputs, world, COMMANDS[command](inputs), needle)


GRAPH_CASES = [
    (case, command) for case, (_, _, commands) in sorted(GRAPH_FAULTS.items()) for command in sorted(commands)
]


@pytest.mark.parametrize(("case", "command"), GRAPH_CASES)
def test_damaged_graph(case: str, command: str, inputs: Inputs, world: dict[str, Path]) -> None:
    damage, needle, _ = GRAPH_FAULTS[case]
    damage(inputs.export)
    refused_untouched(inputs, world, COMMANDS[command](inputs), needle)


@pytest.mark.parametrize("case", sorted(MANIFEST_FAULTS))
def test_damaged_manifest_is_refused_before_quantizing(case: str, inputs: Inputs, world: dict[str, Path]) -> None:
    damage, needle = MANIFEST_FAULTS[case]
    damage(inputs.export)
    refused_untouched(inputs, world, COMMANDS["quantize"](inputs), needle)


# train reads the text to build its vocabulary, so characters outside a vocabulary are not its fault
TEXT_COMMANDS = ("train-new", "eval", "eval-export", "quantize", "drift", "pipeline", "compare")
TEXT_CASES = [
    (case, command)
    for case in sorted(TEXT_FAULTS)
    for command in TEXT_COMMANDS
    if not (case == "text-unknown-characters" and command == "train-new")
]


@pytest.mark.parametrize(("case", "command"), TEXT_CASES)
def test_bad_text(case: str, command: str, inputs: Inputs, world: dict[str, Path]) -> None:
    make, needle = TEXT_FAULTS[case]
    bad = Inputs(inputs.ckpt, inputs.export, make(inputs.ckpt.parent, TEXT), inputs.out)
    if command == "train-new":
        args = ["train", "--data", bad.text, "--out", bad.out, "--layers", 1, "--d-model", 8, "--steps", 1]
    else:
        args = COMMANDS[command](bad)
    refused_untouched(bad, world, args, needle)


@pytest.mark.parametrize(
    ("prompt", "needle"), [("", "prompt is empty"), ("€uro", "'€'"), ("😀", "outside the vocabulary")]
)
def test_bad_prompt(prompt: str, needle: str, inputs: Inputs, world: dict[str, Path]) -> None:
    refused_untouched(inputs, world, ["generate", inputs.export, "--prompt", prompt, "--tokens", 3], needle)


def test_interrupt_line_is_one_line_too(inputs: Inputs, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C inside a command (here: while the step graph loads) is one line and exit 130."""
    import rnnedge.runtime

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(rnnedge.runtime, "StepSession", interrupted)
    line = error_line(cli(*COMMANDS["generate"](inputs)), code=130)
    assert line == "rnnedge: interrupted; no partial file was written"
