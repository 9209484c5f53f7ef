"""Numbers and a plain-language verdict per drift result (the content of report.json's "models")."""

from __future__ import annotations

from typing import Any

import numpy as np

from rnnedge.quantization.drift import DriftResult
from rnnedge.quantization.fit import fit_growth, log_spaced_steps, value_at

CHECKPOINTS = (10, 100, 1000, 10000)
FLAT_RATIO = 1.5  # err(t_last) <= 1.5 x err(10): "does not grow" (the goal)
COMPOUND_RATIO = 2.0  # accumulated / one-step above this: "the recurrence compounds the error"
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
    for s, name in enumerate(r.state_names):
        acc, one = r.state_err[s].mean(axis=1), r.state_err_one[s].mean(axis=1)
        states.append(
            {
                "name": name,
                "layer": int(name.split(".")[0]),
                "accumulated": {"at": _at(acc), "fit": fit_growth(acc).to_dict()},
                "one_step": {"at": _at(one), "fit": fit_growth(one).to_dict()},
                "accumulation_last": _ratio(value_at(acc, r.steps), value_at(one, r.steps)),
            }
        )
    worst = r.worst_index
    acc, one = r.worst_state, r.worst_state_one
    ts = log_spaced_steps(r.steps, CURVE_POINTS)
    quant = r.quantization or {}
    return {
        "name": r.name,
        "folder": r.folder,
        "fp32_graph": r.fp32_path,
        "int8_graph": r.int8_path,
        "arch": r.arch,
        "config": r.config,
        "quantization": r.quantization,
        "method": str(quant.get("method", "unknown")),
        "steps": r.steps,
        "streams": r.streams,
        "offsets": list(r.offsets),
        "seconds": round(r.seconds, 3),
        "notes": list(r.notes),
        "loss": {
            "fp32_nats_per_char": r.loss_fp32,
            "int8_nats_per_char": r.loss_int8,
            "delta_nats_per_char": r.loss_int8 - r.loss_fp32,
        },
        "state_error": {
            "worst_state": r.state_names[worst],
            "at": _at(acc),
            "one_step_at": _at(one),
            "fit": fit_growth(acc).to_dict(),
            "accumulation_last": _ratio(value_at(acc, r.steps), value_at(one, r.steps)),
        },
        "states": states,
        "kl_mean": float(r.kl.mean()),
        "kl_one_step_mean": float(r.kl_one.mean()),
        "max_abs_logit_mean": float(r.logit_err.mean()),
        "max_abs_logit_max": float(r.logit_err.max()),
        "top1_agreement": float(r.top1.mean()),
        "free_running": {
            "prompt": r.free.prompt,
            "steps": r.free.steps,
            "diverged_at": r.free.diverged_at,
            "fp32_text": r.free.fp32_text[:TEXT_CHARS],
            "int8_text": r.free.int8_text[:TEXT_CHARS],
        },
        "curves": {
            "t": [int(t) for t in ts],
            "state_error": {n: _stats(r.state_err[s], ts) for s, n in enumerate(r.state_names)},
            "state_error_one_step": {n: _stats(r.state_err_one[s], ts) for s, n in enumerate(r.state_names)},
            "kl": _stats(r.kl, ts),
            "kl_one_step": _stats(r.kl_one, ts),
            "max_abs_logit": _stats(r.logit_err, ts),
            "top1_agreement": _r(r.top1.mean(axis=1)[ts - 1]),
            "nll_delta": _r((r.nll_int8 - r.nll_fp32).mean(axis=1)[ts - 1]),
        },
    }


def verdict(m: dict[str, Any]) -> str:
    """A few plain sentences generated from one summarize() entry."""
    se, loss = m["state_error"], m["loss"]
    fit, t_last = se["fit"], m["steps"]
    where = f"worst state: layer {se['worst_state'].replace('.', ' ')}"
    if fit["err_last"] == 0 and fit["saturation_level"] == 0:
        parts = [f"The int8 graph reproduces the fp32 states exactly over {t_last} steps"]
    elif fit["growth_ratio"] is not None and fit["growth_ratio"] <= FLAT_RATIO:
        parts = [
            f"State error saturates at {fit['saturation_level']:.1e} "
            + ("from the first step " if fit["saturation_step"] <= 1 else f"after ~{fit['saturation_step']} steps ")
            + f"and stays there (t={t_last}: {fit['err_last']:.1e}, {fit['growth_ratio']:.2f}x its value at t=10; "
            f"{where})"
        ]
    else:
        alpha = f"t^{fit['alpha']:.2f}" if fit["alpha"] is not None else "t"
        grow = f"x{fit['growth_ratio']:.1f}" if fit["growth_ratio"] is not None else "from zero"
        parts = [
            f"State error keeps growing, roughly as {alpha} ({grow} from t=10 to t={t_last}, "
            f"reaching {fit['err_last']:.1e}; {where})"
        ]
    d = loss["delta_nats_per_char"]
    parts.append(
        f"int8 costs {d:+.4f} nats/char ({loss['fp32_nats_per_char']:.4f} -> {loss['int8_nats_per_char']:.4f})"
    )
    acc = se["accumulation_last"]
    if acc is not None:
        if acc <= COMPOUND_RATIO:
            parts.append(f"the recurrence does not compound the error (accumulated/one-step = {acc:.1f} at t={t_last})")
        else:
            parts.append(f"the recurrence compounds the error (accumulated/one-step = {acc:.1f} at t={t_last})")
    parts.append(f"top-1 agreement {m['top1_agreement']:.2%}")
    fr = m["free_running"]
    if fr["diverged_at"] is None:
        parts.append(f"greedy int8 text matches fp32 for all {fr['steps']} generated characters")
    else:
        parts.append(f"greedy int8 text first differs from fp32 at generated character {fr['diverged_at']}")
    return parts[0] + "; " + "; ".join(parts[1:]) + "."
