"""Output locations that cannot be written, and a disk that fills up half-way through a file.

Unwritable: as root chmod stops nothing, so the locations are under /proc (no files can be made
there) and under an existing regular file. Full disk: Path.write_bytes / Path.write_text, through
which every rnnedge write goes (rnnedge.io, the checkpoint, the drift report), write half their data
and fail with ENOSPC for every file under the test's folder, from the first write on or from the
first write of one named file on (the last file a command writes: its manifest or config).
Either way: exit 1, one line naming the problem, and every file where it was (new, or earlier output).
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.faults.support import BENCH, COMMANDS, Inputs, assert_refused, cli, snapshot

WRITERS = ("train", "export", "drift", "pipeline", "bench", "compare")  # commands that take an output location


def _proc(root: Path) -> Path:
    return Path("/proc/rnnedge-faults/out")


def _under_a_file(root: Path) -> Path:
    (root / "a-file").write_text("not a folder")
    return root / "a-file" / "out"


UNWRITABLE: dict[str, tuple[Callable[[Path], Path], str]] = {
    "under-proc": (_proc, "/proc/rnnedge-faults"),
    "under-a-regular-file": (_under_a_file, "a-file"),
}


@pytest.mark.parametrize("command", WRITERS)
@pytest.mark.parametrize("where", sorted(UNWRITABLE))
def test_unwritable_output(where: str, command: str, inputs: Inputs, world: dict[str, Path]) -> None:
    place, needle = UNWRITABLE[where]
    bad = Inputs(inputs.ckpt, inputs.export, inputs.text, place(inputs.ckpt.parent))
    before, shared = snapshot(inputs.ckpt.parent), snapshot(world["root"])
    assert_refused(cli(*COMMANDS[command](bad)), needle)
    assert snapshot(inputs.ckpt.parent) == before and snapshot(world["root"]) == shared


def test_unwritable_bench_json_is_refused_before_measuring(inputs: Inputs, monkeypatch: pytest.MonkeyPatch) -> None:
    import rnnedge.runtime.bench

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("measured before checking where the JSON goes")

    monkeypatch.setattr(rnnedge.runtime.bench, "run_bench", never)
    for target in (_proc(inputs.ckpt.parent), _under_a_file(inputs.ckpt.parent), inputs.export):  # a folder last
        assert_refused(cli("bench", inputs.export, *BENCH, "--json", target), f"cannot write --json {target}")


def full_disk(monkeypatch: pytest.MonkeyPatch, root: Path, first: str | None) -> list[Path]:
    """From the first write under `root` (or the first to a file whose name holds `first`) on, every
    write under `root` writes half its bytes and fails with ENOSPC. Returns the paths it failed."""
    real_bytes, real_text = Path.write_bytes, Path.write_text
    failed: list[Path] = []

    def full(path: Path) -> bool:
        under = root in path.absolute().parents
        return under and (bool(failed) or first is None or first in path.name)

    def fail(path: Path, data: bytes) -> int:
        failed.append(path)
        real_bytes(path, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    def write_bytes(self: Path, data: Any) -> int:
        return fail(self, bytes(data)) if full(self) else real_bytes(self, data)

    def write_text(self: Path, data: str, encoding: str | None = None, errors: str | None = None, newline=None) -> int:
        if full(self):
            return fail(self, data.encode(encoding or "utf-8"))
        return real_text(self, data, encoding, errors, newline)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    monkeypatch.setattr(Path, "write_text", write_text)
    return failed


def _into(folder: str, command: str) -> Callable[[Inputs], list[Any]]:
    """`command` writing into an existing input folder ("ckpt": train resumed in place, "export": a re-export)."""
    return lambda p: COMMANDS[command](replace(p, out=getattr(p, folder)))


def _quantize_new(p: Inputs) -> list[Any]:
    return [*COMMANDS["quantize"](p), "--method", "int8-weight"]  # a variant the folder does not have yet


# {case: (args, the name of the file that fills the disk (None: the first write), the output's earlier state)}
DISK_CASES: dict[str, tuple[Callable[[Inputs], list[Any]], str | None, str | None]] = {
    "train-new": (COMMANDS["train"], None, None),
    "train-new@config": (COMMANDS["train"], "config.json", None),
    "train-in-place": (_into("ckpt", "train"), None, None),
    "train-in-place@config": (_into("ckpt", "train"), "config.json", None),
    "export-new": (COMMANDS["export"], None, None),
    "export-new@manifest": (COMMANDS["export"], "manifest.json", None),
    "export-again": (_into("export", "export"), None, None),
    "export-again@manifest": (_into("export", "export"), "manifest.json", None),
    "quantize-again": (COMMANDS["quantize"], None, None),
    "quantize-again@manifest": (COMMANDS["quantize"], "manifest.json", None),
    "quantize-new": (_quantize_new, None, None),
    "quantize-new@second-graph": (_quantize_new, "step.", None),
    "quantize-new@manifest": (_quantize_new, "manifest.json", None),
    "drift-new": (COMMANDS["drift"], None, None),
    "drift-again": (COMMANDS["drift"], None, "earlier-report"),
    "drift-again@report": (COMMANDS["drift"], "report.json", "earlier-report"),
    "pipeline-new": (COMMANDS["pipeline"], None, None),
    "pipeline-new@summary": (COMMANDS["pipeline"], "summary.json", None),
    "bench-json": (COMMANDS["bench"], None, "folder"),
    "compare-new": (COMMANDS["compare"], None, None),
}


@pytest.mark.parametrize("case", sorted(DISK_CASES))
def test_full_disk(case: str, inputs: Inputs, world: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    args, first, earlier = DISK_CASES[case]
    if earlier == "earlier-report":
        shutil.copytree(world["report"], inputs.out)
        (inputs.out / "notes.txt").write_text("the user's own notes")
    elif earlier == "folder":
        inputs.out.mkdir()
    work = inputs.ckpt.parent
    before, shared = snapshot(work), snapshot(world["root"])
    failed = full_disk(monkeypatch, work, first)
    result = cli(*args(inputs))
    assert failed, "the full disk was never reached"
    assert_refused(result, "No space left on device")
    monkeypatch.undo()
    assert snapshot(work) == before, "the folders changed"
    assert snapshot(world["root"]) == shared
