"""The CLI boundary itself: usage errors are one line and exit 1; help shows flags without metavars."""

from __future__ import annotations

import subprocess
import sys

import pytest


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rnnedge.cli", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "args",
    [("export",), ("export", "x", "--opset", "seventeen"), ("nosuchcommand",), ("export", "x", "--no-such-flag")],
)
def test_usage_error_is_one_line_exit_1(args):
    res = run_cli(*args)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnedge: error: "), res.stderr
    assert "╭" not in res.stderr and "Traceback" not in res.stderr


def test_help_has_no_bool_metavar_and_bare_command_is_help():
    res = run_cli("export", "--help")
    assert res.returncode == 0 and "--no-simplify" in res.stdout and "<bool>" not in res.stdout
    bare = run_cli()
    assert bare.returncode == 0 and "Commands:" in bare.stdout
