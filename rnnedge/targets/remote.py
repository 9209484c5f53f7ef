"""A session whose graph runs in a worker process (worker.py) inside an emulator: the InferenceSession
methods rnnedge uses, so the step loop, NLL, drift and the runtime run unchanged on an emulated CPU.

Each `run` sends the feeds to the worker and waits for the outputs; the worker runs ONNX Runtime's CPU
EP on the emulated CPU, so every product is computed by that CPU's own kernels.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rnnedge.errors import GraphError, RnnedgeError
from rnnedge.targets.worker import read_message, write_message

WORKER = Path(__file__).with_name("worker.py")


@dataclass(frozen=True)
class RemoteArg:
    """What InferenceSession.get_inputs()/get_outputs() give: name, ORT type string, shape."""

    name: str
    type: str
    shape: list[Any]


@dataclass(frozen=True)
class RemoteMeta:
    custom_metadata_map: dict[str, str]


class RemoteBinding:
    """IOBinding over NumPy arrays for a RemoteSession: inputs read and outputs written in place."""

    def __init__(self, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]):
        self.inputs, self.outputs = dict(inputs), dict(outputs)


class SessionStandIn:
    """What every non-ORT session gives rnnedge besides `run`: I/O, metadata, providers, and the IOBinding
    stand-in over NumPy arrays. Subclasses set `_inputs`, `_outputs`, `_meta`, `_providers` and `run`."""

    _inputs: list[RemoteArg]
    _outputs: list[RemoteArg]
    _meta: RemoteMeta
    _providers: list[str]

    def run(self, names: Sequence[str] | None, feed: Mapping[str, np.ndarray], run_options: Any = None) -> list:
        raise NotImplementedError

    def get_inputs(self) -> list[RemoteArg]:
        return list(self._inputs)

    def get_outputs(self) -> list[RemoteArg]:
        return list(self._outputs)

    def get_modelmeta(self) -> RemoteMeta:
        return self._meta

    def get_providers(self) -> list[str]:
        return list(self._providers)

    def get_provider_options(self) -> dict[str, dict[str, str]]:
        return {p: {} for p in self._providers}

    def bind_numpy(self, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> RemoteBinding:
        """The IOBinding stand-in rnnedge.inference.bind_arrays uses: these arrays are read and written in place."""
        return RemoteBinding(inputs, outputs)

    def run_with_iobinding(self, binding: RemoteBinding, run_options: Any = None) -> None:
        results = self.run(list(binding.outputs), binding.inputs)
        for arr, value in zip(binding.outputs.values(), results, strict=True):
            np.copyto(arr, value)


class RemoteSession(SessionStandIn):
    """A graph served by worker.py under `command` (an emulator's argv that runs a Python)."""

    def __init__(
        self,
        command: Sequence[str],
        env: Mapping[str, str],
        source: str | bytes,
        target: str,
        threads: int | None = None,
        config: Mapping[str, str] | None = None,
        optimization: str = "all",
    ):
        self.target = target
        self._tmp = None
        if isinstance(source, bytes):  # the worker opens files: a serialized model goes through a temp file
            suffix = ".ort" if source[4:8] == b"ORTM" else ".onnx"  # ORT-format files are flatbuffers, "ORTM"
            fd, name = tempfile.mkstemp(prefix="rnnedge-remote-", suffix=suffix)
            with os.fdopen(fd, "wb") as f:
                f.write(source)
            self._tmp = source = name
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 -- the emulator's own warnings, read back on failure
        try:
            self._proc = subprocess.Popen(
                [*command, str(WORKER)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._log,
                env={**os.environ, **env},
            )
        except OSError as exc:
            self.close()
            raise GraphError(f"cannot start the {target} emulator ({command[0]}): {exc.strerror or exc}") from exc
        reply, _ = self._call(
            {
                "op": "open",
                "path": str(Path(source).resolve()),
                "threads": threads,
                "optimization": optimization,
                "config": dict(config or {}),
            }
        )
        self._inputs = [RemoteArg(*a) for a in reply["inputs"]]
        self._outputs = [RemoteArg(*a) for a in reply["outputs"]]
        self._meta = RemoteMeta(reply["meta"])
        self._providers = list(reply["providers"])
        self.platform: dict[str, str] = reply["platform"]

    def _call(self, header: dict, arrays: dict | None = None) -> tuple[dict, dict]:
        try:
            write_message(self._proc.stdin, header, arrays)
            reply, out = read_message(self._proc.stdout)
        except (BrokenPipeError, OSError, ValueError):
            reply, out = {}, {}
        if not reply:
            code = self._proc.poll()
            self._log.seek(0)
            lines = [ln for ln in self._log.read().decode(errors="replace").splitlines() if "warning:" not in ln]
            why = lines[-1][:300] if lines else f"exit code {code}"
            self.close()
            raise GraphError(f"the {self.target} worker stopped: {why}")
        if "error" in reply:
            raise RnnedgeError(f"{self.target}: {reply['error']}")
        return reply, out

    def run(self, names: Sequence[str] | None, feed: Mapping[str, np.ndarray], run_options: Any = None) -> list:
        wanted = list(names) if names else [o.name for o in self._outputs]
        feeds = {k: np.ascontiguousarray(v) for k, v in feed.items()}
        _, out = self._call({"op": "run", "names": wanted}, feeds)
        return [out[n] for n in wanted]

    def close(self) -> None:
        """Stop the worker and remove any temp file (also done when the session is collected)."""
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            try:
                proc.stdin.close()
                proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
        if proc is not None:
            for stream in (proc.stdin, proc.stdout):
                with contextlib.suppress(OSError):
                    stream.close()
            self._proc = None  # type: ignore[assignment]
        log = getattr(self, "_log", None)
        if log is not None:
            log.close()
            self._log = None  # type: ignore[assignment]
        if self._tmp:
            Path(self._tmp).unlink(missing_ok=True)
            self._tmp = None

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()
