"""A fork server for the kill-point suite: imports rnnedge's heavy stack (torch, onnx, onnxruntime) once,
then runs each `rnnedge ARGS` in a forked child, optionally under strace's fault injection (attached to
the child with -p before it runs: SIGKILL at its N-th matching syscall). Startup is paid once, so a
command can be killed at every rename/unlink in seconds. Nothing ran torch in this process before a
fork (no thread pool to inherit).

Protocol: one JSON object per line on stdin {"args": [...], "cwd": str, "syscall": str | null, "when": int,
"after": float | null (SIGKILL the child this many seconds after it starts, unless it ended), "follow": bool
(true: count the syscall in every thread and child process, strace -f; false: in the main thread only),
"trace": str | null (no kill: log the child's rename/unlink/unlinkat/write calls to this file)},
one JSON object per line on stdout {"rc": int, "killed": bool, "stderr": str, "pid": int}.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time


def _child(args: list[str], cwd: str, go: int, err_path: str) -> None:
    os.read(go, 1)  # wait until strace is attached
    os.chdir(cwd)
    fd = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    sys.argv = ["rnnedge", *args]
    code = 0
    try:
        from rnnedge.cli import main

        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # a traceback is a failure the test reports
        import traceback

        traceback.print_exc()
        code = 99
    sys.stderr.flush()
    os._exit(code)


def _traced(pid: int) -> bool:
    with open(f"/proc/{pid}/status") as fh:
        return any(line.startswith("TracerPid:") and line.split()[1] != "0" for line in fh)


def _wait_traced(pid: int) -> None:
    deadline = time.monotonic() + 20
    while not _traced(pid) and time.monotonic() < deadline:
        time.sleep(0.005)


def _wait(pid: int, after: object) -> int:
    """The child's wait status; with `after` (seconds), SIGKILLed then if it is still running."""
    if after is not None:
        deadline = time.monotonic() + float(after)  # type: ignore[arg-type]
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return status
            time.sleep(0.001)
        os.kill(pid, signal.SIGKILL)
    return os.waitpid(pid, 0)[1]


def run_one(request: dict[str, object], err_path: str) -> dict[str, object]:
    """Fork, attach strace when asked, let the child run, report how it ended."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        _child([str(a) for a in request["args"]], str(request["cwd"]), r, err_path)  # type: ignore[union-attr]
    os.close(r)
    tracer, cmd = None, None
    syscall = request.get("syscall")
    if request.get("trace"):  # log the child's file syscalls (all threads, each line led by its pid)
        files = "trace=rename,unlink,unlinkat,write"
        cmd = ["strace", "-f", "-qq", "-o", str(request["trace"]), "-e", files, "-p", str(pid)]
    elif syscall:
        inject = f"inject={syscall}:signal=SIGKILL:when={request['when']}"
        follow = ["-f"] if request.get("follow", True) else []
        cmd = ["strace", *follow, "-qq", "-o", "/dev/null", "-e", f"trace={syscall}", "-e", inject, "-p", str(pid)]
    if cmd is not None:
        tracer = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_traced(pid)
    os.write(w, b"g")
    os.close(w)
    status = _wait(pid, request.get("after"))
    if tracer is not None:
        tracer.wait(timeout=30)
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == 9
    rc = os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status)
    with open(err_path, encoding="utf-8", errors="replace") as fh:
        stderr = fh.read()
    return {"rc": rc, "killed": killed, "stderr": stderr, "pid": pid}


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401
    import torch  # noqa: F401

    import rnnedge.cli
    import rnnedge.drift
    import rnnedge.exporter
    import rnnedge.pipeline
    import rnnedge.quantization  # noqa: F401

    err_path = sys.argv[1]
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        print(json.dumps(run_one(json.loads(line), err_path)), flush=True)


if __name__ == "__main__":
    main()
