"""What a target is (torch-free, onnx-free): one frozen `TargetSpec` per place a graph runs.

A target answers five questions in one place (the shape `rnnedge/models/spec.py` gives mixers):
  1. how the graph is prepared for it      `export`  (None: the standard parallel + step graphs)
  2. which providers and options run it    `providers`, `provider_options`, `session_config`, `open`
  3. which recipes suit its int8 kernels   `recipes` (presets known to hold there), `int8_path()`
  4. how it is verified                    `tolerance` (fp32 graph vs the exporter's reference there)
  5. whether it really runs here           `probe()` -> Availability (with the reason when it does not)

`runs` says where the computation happens: "host" (ONNX Runtime in this process, on this CPU or a GPU),
"emulated" (a bit-faithful emulator started by rnnedge: qemu-user for another CPU), or "static" (rnnedge
can only prepare and check the graph here: no device or emulator to run it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Runs = Literal["host", "emulated", "static"]


@dataclass(frozen=True)
class Availability:
    """Whether a target runs on this machine now; `reason` says why not (or what runs it)."""

    ok: bool
    reason: str


@dataclass(frozen=True)
class TargetSpec:
    """One target: see the module docstring for what each field answers.

    `open(source, threads, config) -> session` replaces ONNX Runtime's in-process InferenceSession
    (an emulated CPU or another runtime): the object returned has the InferenceSession methods rnnedge
    uses (get_inputs, get_outputs, get_modelmeta, get_providers, run, io_binding, run_with_iobinding).
    `export(step_model, parallel_bytes, reference, verify) -> (files, manifest entry)` writes the
    target's own graph folder `folder` at export time (the mobile target's `mobile/`).
    """

    name: str
    summary: str
    device: str  # the hardware, in words
    runs: Runs
    probe: Callable[[], Availability]
    int8_path: Callable[[], str]  # how this target's kernels compute u8/s8 products, in words
    describe: Callable[[], dict[str, Any]] = field(default=lambda: {})  # machine facts for reports
    providers: tuple[str, ...] = ("CPUExecutionProvider",)
    provider_options: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    session_config: Mapping[str, str] = field(default_factory=dict)
    open: Callable[..., Any] | None = None
    export: Callable[..., tuple[dict[str, bytes], dict[str, Any]]] | None = None
    folder: str = ""  # the target's graph folder inside an export ("" = the export's own graphs)
    recipes: tuple[str, ...] = ("int8-dynamic", "int8-qdq", "fp16", "int8-weight", "int4-weight")
    tolerance: float = 1e-4  # fp32 graph vs the exporter's reference on this target
    reference: str = ""  # where the facts behind the entry come from

    @property
    def is_provider(self) -> bool:
        """True when eval/generate/bench/drift can run graphs on it (`--provider NAME`)."""
        return self.runs != "static"

    def facts(self) -> dict[str, Any]:
        """What a report or manifest records about where a variant ran: name, device, int8 path, machine."""
        return {"target": self.name, "device": self.device, "int8_path": self.int8_path(), **self.describe()}
