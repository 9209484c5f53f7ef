"""SIGKILL at every rename and every unlink (strace's fault injection, deterministic) of export, quantize,
drift, compare and pipeline re-runs with another model; at every unlinkat where a command removes
folders (drift, compare), and at every write of export, quantize and drift. After each kill the output
folder is the whole old result or the whole new one by name + size + sha256 (as it is, and as a reader
sees it after rolling an unfinished commit forward), and a re-run completes and leaves no temp file, in
the folder or in the temp dir (rnnedge/commit.py, rnnedge/scratch.py).

The commands run in children forked from one server that imported torch/onnx/onnxruntime once
(forkrun.py), so each kill point costs the command's own work, not Python's start-up."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rnnedge.compare.report import REPORT_FILES
from rnnedge.exporter import export_model
from rnnedge.quantization import quantize_export
from rnnedge.training.train import train
from tests.faults.conftest import TINY
from tests.faults.killpoints import Expected, ForkServer, expected, kill_everywhere
from tests.faults.support import COMPARE, DRIFT, EXPORT, PIPELINE

pytestmark = pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
# (command, syscall): each command's rename and unlink calls; unlinkat where it removes folders (rmtree).
POINTS = [(c, s) for c in ("export", "quantize", "drift", "compare", "pipeline") for s in ("rename", "unlink")]
POINTS += [("drift", "unlinkat"), ("compare", "unlinkat")]
# write: every one of export's, quantize's and drift's (15-19 each: the staged files, the ledger, the
# commit record, the lines printed after the commit).
POINTS += [(c, "write") for c in ("export", "quantize", "drift")]


@pytest.fixture(scope="module")
def model_b(world: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Another model of the same shape (another seed): the new result's source."""
    root = tmp_path_factory.mktemp("model-b")
    ckpt = train(dataclasses.replace(TINY, seed=7), world["text"], root / "ckpt", quiet=True).out_dir
    export = export_model(ckpt, root / "export", max_seq_len=64, simplify=False).out_dir
    quantize_export(export, "int8-dynamic", eval_text=world["text"])
    return {"ckpt": ckpt, "export": export}


def _case(name: str, world: dict[str, Path], b: dict[str, Path], work: Path) -> tuple[Path | None, list[Any]]:
    """(the old `out` to copy, the new run's args) of each command."""
    out, text = work / "out", world["text"]
    if name == "export":
        return world["export"], ["export", b["ckpt"], "--out", out, *EXPORT]
    if name == "quantize":
        return world["export"], ["quantize", out, "--method", "fp16", "--eval", text, "--threads", "1"]
    if name == "drift":
        return world["report"], ["drift", b["export"], "--data", text, "--out", out, *DRIFT, "--threads", "1"]
    return None, _made_here(name, b, text, out)


def _made_here(name: str, model: dict[str, Path], text: Path, out: Path) -> list[Any]:
    """compare's or the pipeline's args with `model` (its old result is a run with the first model, made
    at the same path)."""
    if name == "compare":
        return ["compare", model["export"], "--data", text, "--out", out, *COMPARE_ARGS]
    return ["pipeline", model["ckpt"], "--out", out, "--data", text, *PIPELINE]


COMPARE_ARGS = [*COMPARE, "--stream-tokens", "64", "--threads", "1"]
# compare's report files carry measurements (latency, throughput, peak memory: its pages, its plots),
# which two reference runs may happen to round alike although a third does not; the ledger of the
# commit must still vouch for each of them by size + sha256.
COMPARE_TIMED = REPORT_FILES
Case = tuple[Path, Path, list[Any], Expected]


@pytest.fixture(scope="module")
def cases(
    server: ForkServer, world: dict[str, Path], model_b: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], Case]:
    """Per command, made on first use: (the old state's copy, the work folder, the new run's args, the
    expected states), the expectation measured once (two complete runs) for both syscalls."""
    made: dict[str, Case] = {}

    def case(command: str) -> Case:
        if command not in made:
            root = tmp_path_factory.mktemp(f"kill-{command}")
            base, work = root / "base", root / "work"
            old, args = _case(command, world, model_b, work)
            if old is None:  # compare's and the pipeline's old result: a run with the first model
                done = server.run(_made_here(command, world, world["text"], work / "out"), root)
                assert done["rc"] == 0, done["stderr"]
                shutil.move(work, base)
            else:
                shutil.copytree(old, base / "out")
            timed = COMPARE_TIMED if command == "compare" else ()
            made[command] = (base, work, args, expected(server, base, work, "out", args, timed))
        return made[command]

    return case


def _pipeline_points(syscall: str) -> tuple[Callable[[int], bool], Callable[[int, str, int], bool]]:
    """The pipeline makes ~36 renames and ~14 unlinks, most inside its staging folder (the old result
    untouched whatever happens there): the points around its final commit (renames 17-21, unlinks 9-13)
    are all tried, every 5th elsewhere; a re-run follows the first commit point and every 10th (each is a
    full pipeline run: this keeps the case to a few minutes on 2 cores)."""
    first = 17 if syscall == "rename" else 9
    return (lambda n: first <= n <= first + 4 or n % 5 == 1), (lambda n, verdict, olds: n % 10 == 0 or n == first)


def _compare_points() -> tuple[Callable[[int], bool], Callable[[int, str, int], bool]]:
    """compare makes ~20 renames (its report and plots staged, then one commit near the 12th): the points
    around the commit (10-14) are all tried, every 4th elsewhere; a re-run follows the commit point and
    every 8th (each re-run is a whole compare)."""
    return (lambda n: 10 <= n <= 14 or n % 4 == 1), (lambda n, verdict, olds: n % 8 == 0 or n == 12)


@pytest.mark.parametrize(("command", "syscall"), POINTS)
def test_sigkill_at_every_rename_and_unlink_leaves_old_or_new(
    command: str, syscall: str, server: ForkServer, cases: Callable[[str], Case]
) -> None:
    base, work, args, want = cases(command)
    if command == "pipeline":
        chosen = _pipeline_points(syscall)
    elif (command, syscall) == ("compare", "rename"):
        chosen = _compare_points()
    else:
        chosen = ()  # every point
    seen = kill_everywhere(server, base, work, "out", args, syscall, want, *chosen)
    print(f"{command} {syscall}: {len(seen)} kill points: {seen}")
    assert seen, f"{command} made no {syscall} call"
    assert "new" in {verdict for _, verdict in seen}  # the commit point was among them
