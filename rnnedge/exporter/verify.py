"""Numerical checks of the two graphs in ONNX Runtime (CPU EP), run before anything is written.

Every check returns its measured max abs difference; `verify_graphs` runs them all (a failing check
does not stop the others) so a VerificationError can list each one with its figure.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import onnxruntime as ort
import torch

from rnnedge.errors import GraphError, VerificationError
from rnnedge.inference import open_session
from rnnedge.models import CharLM, mixer_spec

TOLERANCE = 1e-4  # the default MixerSpec.atol; a mixer may declare its own


def tolerance(model: CharLM) -> float:
    """Max abs difference the checks allow for this model: its config's own `atol` (a module exported
    through rnnedge.byom), else its mixer's MixerSpec.atol."""
    own = getattr(model.config, "atol", None)
    return float(own) if own is not None else mixer_spec(model.config.arch).atol


@dataclass(frozen=True)
class CheckResult:
    name: str
    graph: str  # "parallel", "step" or "parallel+step"
    max_abs_diff: float
    tolerance: float
    detail: str = ""

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.max_abs_diff)) and self.max_abs_diff <= self.tolerance

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "passed": self.passed}


def session(graph: bytes, providers: Sequence[str] = ("CPUExecutionProvider",)) -> ort.InferenceSession:
    """One thread, no spinning: the checks are many tiny runs, and a shared 2-core box punishes spinning.
    CUDA runs with TF32 off (rnnedge.inference.providers), so GPU figures are comparable with CPU ones."""
    return open_session(graph, list(providers), threads=1, spinning=False)


def run(sess: ort.InferenceSession, ids: np.ndarray, state: Sequence[np.ndarray]) -> list[np.ndarray]:
    """One call; the ids in the dtype the graph declares (int64, or int32: `export --ids int32`)."""
    inputs = sess.get_inputs()
    ids = ids.astype(np.int32) if inputs[0].type == "tensor(int32)" else ids
    return list(sess.run(None, dict(zip([i.name for i in inputs], [ids, *state], strict=True))))


def _diff(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        d = np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))
        if not np.all(np.isfinite(d)):
            return float("inf")
        worst = max(worst, float(d.max()) if d.size else 0.0)
    return worst


class Inputs:
    """Reproducible token ids and non-zero initial states for a model."""

    def __init__(self, model: CharLM, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.vocab = model.config.vocab_size
        self.states = model.config.state_infos()

    def ids(self, batch: int, time: int) -> np.ndarray:
        return self.rng.integers(0, self.vocab, size=(batch, time), dtype=np.int64)

    def state(self, batch: int) -> list[np.ndarray]:
        """Random float states (N(0, 0.25)); integer states (positions) start at zero."""
        out = []
        for s in self.states:
            shape = s.concrete_shape(batch)
            if s.dtype.startswith("float"):
                out.append((0.5 * self.rng.standard_normal(shape)).astype(np.float32))
            else:
                out.append(np.zeros(shape, dtype=np.dtype(s.dtype)))
        return out


class Reference:
    """The model plus an fp64 copy; fp64 forwards are cached so re-verification after simplify is cheap.

    `max_seq_len`: the longest T one call of the parallel graph under test is exact for (its fixed scan
    depth); checks call it on at most that many tokens and chunk longer texts with carried state, as the
    runtime does. A decaying scan (minGRU) hides a call past it; attention (Aaren) does not.
    """

    def __init__(self, model: CharLM, max_seq_len: int | None = None) -> None:
        self.model = model
        self.tolerance = tolerance(model)
        self.max_seq_len = max_seq_len
        self._fp64: CharLM | None = None
        self._cache: dict[bytes, list[np.ndarray]] = {}

    def torch(self, ids: np.ndarray, state: Sequence[np.ndarray]) -> list[np.ndarray]:
        """fp64 PyTorch forward (scan depth derived from T, so exact at any length)."""
        h = hashlib.sha256(ids.tobytes() + str(ids.shape).encode())
        for s in state:
            h.update(s.tobytes())
        key = h.digest()
        if key not in self._cache:
            if self._fp64 is None:
                self._fp64 = copy.deepcopy(self.model).double().eval()
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # small batch-2 forwards: extra threads only add sync overhead
            try:
                with torch.no_grad():
                    fp64_state = tuple(_fp64(torch.from_numpy(s)) for s in state)  # positions stay integers
                    logits, new = self._fp64(torch.from_numpy(ids), fp64_state)
            finally:
                torch.set_num_threads(threads)
            self._cache[key] = [logits.numpy(), *(s.numpy() for s in new)]
        return self._cache[key]

    def lengths(self, *lengths: int) -> tuple[int, ...]:
        """The given lengths, each capped at max_seq_len (duplicates dropped, in order)."""
        limit = self.max_seq_len or max(lengths)
        return tuple(dict.fromkeys(min(t, limit) for t in lengths))


def _fp64(x: torch.Tensor) -> torch.Tensor:
    return x.double() if x.is_floating_point() else x


def run_parallel(
    ref: Reference, sess: ort.InferenceSession, ids: np.ndarray, state: Sequence[np.ndarray]
) -> list[np.ndarray]:
    """The parallel graph over ids (B, T) in calls of at most ref.max_seq_len tokens, state carried."""
    limit = ref.max_seq_len or ids.shape[1]
    logits, state = [], list(state)
    for start in range(0, ids.shape[1], limit):
        out = run(sess, ids[:, start : start + limit], state)
        logits.append(out[0])
        state = out[1:]
    return [np.concatenate(logits, axis=1), *state]


def check_parallel_vs_torch(ref: Reference, par: ort.InferenceSession, lengths: Sequence[int]) -> CheckResult:
    gen = Inputs(ref.model, seed=1)
    worst = 0.0
    for t in lengths:
        ids, st = gen.ids(2, t), gen.state(2)
        worst = max(worst, _diff(run(par, ids, st), ref.torch(ids, st)))
    return CheckResult("parallel_vs_torch_fp64", "parallel", worst, ref.tolerance, f"T in {list(lengths)}, batch 2")


def check_step_vs_parallel(
    ref: Reference, par: ort.InferenceSession, step: ort.InferenceSession, n: int
) -> CheckResult:
    gen = Inputs(ref.model, seed=2)
    ids, st = gen.ids(1, n), gen.state(1)
    want = run_parallel(ref, par, ids, st)
    logits = np.empty_like(want[0])
    state = st
    for t in range(n):
        out = run(step, ids[:, t], state)
        logits[:, t] = out[0]
        state = out[1:]
    return CheckResult(
        "step_vs_parallel", "parallel+step", _diff([logits, *state], want), ref.tolerance, f"{n} tokens one by one"
    )


def check_carried_state(ref: Reference, par: ort.InferenceSession, n: int) -> CheckResult:
    gen = Inputs(ref.model, seed=3)
    ids, st = gen.ids(2, n), gen.state(2)
    whole = run(par, ids, st)
    cut = max(1, n // 3)
    first = run(par, ids[:, :cut], st)
    second = run(par, ids[:, cut:], first[1:])
    got = [np.concatenate([first[0], second[0]], axis=1), *second[1:]]
    return CheckResult("carried_state", "parallel", _diff(got, whole), ref.tolerance, f"split {cut}+{n - cut} vs {n}")


def check_batch(ref: Reference, par: ort.InferenceSession, step: ort.InferenceSession, n: int) -> CheckResult:
    gen = Inputs(ref.model, seed=4)
    ids, st = gen.ids(3, n), gen.state(3)
    worst = 0.0
    for sess, x in ((par, ids), (step, ids[:, 0])):
        batched = run(sess, x, st)
        for b in range(3):
            single = run(sess, x[b : b + 1], [s[b : b + 1] for s in st])
            worst = max(worst, _diff([o[b : b + 1] for o in batched], single))
    return CheckResult("batch_vs_single", "parallel+step", worst, ref.tolerance, f"batch 3 vs 1, T={n}")


def check_step_vs_torch(ref: Reference, step: ort.InferenceSession) -> CheckResult:
    gen = Inputs(ref.model, seed=5)
    ids, st = gen.ids(2, 1), gen.state(2)
    want = ref.torch(ids, st)
    got = run(step, ids[:, 0], st)
    return CheckResult("step_vs_torch_fp64", "step", _diff(got, [want[0][:, 0], *want[1:]]), ref.tolerance, "batch 2")


Check = Callable[[Reference, ort.InferenceSession, ort.InferenceSession], CheckResult]


def default_checks(step_tokens: int = 1000) -> list[Check]:
    """The checks every export runs (the T values avoid the trace's T=5 and straddle powers of two)."""

    def parallel_vs_torch_fp64(r: Reference, p: ort.InferenceSession, s: ort.InferenceSession) -> CheckResult:
        return check_parallel_vs_torch(r, p, r.lengths(1, 63, 65, 300))

    def step_vs_torch_fp64(r: Reference, p: ort.InferenceSession, s: ort.InferenceSession) -> CheckResult:
        return check_step_vs_torch(r, s)

    def step_vs_parallel(r: Reference, p: ort.InferenceSession, s: ort.InferenceSession) -> CheckResult:
        return check_step_vs_parallel(r, p, s, step_tokens)

    def carried_state(r: Reference, p: ort.InferenceSession, s: ort.InferenceSession) -> CheckResult:
        return check_carried_state(r, p, *r.lengths(97))

    def batch_vs_single(r: Reference, p: ort.InferenceSession, s: ort.InferenceSession) -> CheckResult:
        return check_batch(r, p, s, *r.lengths(41))

    return [parallel_vs_torch_fp64, step_vs_torch_fp64, step_vs_parallel, carried_state, batch_vs_single]


def verify_graphs(
    ref: Reference | CharLM, parallel: bytes, step: bytes, checks: Sequence[Check] | None = None
) -> list[CheckResult]:
    """Run every check; return all results (raise only if ONNX Runtime cannot load a graph).

    A check that errors inside ONNX Runtime (e.g. a graph that only works at one T) counts as failed
    with an infinite difference and the error in its detail.
    """
    ref = ref if isinstance(ref, Reference) else Reference(ref)
    sessions = []
    for kind, graph in (("parallel", parallel), ("step", step)):
        try:
            sessions.append(session(graph))
        except GraphError as exc:
            raise GraphError(f"{kind} graph: {exc}") from exc
    par, stp = sessions
    results = []
    for i, check in enumerate(checks if checks is not None else default_checks()):
        try:
            results.append(check(ref, par, stp))
        except Exception as exc:
            name = getattr(check, "__name__", f"check_{i}")
            detail = f"raised {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            results.append(
                CheckResult(name if name != "<lambda>" else f"check_{i}", "?", float("inf"), ref.tolerance, detail)
            )
    return results


def raise_if_failed(results: Sequence[CheckResult], stage: str) -> None:
    """VerificationError listing every check with its measured max abs difference."""
    if all(r.passed for r in results):
        return
    lines = "; ".join(
        f"{r.name} {'ok' if r.passed else 'FAILED'} (max abs diff {r.max_abs_diff:.3g}, tol {r.tolerance:g}"
        + ("" if r.passed or not r.detail.startswith("raised") else f", {r.detail}")
        + ")"
        for r in results
    )
    raise VerificationError(f"verification of the {stage} graphs failed, nothing written: {lines}")


ACCELERATED = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def check_accelerated_providers(ref: Reference, parallel: bytes) -> dict[str, object]:
    """Where this onnxruntime build has CUDA/TensorRT EPs, run the parallel graph there too (informational:
    GPU kernels may use TF32, so these figures do not gate the export)."""
    available = ort.get_available_providers()
    out: dict[str, object] = {"available": available, "checked": {}}
    for name in (p for p in ACCELERATED if p in available):
        try:
            sess = session(parallel, (name, "CPUExecutionProvider"))
            res = check_parallel_vs_torch(ref, sess, ref.lengths(63, 300))
            out["checked"][name] = {  # type: ignore[index]
                "session_providers": sess.get_providers(),
                "max_abs_diff": res.max_abs_diff,
                "within_1e-4": res.passed,
            }
        except Exception as exc:  # an EP that fails to initialise is a finding, not an export failure
            out["checked"][name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}  # type: ignore[index]
    return out
