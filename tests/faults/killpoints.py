"""The kill-point suite's pieces: a fork server to run rnnedge cheaply (forkrun.py), folder states by
name + size + sha256, and the old-or-new check after a SIGKILL."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnedge import commit, scratch
from rnnedge.ownership import LEDGER, read_ledger

COMMIT, STAGING_PREFIX = ".rnnedge-commit", ".rnnedge-staging-"  # rnnedge/commit.py's names
settle = getattr(commit, "settle", lambda folder: None)  # (absent before commits had records: nothing to settle)

ROOT = Path(__file__).resolve().parents[2]
# Ignored in a state, and why: an empty lock file a SIGKILLed holder cannot remove (the next run locks it
# again and removes it); a staging folder a kill before the commit point left, or an empty writability
# probe file killed before its unlink (hidden, never read, removed by the next writer). All are asserted
# gone after the re-run.
HOUSEKEEPING = (".rnnedge-lock", STAGING_PREFIX, ".rnnedge-probe.")

State = dict[str, tuple[str, int, str]]


def state(root: Path) -> State:
    """{relative path: (kind, size, sha256)} of everything under `root`, housekeeping left out."""
    found: State = {}
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        dirnames[:] = [d for d in dirnames if not d.startswith(STAGING_PREFIX)]
        for name in [*dirnames, *filenames]:
            path = base / name
            rel = path.relative_to(root).as_posix()
            if name.endswith(HOUSEKEEPING[0]) or name.startswith(HOUSEKEEPING[1:]):
                continue
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                found[rel] = ("dir", 0, "")
            elif stat.S_ISREG(st.st_mode):
                found[rel] = ("file", st.st_size, hashlib.sha256(path.read_bytes()).hexdigest())
            else:
                found[rel] = ("other", 0, "")
    return found


def leftovers(root: Path) -> list[str]:
    """Temp files, staging/commit folders and lock files of rnnedge anywhere under `root`."""
    marks = (".tmp", STAGING_PREFIX, COMMIT, ".rnnedge-lock", "probe", ".rnnedge-record")
    return sorted(str(p) for p in root.rglob("*") if any(m in p.name for m in marks))


def ledgers_hold(root: Path, st: State) -> list[str]:
    """Files of `st` that no ledger under `root` vouches for by size + sha256 (ledgers themselves aside)."""
    vouched: set[str] = set()
    for rel, (kind, _, _) in st.items():
        if kind == "file" and rel.endswith(LEDGER):
            folder = (root / rel).parent
            ledger = read_ledger(folder)
            assert ledger is not None
            prefix = folder.relative_to(root).as_posix()
            vouched |= {(f"{prefix}/{n}" if prefix != "." else n) for n in ledger.files if ledger.owns(n)}
    return sorted(rel for rel, (kind, _, _) in st.items() if kind == "file" and rel not in vouched)


@dataclass(frozen=True)
class Calls:
    """A reference run's rename/unlink/unlinkat/write calls in its main thread: how many of each, and
    the number of the first of each made at or after the rename that commits `out`."""

    count: dict[str, int]
    commit: dict[str, int]


def main_thread_calls(log: Path, pid: int, out: str) -> Calls:
    """`Calls` from an strace -f log (tests/faults/forkrun.py's `trace`) of the run whose main thread is `pid`."""
    count = dict.fromkeys(("rename", "unlink", "unlinkat", "write"), 0)
    commit: dict[str, int] = {}
    into_commit = re.compile(rf', "(?:[^"]*/)?{re.escape(out)}/{re.escape(COMMIT)}"\)')
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        m = re.match(rf"{pid} +(\w+)\((.*)", line)
        if m is None or m.group(1) not in count:
            continue
        if m.group(1) == "rename" and not commit and into_commit.search(m.group(2)):
            commit = {name: n + 1 for name, n in count.items()}
        count[m.group(1)] += 1
    assert commit, f"the reference run never renamed a staging folder to {out}/{COMMIT}"
    return Calls(count, commit)


@dataclass(frozen=True)
class Expected:
    """The old state, and the new one: a reference run's names, the bytes of its files that are the
    same in every run, and which files vary (timings, dates): those must match their ledger entries;
    and where among its calls the reference run committed."""

    old: State
    new: State
    volatile: frozenset[str]
    calls: Calls

    def verdict(self, root: Path) -> str:
        """'old' or 'new' for the folder at `root` (AssertionError when it is neither)."""
        now = state(root)
        if now == self.old:
            return "old"
        assert set(now) == set(self.new), f"neither old nor new: names {sorted(set(now) ^ set(self.new))}"
        differ = [rel for rel in now if rel not in self.volatile and now[rel] != self.new[rel]]
        assert not differ, f"neither old nor new: {differ}"
        unvouched = [r for r in ledgers_hold(root, now) if r in self.volatile and not r.endswith(LEDGER)]
        assert not unvouched, f"files no ledger of this commit vouches for: {unvouched}"
        return "new"


class ForkServer:
    """tests/faults/forkrun.py in a subprocess: `run(args, kill=(syscall, n))` forks one rnnedge run."""

    def __init__(self, err_path: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
        env["MPLBACKEND"] = "Agg"
        # A temp dir of the runs' own: what a killed run left there (rnnedge's scratch, ORT's ort.quant.*)
        # must be gone once the next run has started and ended (rnnedge/scratch.py).
        self.tmpdir = err_path.parent / "tmp"
        self.tmpdir.mkdir(exist_ok=True)
        env["TMPDIR"] = str(self.tmpdir)
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("forkrun.py")), str(err_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=str(ROOT),
        )
        assert self.proc.stdout is not None and json.loads(self.proc.stdout.readline()) == {"ready": True}
        self.server_temp = set(self.tmpdir.iterdir())  # the server's own imports' (ORT's telemetry `.ses`)

    def run(
        self,
        args: Sequence[Any],
        cwd: Path,
        kill: tuple[str, int] | None = None,
        after: float | None = None,
        follow: bool = True,
        trace: Path | None = None,
    ) -> dict[str, Any]:
        """`rnnedge ARGS` in a forked child: SIGKILLed at the `kill` = (syscall, n)-th call (counted in all
        its threads and children, or with `follow=False` in its main thread only), or after `after` s; or,
        with `trace`, not killed but its file syscalls logged there."""
        request = {"args": [str(a) for a in args], "cwd": str(cwd), "syscall": None, "when": 0, "after": after}
        request["follow"], request["trace"] = follow, (str(trace) if trace else None)
        if kill is not None:
            request["syscall"], request["when"] = kill
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())  # type: ignore[no-any-return]

    def temp_left(self) -> list[str]:
        """What the runs left in their temp dir: nothing but the (empty) per-user scratch root."""
        root = self.tmpdir / scratch.scratch_root_name()
        found = [p for p in self.tmpdir.rglob("*") if p != root and p not in self.server_temp]
        return sorted(str(p.relative_to(self.tmpdir)) for p in found)

    def clear_temp(self) -> None:
        """Remove what earlier (killed) runs left in the temp dir, so that the next run starts where a
        reference run started: the calls a run makes include removing such leftovers."""
        root = self.tmpdir / scratch.scratch_root_name()
        beside = [p for p in self.tmpdir.iterdir() if p != root and p not in self.server_temp]
        for path in [*beside, *(root.iterdir() if root.is_dir() else ())]:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


def reset(base: Path, work: Path) -> None:
    """Put the old state (a copy of `base`) at `work` (always the same path: reports name their paths)."""
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(base, work, symlinks=True)


def expected(
    server: ForkServer, base: Path, work: Path, out: str, args: Sequence[Any], timed: Iterable[str] = ()
) -> Expected:
    """Run the new command twice from the old state: the new state, and which of its files vary — those
    that differ between the two runs, and `timed`: files that carry wall-clock measurements, which two
    runs may happen to round alike (a plot's pixels) although a third does not."""
    reset(base, work)
    old = state(work / out)
    runs, log = [], work.parent / "reference.strace"
    for traced in (True, False):
        reset(base, work)
        server.clear_temp()
        done = server.run(args, work, trace=log if traced else None)
        assert done["rc"] == 0, done["stderr"]
        runs.append(state(work / out))
        if traced:
            calls = main_thread_calls(log, done["pid"], out)
            log.unlink()
    assert set(runs[0]) == set(runs[1])
    volatile = frozenset(rel for rel in runs[0] if runs[0][rel] != runs[1][rel]) | frozenset(timed)
    return Expected(old, runs[0], volatile, calls)


@dataclass(frozen=True)
class Killer:
    """One command killed at its `syscall`: `args` run in `work` from a copy of `base`, its folder `out`."""

    server: ForkServer
    base: Path
    work: Path
    out: str
    args: Sequence[Any]
    syscall: str
    want: Expected
    follow: bool = True  # count the syscall in every thread and child (False: the main thread's only)
    # Where repeating `args` is not the re-run (train refuses to redo the steps a checkpoint has done):
    # the re-run's args, and the check of the folder it leaves.
    again: tuple[Sequence[Any], Callable[[Path], None]] | None = None

    def kill_at(self, n: int) -> str | None:
        """SIGKILL at the n-th call, from the old state: 'old' or 'new' (the folder as it is, and after a
        reader settles it), or None when the run made fewer calls and completed (with the new state and
        no temp file)."""
        reset(self.base, self.work)
        self.server.clear_temp()  # (a re-run, not this, is what must remove a killed run's temp files)
        ran = self.server.run(self.args, self.work, kill=(self.syscall, n), follow=self.follow)
        folder = self.work / self.out
        if not ran["killed"]:
            assert ran["rc"] == 0, ran["stderr"]
            assert self.want.verdict(folder) == "new"
            assert leftovers(self.work) == []
            assert self.server.temp_left() == []
            return None
        if not (folder / COMMIT).exists():
            self.want.verdict(folder)  # as it is: old or new (no unfinished commit)
        settle(folder)  # what a reader (or the next writer) does first
        return self.want.verdict(folder)

    def _is_new(self, folder: Path) -> None:
        assert self.want.verdict(folder) == "new"

    def rerun(self, n: int) -> None:
        """After the kill at `n`: a re-run completes with the new state (or the one `again` checks) and
        leaves no temp file."""
        args, check = self.again or (self.args, self._is_new)
        again = self.server.run(args, self.work)
        assert again["rc"] == 0, f"re-run after a kill at {self.syscall} #{n}: {again['stderr']}"
        check(self.work / self.out)
        assert leftovers(self.work) == [], f"after a kill at {self.syscall} #{n}"
        assert self.server.temp_left() == [], f"temp files after a kill at {self.syscall} #{n} and a re-run"


def kill_everywhere(kill: Killer) -> list[tuple[int, str]]:
    """The full sweep: SIGKILL at the 1st, 2nd, ... call until a run completes, each leaving the old or
    the new result; a re-run after every kill that left the new one (each a different stage of the
    roll-forward) and after every 3rd that left the old one (whose leftovers are alike). Returns
    [(n, 'old' | 'new')] for every kill point."""
    seen: list[tuple[int, str]] = []
    for n in range(1, 500):
        verdict = kill.kill_at(n)
        if verdict is None:
            return seen
        seen.append((n, verdict))
        if verdict == "new" or sum(v == "old" for _, v in seen) % 3 == 1:
            kill.rerun(n)
    raise AssertionError("the command never completed")


def kill_around_the_commit(kill: Killer) -> list[tuple[int, str]]:
    """The sampled sweep: SIGKILL at the first call, the one before the commit (the staged result
    complete, its commit record written), the commit itself, the one after (the roll-forward begun) and
    the last call, as the reference run counted them in its main thread; a re-run after the kills just
    before and at the commit. Returns [(n, 'old' | 'new')] for every kill point."""
    last, c = kill.want.calls.count[kill.syscall], kill.want.calls.commit[kill.syscall]
    seen: list[tuple[int, str]] = []
    for n in sorted({1, c - 1, c, c + 1, last} & set(range(1, last + 1))):
        verdict = kill.kill_at(n)
        if verdict is None:  # it made fewer calls than the reference run counted (threads, ORT's
            break  # scratch): completed, checked to hold the new state and no temp file
        seen.append((n, verdict))
        if n in (c - 1, c):
            kill.rerun(n)
    return seen
