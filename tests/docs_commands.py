"""The `rnnedge ...` commands of README.md and docs/*.md: found, cleaned up, and made cheap to run.

Used by tests/test_docs_commands.py (no tests here). A fenced ```bash block's lines are joined at `\\`,
comments dropped, `[optional parts]` kept, `a|b` alternatives reduced to the first, and the docs'
placeholders (EXPORT_DIR, NAME, PATH, ...) given a value. `cheap()` then points every file argument
at a prepared tiny world (a checkpoint, exports, a text; a few lines of it where the docs name a
`short.*` file) and shrinks what trains or measures.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = (REPO / "README.md", *sorted((REPO / "docs").glob("*.md")))
SHELL_LANGS = ("bash", "sh", "shell", "console")
PLACEHOLDERS = {"EXPORT_DIR": "runs/demo/export", "NAME": "int8-dynamic", "PATH": "val.txt", "OUT.json": "b.json"}
DATA_OPTIONS = ("--data", "-d", "--eval", "--calib")
OUT_OPTIONS = ("--out", "-o", "--json", "--json-out")  # --json only where it takes a value (bench), not eval's flag
EXPORT_COMMANDS = ("quantize", "drift", "generate", "bench", "build-engine", "inspect")
VARIANTS = ("int8-dynamic", "int8-qdq", "fp16", "int8-weight", "int4-weight")
TINY_TRAIN = {
    "--layers": "1",
    "--d-model": "16",
    "--seq-len": "16",
    "--batch-size": "4",
    "--steps": "2",
    "--eval-every": "1",
    "--eval-batches": "1",
    "--warmup": "1",
    "--threads": "1",
}
CHEAP = {  # per command: options replaced (or added) so a real run takes about a second
    "export": {"--max-seq-len": "64"},
    "drift": {"--steps": "16", "--streams": "1", "--gen-steps": "4"},
    "generate": {"--tokens": "8"},
    "bench": {"--steps": "10", "--threads": "1"},
    "compare": {
        "--positions": "1",
        "--latency-samples": "10",
        "--lengths": "64",
        "--drift-steps": "16",
        "--drift-streams": "1",
        "--stream-tokens": "64",
        "--max-seq-len": "64",
    },
}
FLAGS_ADDED = {"train": ("--quiet",), "bench": ("--no-torch",)}


@dataclass(frozen=True)
class DocCommand:
    """One documented command: where it is and its arguments after `rnnedge`."""

    doc: str
    line: str
    argv: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.argv[0]

    def __str__(self) -> str:
        return f"{self.doc}: {self.line}"


def _clean(line: str) -> list[str] | None:
    """`rnnedge ...` (or `... -m rnnedge.cli ...`) as argv after `rnnedge`; None if the line runs something else."""
    try:
        words = shlex.split(line, comments=True)
    except ValueError:
        return None
    if "rnnedge.cli" in words:
        words = words[words.index("rnnedge.cli") + 1 :]
    elif words[:1] == ["rnnedge"]:
        words = words[1:]
    else:
        return None
    argv = []
    for w in words:
        w = w.strip("[]")
        if not w or w == "...":
            continue
        if w.startswith("-") is False and "|" in w:
            w = w.split("|")[0]
        argv.append(PLACEHOLDERS.get(w, w))
    return argv or None


def doc_commands() -> list[DocCommand]:
    """Every `rnnedge` command in a fenced shell block of README.md and docs/*.md, in document order."""
    found = []
    fence = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
    for doc in DOCS:
        for block in fence.finditer(doc.read_text(encoding="utf-8")):
            if block.group(1) not in SHELL_LANGS:
                continue
            for line in block.group(2).replace("\\\n", " ").splitlines():
                argv = _clean(line)
                if argv:
                    found.append(DocCommand(doc.relative_to(REPO).as_posix(), " ".join(line.split()), tuple(argv)))
    return found


def set_options(argv: list[str], values: dict[str, str]) -> list[str]:
    """`argv` with each option's value replaced, or the option added when it is not there."""
    argv = list(argv)
    for option, value in values.items():
        if option in argv:
            argv[argv.index(option) + 1] = value
        else:
            argv += [option, value]
    return argv


@dataclass(frozen=True)
class World:
    """The tiny inputs every documented command is pointed at (see tests/test_docs_commands.py)."""

    text: Path
    ckpt: Path
    export_one: Path  # fp32 + int8-dynamic
    export_all: Path  # fp32 + int8-dynamic, int8-qdq, int8-weight, int4-weight
    fresh: Callable[[str, Path], Path]  # (doc token, source folder or None) -> a private copy / new path
    tokenizer: Path | None = None  # a tiny BPE tokenizers JSON trained on `text` (docs' tokenizer.json)
    byom: dict[tuple[str, str], Path] | None = None  # (--from adapter, tokenizer kind) -> a weights file
    export_htp: Path | None = None  # an export with qnn-htp/ and its a16w8 variant (None: no onnxruntime-qnn)
    short_text: Path | None = None  # a few lines of `text`: where the docs name a short.* file


HTP_RECIPES = ("a16w8", "a8w8", "htp-fp16")


def needs_htp(cmd: DocCommand) -> bool:
    """The command works on an export's qnn-htp/ folder (its provider or one of its recipes)."""
    return "qnn-htp" in cmd.argv or any(m in cmd.argv for m in HTP_RECIPES)


def tokenizer_kind(spec: str) -> str:
    """'json', 'chars' or 'bytes': which of the world's weight files fits a documented --tokenizer."""
    return "json" if spec.endswith(".json") else "chars" if spec.startswith("chars:") else "bytes"


def byom_export(argv: list[str], world: World) -> list[str]:
    """`export --from ADAPTER --weights F [--tokenizer T]` pointed at the world's weights and tokenizer."""
    adapter = argv[argv.index("--from") + 1]
    spec = argv[argv.index("--tokenizer") + 1] if "--tokenizer" in argv else "bytes"
    kind = tokenizer_kind(spec)
    token = {"json": str(world.tokenizer), "chars": f"chars:{world.text}", "bytes": "bytes"}[kind]
    weights = (world.byom or {}).get((adapter, kind))
    out = set_options(list(argv), {"--tokenizer": token} if "--tokenizer" in argv else {})
    return set_options(out, {"--weights": str(weights)}) if weights is not None else out


def flag_options(command: str) -> set[str]:
    """The options of `rnnedge COMMAND` that take no value (read from the typer app)."""
    import typer

    from rnnedge.cli import app

    group = typer.main.get_command(app)
    sub = group.get_command(typer.Context(group, info_name="rnnedge"), command)  # type: ignore[attr-defined]
    flags = set()
    for param in getattr(sub, "params", []):
        if getattr(param, "is_flag", False) or getattr(param, "count", False):
            flags |= {*param.opts, *getattr(param, "secondary_opts", [])}
    return flags


def _is_export_path(token: str) -> bool:
    return any(w in token for w in ("export", "onnx", "out"))


def cheap(cmd: DocCommand, world: World) -> list[str]:
    """The command pointed at the tiny world, with training and measuring shrunk (see module docstring)."""
    argv = list(cmd.argv)
    name = argv[0]
    needs_all = any(v in argv for v in VARIANTS[1:])
    export = world.export_all if needs_all else world.export_one
    if needs_htp(cmd) and world.export_htp is not None:
        export = world.export_htp
    flags = flag_options(name)
    resumed: dict[str, Path] = {}
    out: list[str] = [name]
    i = 1
    while i < len(argv):
        word = argv[i]
        if word in DATA_OPTIONS:
            short = Path(argv[i + 1]).stem == "short" and world.short_text is not None
            out += [word, str(world.short_text if short else world.text)]
            i += 2
            continue
        if word == "--resume":
            resumed[argv[i + 1]] = world.fresh(argv[i + 1], world.ckpt)
            out += [word, str(resumed[argv[i + 1]])]
            i += 2
            continue
        if word in OUT_OPTIONS and word not in flags:
            target = resumed.get(argv[i + 1]) or world.fresh(argv[i + 1], None)
            out += [word, str(target)]
            i += 2
            continue
        if word.startswith("-"):
            out.append(word)
            i += 1
            continue
        prev = argv[i - 1]
        if prev.startswith("-") and prev not in flags:
            out.append(word)  # an option's value
        elif name in EXPORT_COMMANDS or (name in ("eval", "compare") and (_is_export_path(word) or needs_htp(cmd))):
            out.append(str(world.fresh(word, export)))
        elif name in ("export", "eval", "compare", "pipeline"):
            out.append(str(world.fresh(word, world.ckpt)))
        else:
            out.append(word)
        i += 1
    if name == "train":
        out = set_options(out, TINY_TRAIN if not resumed else {**TINY_TRAIN, "--steps": "4"})
        if "--window" in out:
            out = set_options(out, {"--window": "8"})
    if name == "export" and "--from" in out:
        out = byom_export(out, world)
    out = set_options(out, CHEAP.get(name, {}))
    if name == "quantize" and any(m in out for m in ("int8-qdq", "static")):
        out = set_options(out, {"--calib-steps": "16"})
    return out + [f for f in FLAGS_ADDED.get(name, ()) if f not in out]
