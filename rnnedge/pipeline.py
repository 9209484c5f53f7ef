"""The whole job in one call: checkpoint -> ONNX graphs -> int8 -> drift report -> streamed sample.

    from rnnedge.pipeline import PipelineConfig, run_pipeline
    summary = run_pipeline(PipelineConfig(out="runs/demo"))   # the bundled default model, offline

Every stage writes its files atomically (temp + rename), so an interrupted run leaves only whole files.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rnnedge.errors import ConfigError
from rnnedge.io import write_json, write_text

Log = Callable[[str], None]
SUMMARY = "summary.json"


@dataclass(frozen=True)
class PipelineConfig:
    """What `rnnedge pipeline` runs.

    ckpt: a checkpoint folder, or "default" for the bundled model. With no ckpt: train on `data` if
    given, else use the bundled model. `data` also supplies the held-out text (its last 10%).
    """

    out: str
    ckpt: str | None = None
    data: str | None = None
    arch: str = "mingru"
    train_steps: int = 300
    method: str = "dynamic"  # int8 method for the step graph (the parallel graph is always symmetric QDQ)
    drift_steps: int = 2048
    drift_streams: int = 8
    prompt: str = "ROMEO:"
    tokens: int = 300
    temperature: float = 0.8
    seed: int = 0
    threads: int = 2

    def __post_init__(self) -> None:
        for name in ("drift_steps", "drift_streams", "train_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.tokens < 0:
            raise ConfigError(f"tokens must be >= 0, got {self.tokens}")


@contextmanager
def _stage(log: Log, timings: dict[str, float], n: int, total: int, name: str) -> Iterator[None]:
    log(f"[{n}/{total}] {name} …")
    t0 = time.perf_counter()
    yield
    timings[name] = round(time.perf_counter() - t0, 2)
    log(f"      {name} done in {timings[name]:.1f} s")


SELF_SAMPLED_CHARS = 20_000


def _heldout_text(cfg: PipelineConfig, out: Path, export_dir: Path, log: Log) -> tuple[Path, str, str]:
    """Held-out text for the int8 check and the drift run, written to OUT/data/heldout.txt.

    --data: its last 10% (held out by `rnnedge train`). Else tiny-shakespeare's last 10% (cached or
    downloaded). Offline with neither: text sampled from the fp32 step graph itself (temperature 1),
    which measures int8 against fp32 on the model's own distribution; the summary says so.
    """
    from rnnedge.training.data import DataError, read_text, resolve_data, shakespeare_path

    text: str | None = None
    if cfg.data is not None:
        text, source = read_text(resolve_data(cfg.data)), str(cfg.data)
    else:
        try:
            path = shakespeare_path(download=True, timeout=10.0)
            text, source = read_text(path), f"tiny-shakespeare ({path})"
        except DataError as exc:
            log(f"      {exc}")
    if text is not None:
        val = text[int(len(text) * 0.9) :]
        source = f"last 10% of {source}"
    else:
        from rnnedge.runtime import generate

        log(f"      offline and no --data: sampling {SELF_SAMPLED_CHARS:,} characters from the fp32 step graph")
        val = "\n" + "".join(generate(export_dir, "\n", SELF_SAMPLED_CHARS - 1, temperature=1.0, seed=cfg.seed))
        source = "sampled from the fp32 model (offline fallback; pass --data for real held-out text)"
    from rnnedge.runtime import StepSession

    StepSession(export_dir).vocab.encode(val)  # unknown characters: one clear error before any other stage
    val_path = out / "data" / "heldout.txt"
    write_text(val_path, val)
    log(f"      held-out text: {source}: {len(val):,} characters")
    return val_path, val, source


def run_pipeline(cfg: PipelineConfig, log: Log = print, write: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every stage and return (and write to OUT/summary.json) the summary."""
    from rnnedge.assets import default_model_path

    out = Path(cfg.out)
    timings: dict[str, float] = {}
    total = 6 if cfg.ckpt is None and cfg.data is not None else 5  # 'default' never trains
    n = 0
    use_default = cfg.ckpt in (None, "default")
    ckpt_path = default_model_path() if use_default else Path(str(cfg.ckpt))
    if cfg.ckpt is None and cfg.data is not None:
        from rnnedge.training.config import TrainConfig
        from rnnedge.training.train import train

        n += 1
        with _stage(log, timings, n, total, f"train {cfg.arch} on {cfg.data} for {cfg.train_steps} steps"):
            tc = TrainConfig(arch=cfg.arch, steps=cfg.train_steps, seed=cfg.seed, threads=cfg.threads)
            ckpt_path = train(tc, cfg.data, out / "checkpoint").out_dir
    elif use_default:
        log(f"      using the bundled default model: {ckpt_path}")
    export_dir = out / "export"

    n += 1
    with _stage(log, timings, n, total, "export parallel + step graphs (verified in ONNX Runtime)"):
        from rnnedge.exporter import export_model

        exported = export_model(ckpt_path, export_dir)
    val_path, val_text, text_source = _heldout_text(cfg, out, export_dir, log)
    n += 1
    with _stage(log, timings, n, total, f"quantize to int8 ({cfg.method} step graph, symmetric QDQ parallel graph)"):
        from rnnedge.quantization import quantize_export

        quant = quantize_export(export_dir, method=cfg.method, eval_text=val_path, log=log)
    n += 1
    with _stage(
        log, timings, n, total, f"drift: fp32 vs int8 over {cfg.drift_steps} steps x {cfg.drift_streams} streams"
    ):
        from rnnedge.drift import run_drift, write_report

        drift = run_drift(export_dir, val_text, steps=cfg.drift_steps, streams=cfg.drift_streams, threads=cfg.threads)
        settings = {"data": text_source, "steps": cfg.drift_steps, "streams": cfg.drift_streams, "on_unknown": "error"}
        report = write_report([drift], out / "report", settings)
    n += 1
    with _stage(log, timings, n, total, f"generate {cfg.tokens} characters from the int8 step graph"):
        from rnnedge.runtime import StepSession, generate
        from rnnedge.runtime.bench import step_latency

        step_int8 = StepSession(export_dir, int8=True, threads=cfg.threads)
        emit = write or (lambda s: print(s, end="", flush=True))
        emit(cfg.prompt)
        sample = cfg.prompt
        for ch in generate(step_int8, cfg.prompt, cfg.tokens, temperature=cfg.temperature, seed=cfg.seed):
            emit(ch)
            sample += ch
        emit("\n")
        write_text(out / "sample.txt", sample + "\n")
        latency = {
            kind: step_latency(path, batch=1, threads=cfg.threads, steps=500, warmup=50)["per_token_us"]["p50"]
            for kind, path in (("fp32", exported.paths["step"]), ("int8", quant.paths["step"]))
        }
    summary = _summary(cfg, ckpt_path, exported, quant, report, drift, latency, timings, out)
    summary["heldout_text"] = {"path": str(val_path), "source": text_source, "chars": len(val_text)}
    write_json(out / SUMMARY, summary)
    return summary


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0


def _summary(cfg, ckpt_path, exported, quant, report, drift, latency, timings, out) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    files = {
        name: {"path": str(p), "bytes": _size(p)}
        for name, p in {
            "parallel.onnx": exported.paths["parallel"],
            "step.onnx": exported.paths["step"],
            "parallel.int8.onnx": quant.paths["parallel"],
            "step.int8.onnx": quant.paths["step"],
            "report.html": out / "report" / "report.html",
            "sample.txt": out / "sample.txt",
        }.items()
    }
    model = report["models"][0] if report.get("models") else {}
    return {
        "config": asdict(cfg),
        "checkpoint": str(ckpt_path),
        "files": files,
        # The int8 check's figures: the whole held-out text, scored by each graph (nats/char).
        "loss_nats": {
            kind: {k: g[k] for k in ("loss_fp32", "loss_int8", "loss_delta", "size_fp32", "size_int8")}
            for kind, g in quant.manifest["graphs"].items()
        },
        "drift_nll_nats": {
            drift.baseline.variant: drift.loss_baseline,
            drift.variant.variant: drift.loss_variant,
            "steps": drift.steps,
        },
        "int8_check": quant.manifest,
        "drift_verdict": model.get("verdict"),
        "step_us_per_token_p50": latency,
        "stage_seconds": timings,
    }
