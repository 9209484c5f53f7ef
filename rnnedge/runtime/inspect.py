"""`rnnedge inspect`: what an export folder (or one graph file) holds, read from the graphs themselves.

For every graph: its inputs and outputs (name, dtype, shape), the state contract (each state's shape,
dtype, role and bytes per stream), the model config and vocabulary size from the metadata, and per
precision variant the file sizes and what the recipe recorded (loss delta, what stayed float).
ONNX Runtime + NumPy only, like the rest of rnnedge.runtime.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rnnedge.errors import GraphError
from rnnedge.graphmeta import GRAPH_KINDS, MANIFEST, list_variants, split_graph_file
from rnnedge.inference import open_graph
from rnnedge.inference.files import changed_since_export

ATTENTION = ("transformer", "aaren")  # archs whose n_heads / window mean something
QUANT_KEYS = ("loss_fp32", "loss_variant", "loss_delta", "eval_source", "converted_nodes", "kept_float_labels")


def _graph(path: Path, kind: str | None) -> dict[str, Any]:
    graph = open_graph(path, kind if kind in GRAPH_KINDS else None, threads=1, spinning=False)
    info = graph.info
    io = [
        {"name": n, "type": t.removeprefix("tensor(").removesuffix(")"), "shape": list(s)}
        for n, t, s in graph.signature()
    ]
    n_in = len(graph.session.get_inputs())
    quant = {k: info.quantization[k] for k in QUANT_KEYS if k in info.quantization} if info.quantization else None
    return {
        "file": path.name,
        "kind": info.kind,
        "variant": info.variant,
        "bytes": path.stat().st_size,
        "inputs": io[:n_in],
        "outputs": io[n_in:],
        "states": [
            {"name": s.name, "shape": list(s.shape), "dtype": s.dtype, "kind": s.kind, "bytes": s.nbytes_per_stream()}
            for s in info.states
        ],
        "state_bytes_per_stream": info.state_bytes_per_stream(),
        "max_seq_len": info.max_seq_len,
        "recipe": info.recipe,
        "quantization": quant,
        "config": info.config,
        "vocab_size": len(info.vocab),
        "version": info.version,
        "ids_dtype": graph.ids_dtype.name,
        "fixed_batch": graph.fixed_batch,
        "changed_since_export": changed_since_export(path),  # None, or the one line saying so
    }


def inspect_export(path: str | Path) -> dict[str, Any]:
    """{path, arch, config, vocab_size, version, variants: {name: {kind: graph}}, manifest keys} of an
    export folder or one .onnx/.ort graph file; GraphError if it holds no rnnedge graph."""
    root = Path(path)
    if root.is_file():
        split = split_graph_file(root.name)
        variants = {split[1] if split else "?": {split[0] if split else "graph": root}}
    elif root.is_dir():
        variants = list_variants(root)
    else:
        raise GraphError(f"not found: {root}")
    if not variants:
        raise GraphError(f"{root} holds no rnnedge graph (step.onnx, parallel.onnx; run `rnnedge export` first)")
    graphs = {v: {k: _graph(p, k) for k, p in sorted(kinds.items())} for v, kinds in variants.items()}
    first = next(iter(next(iter(graphs.values())).values()))
    manifest_path = root / MANIFEST if root.is_dir() else None
    manifest = {}
    if manifest_path is not None and manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise GraphError(f"{manifest_path} is not readable JSON: {exc}") from None
    extra = sorted(p.name for p in root.iterdir() if p.suffix == ".ort") if root.is_dir() else []
    return {
        "path": str(root),
        "arch": first["config"].get("arch", "?"),
        "config": first["config"],
        "vocab_size": first["vocab_size"],
        "version": first["version"],
        "variants": graphs,
        "ort_files": extra,
        "manifest_variants": sorted(manifest.get("variants", {})) if isinstance(manifest, dict) else [],
    }


def _shape(shape: list[Any]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def format_inspect(report: dict[str, Any]) -> str:
    """The human-readable form of `inspect_export`'s report."""
    cfg = report["config"]
    keys = ("n_layers", "d_model", "expansion", *(("n_heads", "window") if cfg.get("arch") in ATTENTION else ()))
    size = ", ".join(f"{k} {cfg[k]}" for k in keys if k in cfg)
    lines = [f"{report['path']}: {report['arch']} ({size}), vocabulary {report['vocab_size']} chars, "
             f"exported by rnnedge {report['version']}"]  # fmt: skip
    lines.append("variants:")
    for name, kinds in report["variants"].items():
        files = ", ".join(f"{g['file']} {g['bytes'] / 1e3:.0f} kB" for g in kinds.values())
        lines.append(f"  {name:<14} {files}")
        for kind, g in kinds.items():
            q = g["quantization"]
            if q and "loss_delta" in q:
                kept = ", ".join(q.get("kept_float_labels") or []) or "none"
                lines.append(
                    f"  {'':<14}   {kind}: loss {q['loss_fp32']:.4f} -> {q['loss_variant']:.4f} nats/char "
                    f"({q['loss_delta']:+.5f}) on {q.get('eval_source', '?')}; kept float: {kept}"
                )
    fp32 = next(iter(report["variants"].values()))
    for kind, g in fp32.items():
        depth = f", exact up to T = {g['max_seq_len']:,}" if g["max_seq_len"] else ""
        lines.append(f"{kind} graph ({g['file']}{depth}):")
        for label, items in (("inputs", g["inputs"]), ("outputs", g["outputs"])):
            lines.append(f"  {label}:")
            lines += [f"    {a['name']:<24} {a['type']:<8} {_shape(a['shape'])}" for a in items]
    states = next(iter(fp32.values()))
    lines.append(f"states ({states['state_bytes_per_stream']:,} bytes per stream):")
    lines += [
        f"  {s['name']:<10} {s['kind']:<9} {s['dtype']:<8} {_shape(s['shape']):<24} {s['bytes']:,} B/stream"
        for s in states["states"]
    ]
    if report["ort_files"]:
        lines.append("ORT format files: " + ", ".join(report["ort_files"]))
    changed = [g["changed_since_export"] for k in report["variants"].values() for g in k.values()]
    lines += [f"changed: {note}" for note in changed if note]
    lines.append("config: " + json.dumps(cfg, sort_keys=True))
    return "\n".join(lines)
