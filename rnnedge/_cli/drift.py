"""`rnnedge drift`: per-timestep drift of one precision variant against another, written as a report."""

from __future__ import annotations

from pathlib import Path

import typer

from rnnedge._cli.common import OVERWRITE_HELP, domain_errors, echo
from rnnedge.threads import THREADS_HELP, resolve_threads


def _names(dirs: list[Path]) -> list[str]:
    names = [d.resolve().name or str(d) for d in dirs]
    return [n if names.count(n) == 1 else f"{n}#{i + 1}" for i, n in enumerate(names)]


@domain_errors
def drift(
    dirs: list[Path] = typer.Argument(
        ..., metavar="DIR...", help="Exported model folders (step.onnx and step.<variant>.onnx); several: one report."
    ),
    data: Path = typer.Option(..., "--data", help="UTF-8 text the streams read (e.g. held-out data)."),
    out: Path = typer.Option(
        ..., "--out", help="Report folder (new, empty, or an earlier report: only rnnedge's own files are replaced)."
    ),
    variant: str = typer.Option(
        None, "--variant", help="Variant to measure, e.g. int8-dynamic (default: the folder's only variant)."
    ),
    baseline: str = typer.Option("fp32", "--baseline", help="Variant it is compared against."),
    steps: int = typer.Option(4096, "--steps", help="Timesteps per stream."),
    streams: int = typer.Option(8, "--streams", help="Parallel streams at different offsets of the text."),
    on_unknown: str = typer.Option("error", "--on-unknown", help="Characters outside the vocabulary: error | skip."),
    prompt: str = typer.Option(None, "--prompt", help="Prompt of the greedy check (default: first 32 chars of data)."),
    gen_steps: int = typer.Option(1000, "--gen-steps", help="Characters generated in the greedy check."),
    threads: int | None = typer.Option(None, "--threads", help=THREADS_HELP + " Per graph."),
    provider: str = typer.Option(
        "cpu",
        "--provider",
        help="Where the variant runs: cpu (this CPU) | cpu-x86-avx2 | cpu-arm64 (emulated; `rnnedge targets`) "
        "| qnn-htp (Qualcomm's HTP simulator; reads DIR/qnn-htp/) | openvino | tract (other runtimes). "
        "The baseline runs on this CPU.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help=OVERWRITE_HELP),
) -> None:
    """Run two variants' step graphs side by side; write REPORT/report.{json,md,html} and drift.png."""
    from rnnedge.drift.folder import check_target
    from rnnedge.drift.graphs import open_pair
    from rnnedge.drift.report import report_files, write_report
    from rnnedge.drift.run import MIN_STEPS, drift_window, run_drift
    from rnnedge.errors import ConfigError
    from rnnedge.inference import ProviderChoice, encode_text, read_text, resolve_providers
    from rnnedge.io import display_name
    from rnnedge.targets import graph_folder, where, where_line

    if on_unknown not in ("error", "skip"):
        raise ConfigError(f"--on-unknown must be 'error' or 'skip', not {on_unknown!r}")
    threads = resolve_threads(threads)
    if gen_steps < 1:
        raise ConfigError(f"--gen-steps must be >= 1, got {gen_steps}")
    choice = ProviderChoice(provider)
    if choice.on_gpu:
        raise ConfigError("drift runs on CPU targets (cpu, cpu-x86-avx2, cpu-arm64); for a GPU use `rnnedge eval`")
    resolve_providers(choice)  # one line now if the target cannot run here
    if choice.name == "qnn-htp" and steps * streams > 2000:
        echo(
            f"note: Qualcomm's HTP simulator runs ~10 steps/s: {steps} x {streams} steps take "
            f"~{steps * streams // 600} min"
        )
    check_target(out, report_files(len(dirs)), overwrite=overwrite)
    names = _names(dirs)
    dirs = [graph_folder(d, choice) for d in dirs]  # e.g. DIR/qnn-htp for --provider qnn-htp
    # Only the prefix the streams are drawn from is read (a 200 MB text costs what 4M characters do).
    text = read_text(data, what="data file", min_chars=MIN_STEPS + 1, max_chars=drift_window(steps, streams))
    for d in dirs:  # check every folder and the text before the long runs start
        pair = open_pair(d, variant, baseline, threads, choice)
        encode_text(text, pair.baseline.info.vocab, on_unknown, what=f"--data {data}", min_chars=MIN_STEPS + 1)  # type: ignore[arg-type]
    results = []
    for d, name in zip(dirs, names, strict=True):
        echo(f"drift {name}: {steps} steps x {streams} streams ...")
        r = run_drift(
            d,
            text,
            variant=variant,
            baseline=baseline,
            steps=steps,
            streams=streams,
            prompt=prompt,
            on_unknown=on_unknown,  # type: ignore[arg-type]
            gen_steps=gen_steps,
            threads=threads,
            name=name,
            providers=choice,
        )
        echo(f"  {r.variant.variant} vs {r.baseline.variant}: {r.steps} steps in {r.seconds:.1f} s")
        for note in r.notes:
            echo(f"  note: {note}")
        results.append(r)
    settings = {
        "data": display_name(data),  # a Latin-1 file name cannot go into a UTF-8 report as it is
        "variant": variant,
        "baseline": baseline,
        "steps": steps,
        "streams": streams,
        "on_unknown": on_unknown,
        "prompt": prompt,
        "gen_steps": gen_steps,
        "target": where(choice),
    }
    echo(where_line(choice))
    report = write_report(results, out, settings, overwrite=overwrite)
    for m in report["models"]:
        echo(f"{m['name']} ({m['arch']}): {m['verdict']}")
    echo(f"wrote {out}/report.html, report.md, report.json, drift.png")


def register(app: typer.Typer) -> None:
    app.command("drift")(drift)
