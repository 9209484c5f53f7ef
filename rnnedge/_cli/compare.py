"""`rnnedge compare`: several models (checkpoints or exports) measured the same way, one report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from rnnedge._cli.common import OVERWRITE_HELP, domain_errors, echo
from rnnedge.errors import ConfigError
from rnnedge.threads import THREADS_HELP, resolve_threads


def _ints(option: str, value: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{option} must be comma-separated integers, got {value!r}") from None


def _export(ckpt: Path, out: Path, max_seq_len: int) -> None:
    from rnnedge.exporter import export_model

    export_model(ckpt, out, max_seq_len=max_seq_len)


def _costs(config: dict[str, Any]) -> dict[str, Any]:
    if config.get("byom"):  # an exported user model (rnnedge.byom): its config carries its own counts
        macs = int(config.get("macs_per_token", 0))
        return {
            "arch": config.get("arch", "?"),
            "params": int(config.get("params", 0)),
            "params_by_part": {},
            "mixer_params_per_layer": 0,
            "macs_per_token": macs,
            "macs_weights": macs,
            "macs_cache": 0,
        }
    from rnnedge.models import ModelConfig
    from rnnedge.models.costs import config_costs

    return config_costs(ModelConfig.from_dict(config)).to_dict()


@domain_errors
def compare(
    models: list[Path] = typer.Argument(
        ..., metavar="CKPT_OR_EXPORT...", help="Checkpoint folders (exported here) or export folders, same vocabulary."
    ),
    data: str = typer.Option(
        ..., "--data", "-d", help="UTF-8 text (or 'shakespeare'); its last 10% is the held-out text scored."
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="Report folder (new, empty, or an earlier compare report, whose files alone are replaced).",
    ),
    variant: str = typer.Option("int8-dynamic", "--variant", help="Precision variant compared with fp32 (a recipe)."),
    eval_chars: int | None = typer.Option(None, "--eval-chars", help="Score only the first N held-out characters."),
    positions: str = typer.Option("1,256,1024,4096", "--positions", help="Step latency at these stream positions t."),
    latency_samples: int = typer.Option(200, "--latency-samples", help="Timed steps per position and precision."),
    lengths: str = typer.Option("512,4096", "--lengths", help="Parallel-graph tokens/s at these sequence lengths."),
    drift_steps: int = typer.Option(1024, "--drift-steps", help="Drift timesteps per stream."),
    drift_streams: int = typer.Option(4, "--drift-streams", help="Drift streams."),
    stream_tokens: int = typer.Option(4096, "--stream-tokens", help="Tokens streamed while peak memory is read."),
    max_seq_len: int = typer.Option(4096, "--max-seq-len", help="Checkpoints: the parallel graph's scan depth."),
    threads: int | None = typer.Option(None, "--threads", help=THREADS_HELP),
    on_unknown: str = typer.Option("error", "--on-unknown", help="Unknown held-out characters: error | skip."),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
) -> None:
    """Loss, parameters, MACs/token, state memory, latency vs t, throughput and drift of every model,
    fp32 and a precision variant; writes REPORT/compare.{json,md,html} and plots (see docs/compare.md)."""
    from rnnedge.compare import CompareSettings, run_compare
    from rnnedge.progress import Stages
    from rnnedge.training.data import resolve_data

    settings = CompareSettings(
        variant=variant,
        eval_chars=eval_chars,
        positions=_ints("--positions", positions),
        latency_samples=latency_samples,
        lengths=_ints("--lengths", lengths),
        drift_steps=drift_steps,
        drift_streams=drift_streams,
        stream_tokens=stream_tokens,
        max_seq_len=max_seq_len,
        threads=resolve_threads(threads),
        on_unknown=on_unknown,
    )
    with Stages("compare", lines=False) as stages:  # a bar on a terminal; the log lines are the stages
        report = run_compare(
            models,
            resolve_data(data),
            out,
            settings,
            exporter=_export,
            costs=_costs,
            data_label=data,
            log=stages.say,
            overwrite=overwrite,
        )
    for m in report["models"]:
        loss = m["loss"]
        echo(
            f"{m['name']} ({m['arch']}, {m['costs']['params']:,} params, {m['costs']['macs_per_token']:,} MACs/token): "
            f"{loss['fp32']['nats_per_char']:.4f} nats/char fp32, {loss[variant]['nats_per_char']:.4f} {variant}; "
            f"state {m['state']['bytes_per_stream']:,} B/stream"
        )
    echo(f"wrote {out}/compare.html, compare.md, compare.json")


def register(app: typer.Typer) -> None:
    app.command("compare")(compare)
