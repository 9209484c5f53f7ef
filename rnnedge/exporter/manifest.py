"""manifest.json for an export folder, and the all-or-nothing write of the folder's files."""

from __future__ import annotations

import contextlib
import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import onnx

from rnnedge import __version__, ownership
from rnnedge.commit import commit_tree, roll_forward
from rnnedge.errors import RnnedgeError, WriteError
from rnnedge.exporter import mobile, qnn_htp
from rnnedge.exporter import verify as vfy
from rnnedge.graphmeta import FP32, MANIFEST, graph_file, list_variants
from rnnedge.graphweights import WEIGHTS_KEY, weights_sha256
from rnnedge.io import json_text
from rnnedge.outlock import remove_stale_temps, writer_lock
from rnnedge.tensorrt_rules import check_tensorrt
from rnnedge.training.checkpoint import Checkpoint

MANIFEST_FORMAT = "rnnedge-export"
# Files in an export folder derived from the graphs (besides every precision variant's graph files and
# their .ort copies): an older copy is stale after a re-export.
DERIVED = ("parallel.ort", "step.ort", "required_operators.config")


@dataclass
class GraphRecord:
    """What happened to one graph during the export."""

    kind: str
    model: onnx.ModelProto
    data: bytes
    nodes_before: int
    trace_seconds: float
    simplify_seconds: float = 0.0
    simplified: dict[str, Any] = field(default_factory=lambda: {"applied": False, "reason": "not attempted"})


def op_types(model: onnx.ModelProto) -> dict[str, int]:
    """Op type -> count, sorted by op type."""
    return dict(sorted(Counter(n.op_type for n in model.graph.node).items()))


def _graph_entry(rec: GraphRecord, opset: int, results: list[vfy.CheckResult]) -> dict[str, Any]:
    return {
        "file": graph_file(rec.kind),
        "opset": opset,
        "nodes": len(rec.model.graph.node),
        "nodes_before_simplify": rec.nodes_before,
        "nodes_after_simplify": len(rec.model.graph.node),
        "simplified": rec.simplified,
        "op_types": op_types(rec.model),
        "size_bytes": len(rec.data),
        "sha256": hashlib.sha256(rec.data).hexdigest(),
        "export_seconds": round(rec.trace_seconds + rec.simplify_seconds, 3),
        "trace_seconds": round(rec.trace_seconds, 3),
        "simplify_seconds": round(rec.simplify_seconds, 3),
        "verification": {r.name: r.max_abs_diff for r in results if rec.kind in r.graph.split("+")},
    }


def build_manifest(
    loaded: Checkpoint,
    opset: int,
    max_seq_len: int,
    levels: int,
    records: dict[str, GraphRecord],
    results: list[vfy.CheckResult],
    verified: bool,
    timings: dict[str, float],
    providers: dict[str, Any],
) -> dict[str, Any]:
    lm = loaded.model
    problems = check_tensorrt(records["parallel"].model)
    return {
        "format": MANIFEST_FORMAT,
        "format_version": 2,
        "rnnedge_version": __version__,
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": {
            "checkpoint": str(Path(loaded.path).resolve()) if loaded.path else None,
            "val_loss": loaded.val_loss,
            "arch": lm.config.arch,
            "config": lm.config.to_dict(),
            "params": lm.num_params(),
        },
        "opset": opset,
        "max_seq_len": max_seq_len,
        "scan_levels": levels,
        "graphs": {k: _graph_entry(rec, opset, results) for k, rec in records.items()},
        WEIGHTS_KEY: weights_sha256(records["step"].model),
        "verification": {
            "run": verified,
            "passed": verified and all(r.passed for r in results),
            "provider": "CPUExecutionProvider",
            "tolerance": vfy.tolerance(lm),
            "checks": [r.to_dict() for r in results],
        },
        "timings_seconds": {k: round(v, 3) for k, v in timings.items()},
        "providers": providers,
        "tensorrt": {
            "graph": "parallel",
            "ok": not problems,
            "problems": problems,
            "note": "static check against TensorRT 10 ONNX-parser rules; TensorRT itself was not run",
        },
    }


def stale_files(out_dir: Path) -> list[Path]:
    """What a re-export makes stale in out_dir: every precision variant's graphs (and .ort copies) and
    the derived files, all written by rnnedge (graph_file / split_graph_file name them)."""
    paths = [p for variant, kinds in list_variants(out_dir).items() if variant != FP32 for p in kinds.values()]
    paths += [p.with_suffix(".ort") for p in paths if p.with_suffix(".ort").exists()]
    return paths + [out_dir / n for n in DERIVED if (out_dir / n).exists()] + mobile.stale_files(out_dir)


def write_export(out_dir: Path, files: dict[Path, bytes], manifest: dict[str, Any], *, overwrite: bool = False) -> None:
    """Write every file, the manifest and the ledger, and drop the stale variants and derived files, as
    one unit (rnnedge/commit.py: all old or all new after a kill anywhere). Under the writer lock; only files the
    folder's ledger proves rnnedge wrote are replaced or removed (rnnedge/ownership.py): a stale file of
    the earlier export that is not provably rnnedge's is refused in one line (with `overwrite`: kept,
    and listed as `kept_not_ours` in the manifest). The qnn-htp/ folder's variants of the older model
    are rnnedge's when its own ledger (quantize wrote them) or the export's proves it.
    A failed write (a full disk) leaves out_dir as it was."""
    with writer_lock(out_dir):
        if out_dir.is_dir():
            roll_forward(out_dir)  # a commit a killed run left is finished first
        ledger = ownership.check_folder(out_dir, overwrite=overwrite)
        rels = {p.relative_to(out_dir).as_posix(): blob for p, blob in files.items()}
        ownership.check_replaceable(ledger, [*rels, MANIFEST], overwrite=overwrite)
        named = [p.relative_to(out_dir).as_posix() for p in stale_files(out_dir) if p not in files]
        stale = ownership.removable(ledger, named)
        htp_dir = out_dir / qnn_htp.HTP_DIR
        htp_ledger = ownership.read_ledger(htp_dir) if htp_dir.is_dir() else None
        htp_named = [p.relative_to(out_dir).as_posix() for p in qnn_htp.stale_files(out_dir) if p not in files]
        htp_stale = [
            rel for rel in htp_named if ledger.owns(rel) or (htp_ledger is not None and htp_ledger.owns(Path(rel).name))
        ]
        kept = sorted((set(named) - set(stale)) | (set(htp_named) - set(htp_stale)))
        if kept and not overwrite:
            raise RnnedgeError(
                f"{out_dir / kept[0]} would be stale after this export, but rnnedge cannot prove it wrote it "
                "(not in the folder's ledger, or changed since); move it, choose another --out or pass --overwrite"
            )
        if kept:
            manifest["kept_not_ours"] = kept  # --overwrite: files rnnedge cannot prove it wrote stay
        remove_stale_temps(out_dir, [*rels, MANIFEST, ownership.LEDGER])
        if stale:
            manifest["removed_stale"] = stale
        if htp_stale:  # not under removed_stale: that key lists plain names of this folder (variant_files.py)
            manifest["qnn_htp_removed_stale"] = [Path(rel).name for rel in htp_stale]
        manifest_bytes = json_text(manifest).encode("utf-8")
        new = {rel: ownership.entry_of(blob) for rel, blob in rels.items()}
        new[MANIFEST] = ownership.entry_of(manifest_bytes)
        gone = [*stale, *htp_stale]
        ledger_bytes = ownership.ledger_bytes(ownership.final(ledger, new, gone))
        try:  # one unit (rnnedge/commit.py): the old variants go, the graphs come, the manifest last
            commit_tree(out_dir, {**rels, MANIFEST: manifest_bytes}, gone, ledger_bytes)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise WriteError(f"cannot write {out_dir}: {reason}", reason) from None
    with contextlib.suppress(OSError):
        (out_dir / mobile.MOBILE_DIR).rmdir()  # only when a re-export without --target mobile emptied it
    with contextlib.suppress(OSError):
        (out_dir / qnn_htp.HTP_DIR).rmdir()  # likewise for --target qnn-htp
