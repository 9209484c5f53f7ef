"""Per-node sensitivity and the loss-delta budget.

Leave-one-out: the loss delta of the variant when only one node (or one layer's nodes) is kept in
float; the gain is how much of the full variant's loss delta that removes. Works for every recipe: it
only asks the recipe's builder for variants with other nodes kept float. The budget loop keeps the most
sensitive groups float, one at a time, until the measured delta is within `--max-loss-delta`.
Evaluated on a short held-out slice with the graph run in batch streams, so it stays affordable.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from rnnedge.errors import VerificationError
from rnnedge.quantization import loss
from rnnedge.quantization.builder import VariantBuilder

MAX_SINGLE_NODES = 16  # above this many quantizable nodes, sensitivity is measured per layer


@dataclass(frozen=True)
class Sensitivity:
    group: str
    nodes: tuple[str, ...]
    delta_kept_float: float  # variant loss delta with this group kept in fp32 (leave-one-out)
    gain: float  # full variant delta minus delta_kept_float: what keeping it float buys

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def group_nodes(names: list[str], labels: dict[str, str]) -> dict[str, list[str]]:
    """One group per node (named by its label), or per layer (`blocks.N` in the label) when there are many."""
    if len(names) <= MAX_SINGLE_NODES:
        return {labels.get(n, n): [n] for n in names}
    groups: dict[str, list[str]] = {}
    for n in names:
        m = re.search(r"blocks[./](\d+)", labels.get(n, n))
        groups.setdefault(f"layer {m.group(1)}" if m else labels.get(n, n), []).append(n)
    return groups


def rank_nodes(
    builder: VariantBuilder,
    ids: np.ndarray,
    loss_fp32: float,
    base: list[str],
    log: Callable[[str], None] | None = None,
) -> tuple[float, list[Sensitivity]]:
    """(delta with only `base` kept float, leave-one-out sensitivities sorted by gain, largest first)."""
    info = builder.info
    full = loss.held_out_loss(builder.build(base), ids) - loss_fp32
    ranked = []
    for group, nodes in group_nodes([c for c in builder.candidates if c not in base], builder.labels).items():
        delta = loss.held_out_loss(builder.build(base + nodes), ids) - loss_fp32
        ranked.append(Sensitivity(group, tuple(nodes), delta, full - delta))
        if log:
            log(f"  {info.kind}: keep {group} float -> delta {delta:+.5f}")
    ranked.sort(key=lambda s: s.gain, reverse=True)
    return full, ranked


def fit_budget(
    builder: VariantBuilder,
    eval_ids: np.ndarray,
    slice_ids: np.ndarray,
    loss_fp32: float,
    loss_fp32_slice: float,
    budget: float,
    base: list[str],
    log: Callable[[str], None] | None = None,
) -> tuple[list[str], list[str], float, list[Sensitivity]]:
    """Keep the most sensitive groups float until the held-out delta <= budget.

    Returns (all kept-float nodes, groups added by the budget, final delta, the ranking).
    Raises VerificationError when only keeping every quantizable node float would meet the budget
    (that variant would quantize nothing: docs/quantization.md calls an unmeetable budget an error).
    """
    _, ranked = rank_nodes(builder, slice_ids, loss_fp32_slice, base, log)
    kept, added = list(base), []
    delta = best = float("inf")
    for s in ranked:
        kept += list(s.nodes)
        added.append(s.group)
        if set(builder.candidates) <= set(kept):  # nothing left to quantize: not a variant
            break
        delta = loss.held_out_loss(builder.build(kept), eval_ids) - loss_fp32
        best = min(best, delta)
        if log:
            log(f"  {builder.info.kind}: + keep {s.group} float -> held-out delta {delta:+.5f}")
        if delta <= budget:
            return kept, added, delta, ranked
    tried = f"best {best:+.5f} nats/char with one node still converted" if best < float("inf") else "no node to keep"
    raise VerificationError(
        f"{builder.info.kind}: {builder.recipe.name} cannot meet --max-loss-delta {budget}: only keeping every "
        f"quantizable node float would, and that leaves nothing quantized ({tried}); nothing written"
    )
