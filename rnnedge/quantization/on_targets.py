"""A variant verified on the CPUs that will run it: its held-out loss measured on each target.

int8 results are a property of the CPU's kernels, not of the file (targets/isa.py): the same
`step.int8-dynamic.onnx` was 0.41 logits from fp32 on a VNNI x86 and 1.22 on an AVX2-only one. So a
variant's check runs on the host (always) and on every `verify_on` target (emulated CPUs run under
qemu; the other runtimes, openvino and tract, in process): the step graph, the first TARGET_CHARS
held-out characters, as STREAMS streams from zero state, against the fp32 graph on the host. The
manifest records each target's facts and loss delta; a delta over the budget (`max_loss_delta`)
refuses the variant before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from rnnedge.errors import VerificationError
from rnnedge.inference import GraphSession, open_graph
from rnnedge.quantization import loss
from rnnedge.targets import ROUTED, check_target_name, host_target, target_spec, where

TARGET_CHARS = 4000  # held-out characters run on each emulated target (~0.3 ms per step call there)
Log = Callable[[str], None]


def check_targets(names: tuple[str, ...]) -> tuple[str, ...]:
    """The registered names of `names`, each a routed target (an emulated CPU or another runtime) that runs
    here; one line otherwise."""
    out = []
    for name in names:
        key = check_target_name(name)
        if key == host_target():
            continue  # the host is always verified
        if key == "qnn-htp":
            raise VerificationError(
                "--verify-on qnn-htp: the HTP runs its own recipes (a16w8, a8w8, htp-fp16, made from an export "
                "with --target qnn-htp), which are always verified on it before they are written"
            )
        if key not in ROUTED:
            raise VerificationError(f"--verify-on {name}: only these targets run variants here ({', '.join(ROUTED)})")
        why = target_spec(key).probe()
        if not why.ok:
            raise VerificationError(f"--verify-on {name}: {why.reason}")
        out.append(key)
    return tuple(dict.fromkeys(out))


def verify_on(
    name: str,
    data: bytes,
    fp32: GraphSession,
    ids: np.ndarray,
    max_loss_delta: float | None,
    say: Log,
) -> dict[str, Any]:
    """The step variant `data` on target `name`: loss delta vs fp32 (host), and vs the same variant on the host."""
    ids = ids[:TARGET_CHARS]  # (N,)
    on_target = open_graph(data, "step", name, threads=1, spinning=False)
    try:
        loss_target = loss.held_out_loss(on_target, ids)
    finally:
        close = getattr(on_target.session, "close", None)
        if close:
            close()
    loss_fp32 = loss.held_out_loss(fp32, ids)
    loss_host = loss.held_out_loss(loss.open_checked(data, "step"), ids)
    delta = loss_target - loss_fp32
    say(f"step on {name}: delta {delta:+.5f} (host {loss_host - loss_fp32:+.5f}, {len(ids)} chars)")
    if max_loss_delta is not None and delta > max_loss_delta:
        raise VerificationError(
            f"the step variant's loss delta on {name} is {delta:+.5f} > budget {max_loss_delta} "
            f"(host {loss_host - loss_fp32:+.5f}); nothing was written"
        )
    return {
        **where(name),
        "loss_delta": round(delta, 6),
        "loss_delta_host_same_chars": round(loss_host - loss_fp32, 6),
        "eval_chars": len(ids),
    }


def verified_on(targets: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The manifest's `verified_on`: the host's facts first, then each verified target's."""
    host = host_target()
    return [where(host or None), *targets.values()]
