"""Every `rnnedge ...` command in README.md and docs/*.md parses against the real CLI, and runs.

Each documented command is parsed by the typer app itself (unknown options, missing arguments, bad
values fail here), then run for real on a tiny world: a checkpoint trained 2 steps, its exports, a
short text (tiny-shakespeare's first 40k characters when /work/shared has it), with training and
measuring shrunk (tests/docs_commands.py). A command that fails as a new user would see it fails here.
"""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from rnnedge.cli import app
from rnnedge.models.registry import MIXER_NAMES
from tests.conftest import TEXT
from tests.docs_commands import REPO, TINY_TRAIN, World, cheap, doc_commands, needs_htp

COMMANDS = doc_commands()
SHAKESPEARE = Path(os.environ.get("RNNEDGE_DOCS_TEXT", "/work/shared/data/tinyshakespeare.txt"))
NOT_RUN = {"pipeline": "the whole job; tests/test_pipeline.py runs it", "torchrun": "DDP"}
runner = CliRunner()


def _parse(argv: list[str]) -> str | None:
    """Parse `rnnedge ARGV` as the CLI would, without running it: the usage error's message, or None."""
    group = typer.main.get_command(app)
    root = typer.Context(group, info_name="rnnedge")
    sub = group.get_command(root, argv[0])  # type: ignore[attr-defined]
    if sub is None:
        return f"no command {argv[0]!r}"
    try:
        with sub.make_context(argv[0], list(argv[1:]), parent=root):
            return None
    except Exception as exc:  # click's UsageError family (typer vendors click): what cli.main prints
        if not hasattr(exc, "format_message"):
            raise
        return str(exc.format_message())


def test_the_docs_have_commands():
    names = {c.name for c in COMMANDS}
    assert len(COMMANDS) >= 40 and {"train", "eval", "export", "quantize", "drift", "generate", "bench"} <= names


@pytest.mark.parametrize("cmd", COMMANDS, ids=[f"{c.doc}:{i}" for i, c in enumerate(COMMANDS)])
def test_documented_command_parses(cmd):
    problem = _parse(list(cmd.argv))
    assert problem is None, f"{cmd}\n  -> {problem}"


def test_help_lists_every_registered_mixer():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0 and all(m in res.output for m in MIXER_NAMES), res.output
    training = (REPO / "docs" / "training.md").read_text(encoding="utf-8")
    assert all(f"`{m}`" in training for m in MIXER_NAMES)


def test_no_help_shows_an_invisible_default():
    for name in ("generate", "train", "eval", "quantize", "drift", "bench", "compare", "pipeline", "export"):
        res = runner.invoke(app, [name, "--help"], terminal_width=200)
        assert res.exit_code == 0, res.output
        assert "[default:  ]" not in res.output and "[default: ]" not in res.output, (name, res.output)


def test_documented_recipe_with_a_name():
    from rnnedge.quantization import recipe

    r = recipe("int4-weight", block_size=64, name="int4-b64")  # docs/quantization.md
    assert r.name == "int4-b64" and r.block_size == 64 and r.bits == 4


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    from rnnedge.quantization import quantize_export

    root = tmp_path_factory.mktemp("docs-world")
    text = root / "text.txt"
    fallback = TEXT * 4 + "ROMEO:\nO, she doth teach the torches to burn bright!\n" * 40  # the docs' prompts
    source = SHAKESPEARE.read_text(encoding="utf-8")[:40_000] if SHAKESPEARE.is_file() else fallback
    text.write_text(source, encoding="utf-8")
    ckpt = root / "ckpt"
    tiny = [x for kv in TINY_TRAIN.items() for x in kv]
    res = runner.invoke(app, ["train", "--data", str(text), "--out", str(ckpt), *tiny, "--quiet"])
    assert res.exit_code == 0, res.output
    one, every = root / "export-one", root / "export-all"
    res = runner.invoke(app, ["export", str(ckpt), "--out", str(one), "--max-seq-len", "64"])
    assert res.exit_code == 0, res.output
    quantize_export(one, "int8-dynamic", eval_text=text)
    shutil.copytree(one, every)
    for method in ("int8-qdq", "int8-weight", "int4-weight"):
        quantize_export(every, method, calib_text=text, **({"calib_steps": 16} if method == "int8-qdq" else {}))
    counter = itertools.count()

    def fresh(token: str, source: Path | None) -> Path:
        path = root / "runs" / f"{next(counter)}-{Path(token).name or 'dir'}"
        if source is not None:
            shutil.copytree(source, path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
        return path

    tokenizer, byom = byom_inputs(root, text)
    short = root / "short.txt"  # the docs' short.txt: a few lines
    short.write_text(source[:600], encoding="utf-8")
    return World(text, ckpt, one, every, fresh, tokenizer, byom, htp_export(root, ckpt, text), short)


def htp_export(root: Path, ckpt: Path, text: Path) -> Path | None:
    """The tiny checkpoint exported with --target qnn-htp and its a16w8 variant, where the HTP simulator runs."""
    from rnnedge.targets import target_spec

    if not target_spec("qnn-htp").probe().ok:
        return None
    htp = root / "export-htp"
    res = runner.invoke(app, ["export", str(ckpt), "--out", str(htp), "--max-seq-len", "64", "--target", "qnn-htp"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["quantize", str(htp), "--method", "a16w8", "--calib", str(text)])
    assert res.exit_code == 0, res.output
    return htp


def byom_inputs(root: Path, text: Path) -> tuple[Path | None, dict[tuple[str, str], Path]]:
    """A tiny BPE tokenizer.json and the weight files docs/byom.md's commands name: a word_language_model
    LSTM (for the BPE and for `chars:` tokenizers) and a minLM (BPE), as state_dicts. Without the byom
    packages: none (those commands then fail, as for a user without `pip install -e ".[byom]"`)."""
    try:
        import torch
        from minGRU_pytorch.minLM import minLM
        from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    except ImportError:
        return None, {}
    from rnnedge.tokenizer import resolve
    from tests.test_byom import RNNModel

    bpe = Tokenizer(models.BPE(unk_token="[UNK]"))
    bpe.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=200, special_tokens=["[UNK]"])
    bpe.train_from_iterator([text.read_text(encoding="utf-8")], trainer)
    tok = root / "tokenizer.json"
    bpe.save(str(tok))
    sizes = {"json": len(resolve(str(tok))), "chars": len(resolve(f"chars:{text}"))}
    files: dict[tuple[str, str], Path] = {}
    torch.manual_seed(0)
    for kind, size in sizes.items():
        files[("word-lm", kind)] = root / f"wordlm-{kind}.pt"
        torch.save(RNNModel("LSTM", size, 16, 16, 2, tie_weights=True).state_dict(), files[("word-lm", kind)])
    files[("mingru-pytorch", "json")] = root / "minlm.pt"
    torch.save(minLM(num_tokens=sizes["json"], dim=16, depth=1).state_dict(), files[("mingru-pytorch", "json")])
    return tok, files


def _outcome_ok(cmd, res) -> bool:
    """Exit 0; or, where the documented outcome depends on this machine or model, one clear line."""
    if res.exit_code == 0:
        return True
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    one_line = res.exit_code == 1 and len(lines) == 1 and lines[0].startswith("rnnedge: error:")
    if cmd.name == "build-engine":  # needs TensorRT (the GPU extra)
        return one_line and "tensorrt" in lines[0].lower()
    if needs_htp(cmd):  # Qualcomm's simulator: the npu extra may be absent
        return one_line and "qnn" in lines[0].lower()
    if any(t in cmd.line for t in ("cpu-arm64", "cpu-x86-avx2")):  # emulated CPUs: qemu (+ sysroot) may be absent
        return one_line and ("cannot run here" in lines[0] or "qemu" in lines[0])
    if any(t in cmd.line for t in ("openvino", "tract")):  # the runtimes extra may be absent
        return one_line and ("cannot run here" in lines[0] or "not installed" in lines[0])
    if "--max-loss-delta" in cmd.argv:  # a tiny model may not meet the budget: then it is an error
        return one_line and "--max-loss-delta" in lines[0]
    return False


RUN = [c for c in COMMANDS if c.name not in NOT_RUN and "torchrun" not in c.line]


@pytest.mark.parametrize("cmd", RUN, ids=[f"{c.doc}:{i}" for i, c in enumerate(RUN)])
def test_documented_command_runs(cmd, world):
    argv = cheap(cmd, world)
    res = runner.invoke(app, argv)
    assert _outcome_ok(cmd, res), (
        f"{cmd}\n  ran: rnnedge {' '.join(argv)}\n  exit {res.exit_code}: {res.output[-1500:]}"
    )
