"""SIGKILL (strace's fault injection, deterministic) of export, quantize, drift, compare and pipeline
re-runs with another model, and of a checkpoint saved in place (`train --resume CK --out CK`), at their
rename, unlink, unlinkat and write calls. After each kill the output
folder is the whole old result or the whole new one by name + size + sha256 (as it is, and as a reader
sees it after rolling an unfinished commit forward), and a re-run completes and leaves no temp file, in
the folder or in the temp dir (rnnedge/commit.py, rnnedge/scratch.py).

Two depths (`--kill-sweep`): `sampled`, the default, kills each command at its first call of the kind,
the last one before the rename that commits its folder, the first at or after it, the one after that and
its last, as a traced reference run counted them; `full` kills it at every call, one by one, until a run
completes.

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
from rnnedge.ownership import LEDGER
from rnnedge.quantization import quantize_export
from rnnedge.training.checkpoint import load_checkpoint
from rnnedge.training.train import train
from tests.faults.conftest import TINY
from tests.faults.killpoints import Expected, ForkServer, Killer, expected, kill_around_the_commit, kill_everywhere
from tests.faults.support import COMPARE, DRIFT, EXPORT, PIPELINE

pytestmark = pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
COMMANDS = ("export", "quantize", "drift", "compare", "pipeline", "train")  # train: a checkpoint saved in place
# (command, syscall): every command's renames, unlinks, unlinkats (rmtree, rmdir) and writes (the staged
# files, the ledger, the commit record, the lines printed after the commit).
POINTS = [(c, s) for s in ("rename", "unlink", "unlinkat", "write") for c in COMMANDS]


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
    if name == "train":  # the checkpoint saved in place: 2 more steps
        return world["ckpt"], ["train", "--resume", out, "--out", out, "--data", text, *TRAIN_MORE]
    if name == "drift":
        return world["report"], ["drift", b["export"], "--data", text, "--out", out, *DRIFT, "--threads", "1"]
    return None, _made_here(name, b, text, out)


def _made_here(name: str, model: dict[str, Path], text: Path, out: Path) -> list[Any]:
    """compare's or the pipeline's args with `model` (its old result is a run with the first model, made
    at the same path)."""
    if name == "compare":
        return ["compare", model["export"], "--data", text, "--out", out, *COMPARE_ARGS]
    return ["pipeline", model["ckpt"], "--out", out, "--data", text, *PIPELINE]


TRAIN_MORE = ["--steps", str(TINY.steps + 2), "--quiet", "--threads", "1"]
COMPARE_ARGS = [*COMPARE, "--stream-tokens", "64", "--threads", "1"]
# compare's report files carry measurements (latency, throughput, peak memory: its pages, its plots),
# which two reference runs may happen to round alike although a third does not; the ledger of the
# commit must still vouch for each of them by size + sha256.
COMPARE_TIMED = REPORT_FILES
# A checkpoint's config.json records its training time (`train_time_s`, to the millisecond), and its
# ledger that file's hash.
TRAIN_TIMED = ("config.json", LEDGER)
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
            timed = {"compare": COMPARE_TIMED, "train": TRAIN_TIMED}.get(command, ())
            made[command] = (base, work, args, expected(server, base, work, "out", args, timed))
        return made[command]

    return case


def _train_again(args: list[Any]) -> list[Any]:
    """A re-run of a killed `train --resume`: one step further than the run it repeats (a checkpoint
    that completed its steps refuses to redo them)."""
    return [*args[: args.index("--steps")], "--steps", str(TINY.steps + 3), *args[args.index("--steps") + 2 :]]


def _three_more_steps(folder: Path) -> None:
    loaded = load_checkpoint(folder, with_optimizer=True)  # weights, optimizer, config agree
    assert loaded.optimizer_tensors is not None and int(loaded.training["steps_done"]) == TINY.steps + 3


# compare's resident-memory probe runs in a child process (its pipe writes are its own) and ONNX Runtime's
# thread pools write to eventfds: compare's and the pipeline's writes are counted in the main thread,
# which writes every file of theirs.
MAIN_THREAD_ONLY = {("compare", "write"), ("pipeline", "write")}


@pytest.mark.parametrize(("command", "syscall"), POINTS)
def test_sigkill_at_every_rename_unlink_and_write_leaves_old_or_new(
    command: str, syscall: str, server: ForkServer, cases: Callable[[str], Case], request: pytest.FixtureRequest
) -> None:
    base, work, args, want = cases(command)
    follow = (command, syscall) not in MAIN_THREAD_ONLY
    again = (_train_again(args), _three_more_steps) if command == "train" else None
    kill = Killer(server, base, work, "out", args, syscall, want, follow, again)
    full = request.config.getoption("--kill-sweep") == "full"
    seen = kill_everywhere(kill) if full else kill_around_the_commit(kill)
    print(f"{command} {syscall}: {len(seen)} kill points of {want.calls.count[syscall]}: {seen}")
    assert seen, f"{command} made no {syscall} call"
    assert "new" in {verdict for _, verdict in seen}  # the commit point was among them
    if want.calls.commit[syscall] > 1:
        assert "old" in {verdict for _, verdict in seen}  # and the last point before it
