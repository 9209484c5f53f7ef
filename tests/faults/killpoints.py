"""The kill-point suite's pieces: a fork server to run rnnedge cheaply (forkrun.py), folder states by
name + size + sha256, and the old-or-new check after a SIGKILL."""

from __future__ import annotations

import hashlib
import json
import os
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
class Expected:
    """The old state, and the new one: a reference run's names, the bytes of its files that are the
    same in every run, and which files vary (timings, dates): those must match their ledger entries."""

    old: State
    new: State
    volatile: frozenset[str]

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
        self, args: Sequence[Any], cwd: Path, kill: tuple[str, int] | None = None, after: float | None = None
    ) -> dict[str, Any]:
        """`rnnedge ARGS` in a forked child: SIGKILLed at the `kill` = (syscall, n)-th call, or `after` s."""
        request = {"args": [str(a) for a in args], "cwd": str(cwd), "syscall": None, "when": 0, "after": after}
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
    runs = []
    for _ in range(2):
        reset(base, work)
        done = server.run(args, work)
        assert done["rc"] == 0, done["stderr"]
        runs.append(state(work / out))
    assert set(runs[0]) == set(runs[1])
    volatile = frozenset(rel for rel in runs[0] if runs[0][rel] != runs[1][rel]) | frozenset(timed)
    return Expected(old, runs[0], volatile)


def kill_everywhere(
    server: ForkServer,
    base: Path,
    work: Path,
    out: str,
    args: Sequence[Any],
    syscall: str,
    want: Expected,
    points: Callable[[int], bool] = lambda n: True,
    rerun: Callable[[int, str, int], bool] | None = None,
) -> list[tuple[int, str]]:
    """SIGKILL `args` at its 1st, 2nd, ... `syscall` (those `points` takes) until a run completes; after
    each kill the folder `work/out` must be old or new (as it is, and after a reader settles it), and a
    re-run (where `rerun(n, verdict, olds so far)` says; by default after every kill that left the new
    result, each a different stage of the roll-forward, and after every 3rd that left the old one, whose
    leftovers are alike) must complete with the new state and no temp file. Returns
    [(n, 'old' | 'new')] for every kill point tried."""
    rerun = rerun or (lambda n, verdict, olds: verdict == "new" or olds % 3 == 1)
    seen: list[tuple[int, str]] = []
    for n in range(1, 500):
        if not points(n):
            continue
        reset(base, work)
        ran = server.run(args, work, kill=(syscall, n))
        if not ran["killed"]:
            assert ran["rc"] == 0, ran["stderr"]
            assert want.verdict(work / out) == "new"
            assert leftovers(work) == []
            assert server.temp_left() == []
            return seen
        folder = work / out
        if not (folder / COMMIT).exists():
            want.verdict(folder)  # as it is: old or new (no unfinished commit)
        settle(folder)  # what a reader (or the next writer) does first
        seen.append((n, want.verdict(folder)))
        if rerun(n, seen[-1][1], sum(v == "old" for _, v in seen)):
            again = server.run(args, work)
            assert again["rc"] == 0, f"re-run after a kill at {syscall} #{n}: {again['stderr']}"
            assert want.verdict(folder) == "new"
            assert leftovers(work) == [], f"after a kill at {syscall} #{n}"
            assert server.temp_left() == [], f"temp files after a kill at {syscall} #{n} and a re-run"
    raise AssertionError("the command never completed")
