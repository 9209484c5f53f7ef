"""`rnnedge drift`: per-timestep int8-vs-fp32 drift of exported step graphs, written as a report."""

from __future__ import annotations

from pathlib import Path

import typer

from rnnedge._cli.common import domain_errors, echo


def _read_text(path: Path) -> str:
    from rnnedge.errors import RnnedgeError

    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RnnedgeError(f"data file not found: {path}") from None
    except IsADirectoryError:
        raise RnnedgeError(f"--data {path} is a folder, not a text file") from None
    except UnicodeDecodeError as exc:
        raise RnnedgeError(f"data file {path} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise RnnedgeError(f"cannot read {path}: {exc.strerror or exc}") from None


def _names(dirs: list[Path]) -> list[str]:
    names = [d.resolve().name or str(d) for d in dirs]
    return [n if names.count(n) == 1 else f"{n}#{i + 1}" for i, n in enumerate(names)]


@domain_errors
def drift(
    dirs: list[Path] = typer.Argument(
        ..., metavar="DIR...", help="Exported model folders (step.onnx + step.int8.onnx)."
    ),
    data: Path = typer.Option(..., "--data", help="UTF-8 text the streams read (e.g. held-out data)."),
    out: Path = typer.Option(..., "--out", help="Report folder to write (replaced if it is an earlier report)."),
    steps: int = typer.Option(4096, "--steps", help="Timesteps per stream."),
    streams: int = typer.Option(8, "--streams", help="Parallel streams at different offsets of the text."),
    on_unknown: str = typer.Option("error", "--on-unknown", help="Characters outside the vocabulary: error | skip."),
    prompt: str = typer.Option(None, "--prompt", help="Prompt of the greedy check (default: first 32 chars of data)."),
    gen_steps: int = typer.Option(1000, "--gen-steps", help="Characters generated in the greedy check."),
    int8: Path = typer.Option(
        None, "--int8", help="int8 step graph to compare (one DIR only; default DIR/step.int8.onnx)."
    ),
) -> None:
    """Run fp32 and int8 step graphs side by side; write REPORT/report.{json,md,html} and drift.png."""
    from rnnedge.errors import ConfigError
    from rnnedge.quantization.d_graphs import open_pair
    from rnnedge.quantization.drift import run_drift
    from rnnedge.quantization.report import check_target, write_report

    if on_unknown not in ("error", "skip"):
        raise ConfigError(f"--on-unknown must be 'error' or 'skip', not {on_unknown!r}")
    if int8 is not None and len(dirs) != 1:
        raise ConfigError("--int8 names one int8 graph, so give exactly one DIR")
    if gen_steps < 1:
        raise ConfigError(f"--gen-steps must be >= 1, got {gen_steps}")
    check_target(out)
    text = _read_text(data)
    for d in dirs:  # check every folder and the text before the long runs start
        fp, _ = open_pair(d, int8)
        fp.info.vocab.encode(text, on_unknown=on_unknown)  # type: ignore[arg-type]
    results = []
    for d, name in zip(dirs, _names(dirs), strict=True):
        echo(f"drift {name}: {steps} steps x {streams} streams ...")
        r = run_drift(
            d,
            text,
            steps=steps,
            streams=streams,
            prompt=prompt,
            int8_path=int8,
            on_unknown=on_unknown,
            gen_steps=gen_steps,
            name=name,
        )  # type: ignore[arg-type]
        for note in r.notes:
            echo(f"  note: {note}")
        echo(f"  {r.seconds:.1f} s")
        results.append(r)
    settings = {
        "data": str(data),
        "steps": steps,
        "streams": streams,
        "on_unknown": on_unknown,
        "prompt": prompt,
        "gen_steps": gen_steps,
    }
    report = write_report(results, out, settings)
    for m in report["models"]:
        echo(f"{m['name']} ({m['arch']}): {m['verdict']}")
    echo(f"wrote {out}/report.html, report.md, report.json, drift.png")


def register(app: typer.Typer) -> None:
    app.command("drift")(drift)
