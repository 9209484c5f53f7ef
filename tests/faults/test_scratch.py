"""rnnedge/scratch.py: a command's temp files live in a folder of its own that the next command removes
once no live process holds it (a SIGKILLed run cannot clean up after itself)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from rnnedge import scratch

HOLD = "import sys, time; from rnnedge import scratch; print(scratch.enter(), flush=True); time.sleep(60)"


@pytest.fixture
def tmpdir_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tempfile's dir (and TMPDIR) pointed at tmp_path for this test."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    return tmp_path


def _holder(tmp: Path) -> tuple[subprocess.Popen[str], Path]:
    env = {**os.environ, "TMPDIR": str(tmp)}
    proc = subprocess.Popen([sys.executable, "-c", HOLD], stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    return proc, Path(proc.stdout.readline().strip())


def test_a_killed_processs_scratch_is_swept_and_a_live_ones_kept(tmpdir_here: Path) -> None:
    live, live_dir = _holder(tmpdir_here)
    dead, dead_dir = _holder(tmpdir_here)
    try:
        (dead_dir / "ort.quant.x").mkdir()
        (dead_dir / "ort.quant.x" / "model.onnx").write_bytes(b"\0" * 100)
        dead.kill()
        dead.wait()
        assert dead_dir.is_dir()  # SIGKILL: nothing could remove it
        folder = scratch.enter()
        try:
            assert folder is not None and folder.parent == tmpdir_here / scratch.scratch_root_name()
            assert not dead_dir.exists(), "the killed process's scratch was not swept"
            assert live_dir.is_dir(), "a live process's scratch was swept"
            assert tempfile.gettempdir() == str(folder) and os.environ["TMPDIR"] == str(folder)
            (Path(tempfile.mkdtemp()) / "f").write_text("x")  # the libraries' temp files land inside
        finally:
            scratch.leave()
        assert not folder.exists()
        assert tempfile.gettempdir() == str(tmpdir_here)
    finally:
        live.kill()
        live.wait()


def test_a_scratch_root_that_is_a_symlink_is_not_used(
    tmpdir_here: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (tmpdir_here / scratch.scratch_root_name()).symlink_to(elsewhere)
    assert scratch.enter() is None
    assert list(elsewhere.iterdir()) == []
    assert tempfile.gettempdir() == str(tmpdir_here)


def test_the_cli_leaves_nothing_in_the_temp_dir(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "rnnedge.cli", "targets"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    root = tmp_path / scratch.scratch_root_name()
    assert [p.name for p in tmp_path.iterdir()] == [root.name] and list(root.iterdir()) == []
