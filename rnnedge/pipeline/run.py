"""The pipeline's stages: [train] -> export -> precision variant -> drift report -> sample + summary."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from rnnedge import ownership
from rnnedge.commit import roll_forward
from rnnedge.errors import RnnedgeError
from rnnedge.io import write_json, write_text
from rnnedge.outlock import remove_stale_temps, writer_lock
from rnnedge.pipeline.config import PipelineConfig, checkpoint_vocab, probe_writable
from rnnedge.pipeline.outputs import CreatedFiles
from rnnedge.pipeline.staged import commit_result, staging_folder
from rnnedge.pipeline.texts import PipelineTexts, check_vocabulary, real_text, sampled_text, split_text

Log = Callable[[str], None]
SUMMARY = "summary.json"
LATENCY_STEPS = 500


@contextmanager
def _stage(log: Log, timings: dict[str, float], n: int, total: int, name: str) -> Iterator[None]:
    log(f"[{n}/{total}] {name} …")
    t0 = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - t0, 2)
    log(f"      {name} done in {timings[name]:.1f} s")


def _validate(cfg: PipelineConfig, log: Log) -> tuple[Path, Any, tuple[str, str] | None]:
    """Everything that can be checked before a stage runs: recipe, checkpoint, arch, text, --out."""
    from rnnedge.assets import default_model_path
    from rnnedge.models.registry import check_mixer_name
    from rnnedge.quantization.recipes import recipe

    chosen = recipe(cfg.method)
    probe_writable(Path(cfg.out))
    training = cfg.ckpt is None and cfg.data is not None
    if training:
        check_mixer_name(cfg.arch)
    ckpt = default_model_path() if cfg.ckpt in (None, "default") else Path(str(cfg.ckpt))
    text = real_text(cfg.data, log)
    if not training:
        vocab = checkpoint_vocab(ckpt)
        if text is not None:
            check_vocabulary(text[0], vocab, text[1])
        check_vocabulary(cfg.prompt, vocab, "--prompt")
    return ckpt, chosen, text


OWN_FILES = (SUMMARY, "sample.txt", "data/heldout.txt", "data/calibration.txt")  # in OUT; folders have ledgers


def run_pipeline(cfg: PipelineConfig, log: Log = print, write: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every stage and return (and write to OUT/summary.json) the summary.

    The stages write into a staging folder inside OUT; the whole result is committed as one unit at
    the end (pipeline/staged.py), so a kill anywhere leaves the whole old result or the whole new one.
    A failure or Ctrl-C removes every file and folder this run created under OUT (nothing else)."""
    ckpt, chosen, text = _validate(cfg, log)
    out = Path(cfg.out)
    with writer_lock(out):
        if out.is_dir():
            roll_forward(out)  # a commit a killed run left is finished first
        remove_stale_temps(out, [*OWN_FILES, ownership.LEDGER])  # and staging folders of killed runs
        ledger = _check_owned(out, cfg.overwrite)
        _check_other_variants(out / "export", chosen.name, cfg.overwrite, log)
        created = CreatedFiles(out)
        try:
            staging = staging_folder(out)  # every stage writes here; one commit at the end (staged.py)
            summary = _run(cfg, ckpt, chosen, text, staging, log, write)
            commit_result(out, staging, ledger, cfg.overwrite)
        except BaseException:
            created.remove_new()
            raise
        return _named_out(summary, staging)


def _named_out(summary: dict[str, Any], staging: Path) -> dict[str, Any]:
    """The summary as committed: paths name OUT, not the staging folder (staged.py rewrites the file)."""
    import json

    text = json.dumps(summary).replace("/" + staging.name, "")
    return json.loads(text)  # type: ignore[no-any-return]


def _check_owned(out: Path, overwrite: bool) -> ownership.Ledger:
    """One line before any stage unless every file the run writes in `out` may be replaced: `out` and its
    export/ and report/ folders are new, empty or rnnedge's (their ledgers), or `overwrite`."""
    for sub in ("export", "report"):
        if (out / sub).is_dir():
            ownership.check_folder(out / sub, overwrite=overwrite)
    ledger = ownership.check_folder(out, overwrite=overwrite)
    ownership.check_replaceable(ledger, OWN_FILES, overwrite=overwrite)
    return ledger


def _check_other_variants(export_dir: Path, own: str, overwrite: bool, log: Log) -> None:
    """A re-run replaces OUT/export whole, so precision variants made there since (`rnnedge quantize
    OUT/export --recipe …`, minutes of work each) would go with it: one line naming them and
    --overwrite, before any stage; with `overwrite` they are removed, and the log says which."""
    from rnnedge.graphmeta import FP32, list_variants

    others = [name for name in list_variants(export_dir) if name not in (FP32, own)]
    if not others:
        return
    names = ", ".join(others)
    if not overwrite:
        raise RnnedgeError(
            f"{export_dir} holds precision variants this pipeline does not make ({names}): a re-run replaces "
            "the export and would remove them; move them, choose another --out or pass --overwrite"
        )
    log(f"      --overwrite: the re-run removes {export_dir}'s other precision variants: {names}")


def _run(cfg, ckpt, chosen, text, out, log, write) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    timings: dict[str, float] = {}
    training = cfg.ckpt is None and cfg.data is not None
    total, n = (6 if training else 5), 0
    if training:
        from rnnedge.training.train import train

        tc = train_config(cfg)
        log(f"      estimate: {estimate_line(cfg, tc)}")
        n += 1
        with _stage(log, timings, n, total, f"train {cfg.arch} on {cfg.data} for {cfg.train_steps} steps"):
            ckpt = train(tc, cfg.data, out / "checkpoint").out_dir
        check_vocabulary(cfg.prompt, checkpoint_vocab(ckpt), "--prompt")
    elif cfg.ckpt in (None, "default"):
        log(f"      using the bundled default model: {ckpt}")
    export_dir = out / "export"

    n += 1
    with _stage(log, timings, n, total, "export parallel + step graphs (verified in ONNX Runtime)"):
        from rnnedge.exporter import export_model

        exported = export_model(ckpt, export_dir, overwrite=cfg.overwrite)
    texts = split_text(*text) if text is not None else sampled_text(export_dir, cfg.seed)
    check_vocabulary(texts.heldout, exported_vocab(export_dir), texts.source)
    heldout_path, calib_path = _write_texts(out, texts, chosen.needs_calibration, log)
    n += 1
    with _stage(log, timings, n, total, f"precision variant {chosen.name} (checked on the held-out text)"):
        from rnnedge.quantization import quantize_export

        quant = quantize_export(export_dir, chosen, eval_text=heldout_path, calib_text=calib_path, log=log)
    n += 1
    with _stage(log, timings, n, total, f"drift: fp32 vs {chosen.name}, {cfg.drift_steps} steps x {cfg.drift_streams}"):
        from rnnedge.drift import run_drift, write_report

        drift = run_drift(
            export_dir, texts.heldout, variant=chosen.name, steps=cfg.drift_steps, streams=cfg.drift_streams,
            threads=cfg.threads, name=model_name(export_dir),
        )  # fmt: skip
        settings = {"data": texts.source, "steps": cfg.drift_steps, "streams": cfg.drift_streams}
        report = write_report([drift], out / "report", {**settings, "on_unknown": "error"}, overwrite=cfg.overwrite)
    n += 1
    with _stage(log, timings, n, total, f"generate {cfg.tokens} characters from the {chosen.name} step graph"):
        sample = _sample(cfg, export_dir, chosen.name, write)
        write_text(out / "sample.txt", sample + "\n")
        latency = _latency(cfg, export_dir, chosen.name)
    summary = _summary(cfg, ckpt, exported, quant, report, drift, latency, timings, out)
    summary["heldout_text"] = {"path": str(heldout_path), "source": texts.source, "chars": len(texts.heldout)}
    if calib_path is not None:
        summary["calibration_text"] = {"path": str(calib_path), "chars": len(texts.calibration)}
    write_json(out / SUMMARY, summary)
    return summary


def train_config(cfg: PipelineConfig) -> Any:
    """The TrainConfig of the pipeline's training stage: its preset's shape, steps, seed and threads."""
    from rnnedge.training.config import TrainConfig
    from rnnedge.training.presets import size_preset

    sized = size_preset(cfg.preset).fields() if cfg.preset is not None else {}
    return TrainConfig(arch=cfg.arch, steps=cfg.train_steps, seed=cfg.seed, threads=cfg.threads, **sized)


def estimate_line(cfg: PipelineConfig, tc: Any) -> str:
    """How long the training stage will take (two probe steps timed here) and how to shorten it."""
    from rnnedge.training.data import read_text, resolve_data
    from rnnedge.training.estimate import estimate_training

    vocab_size = len(set(read_text(resolve_data(str(cfg.data)))))
    est = estimate_training(tc, vocab_size)
    hint = "" if est.total_s < 300 else "; fewer --train-steps or a smaller --preset shortens it"
    return est.describe(tc) + hint


def model_name(export_dir: Path) -> str:
    """The model as the reports name it: arch and size (`mingru 3x128`), not the folder (`export`)."""
    from rnnedge.inference import open_graph

    cfg = open_graph(export_dir / "step.onnx", "step", threads=1, spinning=False).info.config
    return f"{cfg.get('arch', '?')} {cfg.get('n_layers', '?')}x{cfg.get('d_model', '?')}"


def exported_vocab(export_dir: Path):  # type: ignore[no-untyped-def]
    from rnnedge.runtime import StepSession

    return StepSession(export_dir).vocab


def _write_texts(out: Path, texts: PipelineTexts, calibrates: bool, log: Log) -> tuple[Path, Path | None]:
    heldout = out / "data" / "heldout.txt"
    write_text(heldout, texts.heldout)
    log(f"      held-out text: last 10% of {texts.source}: {len(texts.heldout):,} characters")
    if not calibrates:
        return heldout, None
    calib = out / "data" / "calibration.txt"
    write_text(calib, texts.calibration)
    log(f"      calibration text: the {len(texts.calibration):,} characters before it (disjoint)")
    return heldout, calib


def _sample(cfg: PipelineConfig, export_dir: Path, variant: str, write: Callable[[str], None] | None) -> str:
    from rnnedge.runtime import StepSession, generate

    session = StepSession(export_dir, variant=variant, threads=cfg.threads)
    emit = write or (lambda s: print(s, end="", flush=True))
    emit(cfg.prompt)
    sample = cfg.prompt
    for ch in generate(session, cfg.prompt, cfg.tokens, temperature=cfg.temperature, seed=cfg.seed):
        emit(ch)
        sample += ch
    emit("\n")
    return sample


def _latency(cfg: PipelineConfig, export_dir: Path, variant: str) -> dict[str, float]:
    """A short p50 per token at batch 1 (`rnnedge bench` is the real measurement)."""
    from rnnedge.graphmeta import FP32, graph_file
    from rnnedge.runtime.bench import step_latency

    out = {}
    for v in (FP32, variant):
        timed = step_latency(export_dir / graph_file("step", v), 1, cfg.threads, steps=LATENCY_STEPS, warmup=50)
        out[v] = timed["per_token_us"]["p50"]
    return out


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0


def _summary(cfg, ckpt, exported, quant, report, drift, latency, timings, out) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    paths = {p.name: p for p in (*exported.paths.values(), *quant.paths.values())}
    paths.update({"report.html": out / "report" / "report.html", "sample.txt": out / "sample.txt"})
    model = report["models"][0] if report.get("models") else {}
    return {
        "config": asdict(cfg),
        "checkpoint": str(ckpt),
        "variant": quant.variant,
        "recipe": quant.recipe.to_dict(),
        "files": {name: {"path": str(p), "bytes": _size(p)} for name, p in paths.items()},
        # The variant check's figures: the whole held-out text, scored by each graph (nats/char).
        "loss_nats": {
            kind: {
                **{k: g[k] for k in ("loss_fp32", "loss_variant", "loss_delta", "size_fp32", "size_variant")},
                "scored_on": f"the whole held-out text: {g['eval_chars']:,} chars",
            }
            for kind, g in quant.graphs.items()
        },
        "drift_nll_nats": {
            "baseline": drift.loss_baseline,
            "variant": drift.loss_variant,
            "steps": drift.steps,
            "scored_on": f"the drift streams: {drift.streams} x {drift.steps:,} steps of the held-out text",
        },
        "variant_check": quant.manifest,
        "drift_verdict": model.get("verdict"),
        "step_us_per_token_p50": latency,
        "stage_seconds": timings,
    }
