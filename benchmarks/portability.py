"""The portability matrix: runtime × graph × recipe -> loads, parity, speed ratio, from the benchmarks' JSON.

Reads whichever of these exist in benchmarks/results/ (nothing is measured here):
  runtimes.json         ONNX Runtime, OpenVINO, tract on every exported graph (benchmarks/runtimes.py)
  litert.json           LiteRT on its own conversion (the litert target's benchmark), cells of the same form
  executorch_peer.json  ExecuTorch + XNNPACK fp32 / int8-dynamic, parity vs PyTorch (benchmarks/executorch_peer.py)
  peer_speed.json       every runtime's step, one process, interleaved (benchmarks/peer_speed.py): the speed
                        ratios of step-graph cells come from here when it has them (same run, same load)
Writes benchmarks/results/portability.json (the cells, where each figure came from, machine and load of each
source) and prints the Markdown table the README's "Portability" section holds:

    python benchmarks/portability.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rnnedge.io import write_json  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SOURCES = ("runtimes", "litert", "executorch_peer", "peer_speed")
RUNTIME_NAMES = {"cpu": "rnnedge (ORT)", "rnnedge": "rnnedge (ORT)", "openvino": "OpenVINO", "tract": "tract",
                 "litert": "LiteRT", "executorch": "ExecuTorch"}  # fmt: skip
COLUMNS = ("rnnedge (ORT)", "OpenVINO", "tract", "LiteRT", "ExecuTorch")


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def onnx_cells(data: dict[str, Any], source: str) -> list[dict[str, Any]]:
    """Cells of runtimes.json / litert.json: {runtime, graph, recipe, loads, max_abs_dlogit, top1, ratio, error}."""
    out = []
    for c in data.get("cells", []):
        cell = {k: c.get(k) for k in ("runtime", "graph", "recipe", "loads", "max_abs_dlogit", "top1", "error")}
        cell.update(runtime=RUNTIME_NAMES.get(c.get("runtime", ""), c.get("runtime")), ratio=c.get("ratio"),
                    source=source)  # fmt: skip
        out.append(cell)
    return out


def executorch_cells(data: dict[str, Any]) -> list[dict[str, Any]]:
    """ExecuTorch's two lowerings of the step, parity vs PyTorch fp32 (its own reference: no ONNX file)."""
    out = []
    for recipe in ("fp32", "int8-dynamic"):
        parity = data["parity_vs_pytorch_fp32"][f"executorch-{recipe}"]
        speed = data["speed"][f"executorch-{recipe}"]
        out.append({"runtime": "ExecuTorch", "graph": "step", "recipe": recipe, "loads": True,
                    "max_abs_dlogit": parity["max_abs_dlogit"], "top1": parity["top1"],
                    "ratio": speed["ratio_vs_rnnedge_fp32"], "source": "executorch_peer",
                    "parity_vs": "PyTorch fp32 eager"})  # fmt: skip
    return out


def apply_peer_speed(cells: list[dict[str, Any]], data: dict[str, Any]) -> None:
    """Step-graph speed ratios from peer_speed.json (one process, interleaved); rows it adds if missing."""
    for p in data.get("cells", []):
        if p["runtime"] == "rnnedge-option":  # ORT session options on fp32: in peer_speed.json, not a recipe
            continue
        runtime = RUNTIME_NAMES.get(p["runtime"], p["runtime"])
        match = [c for c in cells if c["runtime"] == runtime and c["graph"] == "step" and c["recipe"] == p["recipe"]]
        if not match:
            agree = p.get("vs_rnnedge_fp32", {})
            match = [
                {
                    "runtime": runtime,
                    "graph": "step",
                    "recipe": p["recipe"],
                    "loads": True,
                    "max_abs_dlogit": agree.get("max_abs_dlogit") if runtime != "rnnedge (ORT)" else 0.0,
                    "top1": agree.get("top1") if runtime != "rnnedge (ORT)" else 1.0,
                    "source": "peer_speed",
                }
            ]
            cells.extend(match)
        match[0].update(ratio=p["ratio"], ratio_source="peer_speed")


def matrix() -> dict[str, Any]:
    found = {name: load(name) for name in SOURCES}
    cells: list[dict[str, Any]] = []
    for name in ("runtimes", "litert"):
        if found[name]:
            cells += onnx_cells(found[name], name)
    if found["executorch_peer"]:
        cells += executorch_cells(found["executorch_peer"])
    if found["peer_speed"]:
        apply_peer_speed(cells, found["peer_speed"])
    envs = {name: d.get("env", {}) for name, d in found.items() if d}
    loads = {
        name: {k: d[k] for k in d if k.startswith("load_avg")}
        | {k: v for k, v in d.get("env", {}).items() if k.startswith("load_avg")}
        for name, d in found.items()
        if d
    }
    return {
        "sources": {n: d is not None for n, d in found.items()},
        "env": envs,
        "load": loads,
        "cells": cells,
        "verdict": (found["peer_speed"] or {}).get("verdict"),
        "litert_note": None if found["litert"] else "LiteRT: not measured here (no benchmarks/results/litert.json)",
    }


def cell_text(c: dict[str, Any] | None) -> str:
    if c is None:
        return "–"
    if not c.get("loads"):
        return f"✗ {str(c.get('error') or 'fails')[:40]}"
    parts = ["✓"]
    if c.get("max_abs_dlogit") is not None:
        parts.append(f"{c['max_abs_dlogit']:.2g}")
    if c.get("top1") is not None and c["top1"] < 1:
        parts.append(f"top-1 {c['top1']:.1%}")
    if c.get("ratio") is not None:
        parts.append(f"**{c['ratio']:.2f}×**")
    return " ".join(parts)


def markdown(result: dict[str, Any]) -> str:
    cells = result["cells"]
    rows = sorted(
        {(c["graph"], c["recipe"]) for c in cells}, key=lambda gr: (gr[0] != "step", gr[0], gr[1] != "fp32", gr[1])
    )
    columns = [c for c in COLUMNS if any(x["runtime"] == c for x in cells)]
    lines = ["| graph | recipe | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for graph, recipe in rows:
        found = {c["runtime"]: c for c in cells if c["graph"] == graph and c["recipe"] == recipe}
        lines.append(f"| `{graph}` | {recipe} | " + " | ".join(cell_text(found.get(col)) for col in columns) + " |")
    return "\n".join(lines)


def main() -> None:
    result = matrix()
    write_json(RESULTS / "portability.json", result)
    print(markdown(result))
    if result["litert_note"]:
        print(f"\n{result['litert_note']}")
    if result["verdict"]:
        print(f"\nverdict: {json.dumps(result['verdict'], ensure_ascii=False)}")
    print(f"load: {json.dumps(result['load'])}")


if __name__ == "__main__":
    main()
