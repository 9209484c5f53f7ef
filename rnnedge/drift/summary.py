"""Numbers and a plain-language verdict per drift result (the content of report.json's "models")."""

from __future__ import annotations

from typing import Any

import numpy as np

from rnnedge.drift.fit import fit_growth, log_spaced_steps, value_at
from rnnedge.drift.result import DriftResult

CHECKPOINTS = (10, 100, 1000, 10000)
FLAT_RATIO = 1.5  # err(t_last) <= 1.5 x err(10): "does not grow" (the goal)
COMPOUND_RATIO = 2.0  # accumulated / one-step above this: "the recurrence compounds the error"
NOISE_SE = 2.0  # a loss delta within 2 standard errors of zero is "within noise"
CURVE_POINTS = 60
TEXT_CHARS = 80


def _at(curve: np.ndarray) -> dict[str, float]:
    out = {str(t): value_at(curve, t) for t in CHECKPOINTS if t <= len(curve)}
    out["last"] = value_at(curve, len(curve))
    return out


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def _r(values: np.ndarray) -> list[float]:
    return [float(f"{x:.4g}") for x in values]


def _stats(values: np.ndarray, ts: np.ndarray) -> dict[str, list[float]]:
    v = np.asarray(values, np.float64)  # (T, B)
    return {"mean": _r(v.mean(axis=1)[ts - 1]), "p90": _r(np.percentile(v[ts - 1], 90, axis=1))}


def summarize(r: DriftResult) -> dict[str, Any]:
    """The report.json entry of one model (schema in docs/drift.md)."""
    states = []
    for s, state in enumerate(r.states):
        acc, one = r.state_err[s].mean(axis=1), r.state_err_one[s].mean(axis=1)
        states.append(
            {
                "name": state.name,
                "layer": state.layer,
                "shape": list(state.shape),
                "dtype": state.dtype,
                "kind": state.kind,
                "accumulated": {"at": _at(acc), "fit": fit_growth(acc).to_dict()},
                "one_step": {"at": _at(one), "fit": fit_growth(one).to_dict()},
                "accumulation_last": _ratio(value_at(acc, r.steps), value_at(one, r.steps)),
            }
        )
    worst = r.worst_index
    acc, one = r.worst_state, r.worst_state_one
    ts = log_spaced_steps(r.steps, CURVE_POINTS)
    delta, stderr = r.loss_delta()
    return {
        "name": r.name,
        "folder": r.folder,
        "baseline": r.baseline.to_dict(),
        "variant": r.variant.to_dict(),
        "arch": r.arch,
        "config": r.config,
        "steps": r.steps,
        "steps_requested": r.steps_requested,
        "streams": r.streams,
        "offsets": list(r.offsets),
        "seconds": round(r.seconds, 3),
        "notes": list(r.notes),
        "loss": {
            "baseline_nats_per_char": r.loss_baseline,
            "variant_nats_per_char": r.loss_variant,
            "delta_nats_per_char": delta,
            "delta_stderr_nats_per_char": stderr,
            "chars": r.steps * r.streams,  # scored: the drift streams (streams x steps), not the whole text
        },
        "state_error": {
            "worst_state": r.state_names[worst],
            "at": _at(acc),
            "one_step_at": _at(one),
            "fit": fit_growth(acc).to_dict(),
            "accumulation_last": _ratio(value_at(acc, r.steps), value_at(one, r.steps)),
        },
        "states": states,
        "exact_states": [
            {"name": x.name, "shape": list(x.shape), "dtype": x.dtype, "kind": x.kind} for x in r.exact_states
        ],
        "kl_mean": float(r.kl.mean()),
        "kl_one_step_mean": float(r.kl_one.mean()),
        "max_abs_logit_mean": float(r.logit_err.mean()),
        "max_abs_logit_max": float(r.logit_err.max()),
        "top1_agreement": float(r.top1.mean()),
        "free_running": {
            "prompt": r.free.prompt,
            "steps": r.free.steps,
            "diverged_at": r.free.diverged_at,
            "baseline_text": r.free.baseline_text[:TEXT_CHARS],
            "variant_text": r.free.variant_text[:TEXT_CHARS],
        },
        "curves": {
            "t": [int(t) for t in ts],
            "state_error": {n: _stats(r.state_err[s], ts) for s, n in enumerate(r.state_names)},
            "state_error_one_step": {n: _stats(r.state_err_one[s], ts) for s, n in enumerate(r.state_names)},
            "kl": _stats(r.kl, ts),
            "kl_one_step": _stats(r.kl_one, ts),
            "max_abs_logit": _stats(r.logit_err, ts),
            "top1_agreement": _r(r.top1.mean(axis=1)[ts - 1]),
            "nll_delta": _r((r.nll_variant - r.nll_baseline).mean(axis=1)[ts - 1]),
        },
    }


def loss_sentence(m: dict[str, Any]) -> str:
    """How the variant's loss compares with the baseline's, with the noise of the estimate."""
    loss, base, var = m["loss"], m["baseline"]["variant"], m["variant"]["variant"]
    d, se = loss["delta_nats_per_char"], loss["delta_stderr_nats_per_char"]
    both = f"{loss['baseline_nats_per_char']:.4f} -> {loss['variant_nats_per_char']:.4f}"
    noise = f"2 s.e. = {NOISE_SE * se:.4f}"
    where = f"on the drift streams: {scored_on(m)}"
    if d == 0:
        return f"{var} has exactly the loss of {base} ({loss['baseline_nats_per_char']:.4f} nats/char {where})"
    if d < 0:
        kind = "an improvement within noise" if -d <= NOISE_SE * se else "an improvement beyond the noise"
        return f"{var} is {-d:.4f} nats/char better than {base}: {kind} ({both} {where}; {noise})"
    within = ", within noise" if d <= NOISE_SE * se else ""
    return f"{var} costs {d:.4f} nats/char more than {base}{within} ({both} {where}; {noise})"


def scored_on(m: dict[str, Any], data: str | None = None) -> str:
    """Which characters a drift loss figure is on: `8 streams x 2,048 steps = 16,384 chars [of DATA]`."""
    of = f" of {data}" if data else ""
    return f"{m['streams']} streams × {m['steps']:,} steps = {m['streams'] * m['steps']:,} chars{of}"


def verdict(m: dict[str, Any]) -> str:
    """A few plain sentences generated from one summarize() entry."""
    se = m["state_error"]
    base, var = m["baseline"]["variant"], m["variant"]["variant"]
    fit, t_last = se["fit"], m["steps"]
    where = f"worst state: layer {se['worst_state'].replace('.', ' ')}"
    if fit["err_last"] == 0 and fit["saturation_level"] == 0:
        parts = [f"The {var} graph reproduces the {base} states exactly over {t_last} steps"]
    elif fit["growth_ratio"] is not None and fit["growth_ratio"] <= FLAT_RATIO:
        parts = [
            f"State error ({var} vs {base}) saturates at {fit['saturation_level']:.1e} "
            + ("from the first step " if fit["saturation_step"] <= 1 else f"after ~{fit['saturation_step']} steps ")
            + f"and stays there (t={t_last}: {fit['err_last']:.1e}, {fit['growth_ratio']:.2f}x its value at t=10; "
            f"{where})"
        ]
    else:
        alpha = f"t^{fit['alpha']:.2f}" if fit["alpha"] is not None else "t"
        grow = f"x{fit['growth_ratio']:.1f}" if fit["growth_ratio"] is not None else "from zero"
        parts = [
            f"State error ({var} vs {base}) keeps growing, roughly as {alpha} ({grow} from t=10 to t={t_last}, "
            f"reaching {fit['err_last']:.1e}; {where})"
        ]
    parts.append(loss_sentence(m))
    acc = se["accumulation_last"]
    if acc is not None:
        if acc <= COMPOUND_RATIO:
            parts.append(f"the recurrence does not compound the error (accumulated/one-step = {acc:.1f} at t={t_last})")
        else:
            parts.append(f"the recurrence compounds the error (accumulated/one-step = {acc:.1f} at t={t_last})")
    parts.append(f"top-1 agreement {m['top1_agreement']:.2%}")
    fr = m["free_running"]
    if fr["diverged_at"] is None:
        parts.append(f"greedy {var} text matches {base} for all {fr['steps']} generated characters")
    else:
        parts.append(f"greedy {var} text first differs from {base} at generated character {fr['diverged_at']}")
    if m["exact_states"]:
        names = ", ".join(x["name"] for x in m["exact_states"])
        parts.append(f"integer/position states ({names}) matched exactly at every step")
    return parts[0] + "; " + "; ".join(parts[1:]) + "."
