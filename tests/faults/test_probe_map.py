"""tests/faults/PROBES.md accounts for issue 19's reproductions one by one: every test it cites must be
a real test function in the file it names (a renamed or deleted test breaks the accounting here)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBES = Path(__file__).with_name("PROBES.md")
CITED = re.compile(r"(tests/[\w/]+\.py)::(\w+)")


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}


def test_every_test_the_probe_map_cites_exists() -> None:
    cited = CITED.findall(PROBES.read_text(encoding="utf-8"))
    assert len(cited) >= 20, "the probe map cites almost no tests"
    missing = [f"{f}::{t}" for f, t in cited if not (ROOT / f).is_file() or t not in _tests_in(ROOT / f)]
    assert not missing, f"PROBES.md cites tests that do not exist: {missing}"
