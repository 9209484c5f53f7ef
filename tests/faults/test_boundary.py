"""The CLI boundary maps every exception to one `rnnedge: error:` line (RNNEDGE_DEBUG=1 adds the
traceback); reads are bounded (device files and FIFOs refused, not read); thread counts are capped;
a second writer of the same output folder is refused while the first holds its lock."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEXT
from tests.faults.support import (
    COMMANDS,
    Inputs,
    assert_refused,
    assert_refused_subprocess,
    cli,
    rnnedge_subprocess,
    snapshot,
)


def _raise(exc: BaseException):  # type: ignore[no-untyped-def]
    def boom(*args: object, **kwargs: object) -> None:
        raise exc

    return boom


ENGINE_ERRORS: dict[str, tuple[BaseException, str]] = {
    "enametoolong": (OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), "x" * 5000), "File name too long"),
    "unicode": (UnicodeEncodeError("ascii", "\udcff", 0, 1, "surrogates not allowed"), "encoded or decoded"),
    "torch-alloc": (RuntimeError("[enforce fail] DefaultCPUAllocator: can't allocate memory: 8 GB"), "out of memory"),
    "ort-run": (type("Fail", (Exception,), {"__module__": "onnxruntime.capi"})("Non-zero status code"), "ONNX Runtime"),
    "anything": (ValueError("an unexpected\nmulti-line problem"), "an unexpected multi-line problem"),
}


@pytest.mark.parametrize("case", sorted(ENGINE_ERRORS))
def test_every_exception_is_one_line(case: str, inputs: Inputs, monkeypatch: pytest.MonkeyPatch) -> None:
    import rnnedge.runtime

    exc, needle = ENGINE_ERRORS[case]
    monkeypatch.setattr(rnnedge.runtime, "generate", _raise(exc))
    line = assert_refused(cli(*COMMANDS["generate"](inputs)), needle)
    assert len(line) < 500
    monkeypatch.setenv("RNNEDGE_DEBUG", "1")
    result = cli(*COMMANDS["generate"](inputs))
    assert "Traceback" in result.stderr and result.stderr.strip().splitlines()[-1].startswith("rnnedge: error: ")


def test_a_too_long_out_path_is_one_line(inputs: Inputs) -> None:
    long_out = inputs.out / ("d" * 300) / "x"
    assert_refused(cli(*COMMANDS["drift"](Inputs(inputs.ckpt, inputs.export, inputs.text, long_out))), "too long")


@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_a_checkpoint_file_linked_to_dev_zero_is_refused_unread(name: str, inputs: Inputs) -> None:
    (inputs.ckpt / name).unlink()
    (inputs.ckpt / name).symlink_to("/dev/zero")
    result = rnnedge_subprocess(*COMMANDS["eval"](inputs), timeout=60)  # capped: an unbounded read would die
    assert_refused_subprocess(result, "not a regular file")


def test_a_fifo_or_device_as_text_is_refused_not_read(inputs: Inputs) -> None:
    fifo = inputs.text.parent / "fifo.txt"
    os.mkfifo(fifo)
    for text in (fifo, Path("/dev/zero")):
        for args in (
            ["eval", inputs.export],
            ["drift", inputs.export, "--out", inputs.out],
            ["train", "--out", inputs.out],
        ):
            result = rnnedge_subprocess(*args, "--data", text, timeout=60)
            assert_refused_subprocess(result, "not a regular file")


def test_absurd_thread_counts_are_refused(inputs: Inputs) -> None:
    assert_refused(cli(*COMMANDS["generate"](inputs), "--threads", "10000"), "--threads")


def test_a_second_writer_of_the_same_folder_is_refused(inputs: Inputs) -> None:
    hold = (
        "import sys; from rnnedge.outlock import writer_lock\n"
        "with writer_lock(sys.argv[1]):\n print('held', flush=True); sys.stdin.read()"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [sys.executable, "-c", hold, str(inputs.ckpt)]
    first = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert first.stdout is not None and first.stdout.readline().strip() == "held"
        before = snapshot(inputs.ckpt)
        result = cli(*COMMANDS["train"](Inputs(inputs.ckpt, inputs.export, inputs.text, inputs.ckpt)))
        assert_refused(result, "another rnnedge is writing")
        assert snapshot(inputs.ckpt) == before
    finally:
        first.communicate("", timeout=30)
    assert cli(*COMMANDS["train"](Inputs(inputs.ckpt, inputs.export, inputs.text, inputs.ckpt))).exit_code == 0


def test_the_medium_preset_under_a_memory_cap_is_one_line(tmp_path: Path) -> None:
    """The issue's case, for real (no patched allocator): `train --preset medium` in a 3 GB address space
    runs out of memory in torch -> exit 1, one `out of memory` line, no output folder. The issue saw a
    traceback after 78 s of work; here it is one line in ~10 s (2.4 GB peak RSS)."""
    text = tmp_path / "long.txt"
    text.write_text(TEXT * 300, encoding="utf-8")
    out = tmp_path / "medium"
    result = rnnedge_subprocess(
        "train", "--preset", "medium", "--data", text, "--out", out, "--steps", 3, "--threads", 1, memory=3 * 2**30
    )
    assert_refused_subprocess(result, "out of memory")
    assert not out.exists()
