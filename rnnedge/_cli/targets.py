"""`rnnedge targets`: where graphs can run, whether each target runs here (and why not), and its set-up."""

from __future__ import annotations

import json

import typer

from rnnedge._cli.common import domain_errors, echo

targets_app = typer.Typer(
    help="Where graphs run: this CPU, emulated CPUs (x86 AVX2, ARM64), mobile, CUDA, TensorRT.",
    no_args_is_help=False,
    invoke_without_command=True,
    add_completion=False,
    rich_markup_mode=None,
)


@targets_app.callback()
@domain_errors
def list_targets(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """List every target: how it runs, whether it runs here (with the reason), its int8 path and recipes."""
    if ctx.invoked_subcommand is not None:
        return
    from rnnedge.targets import all_targets

    rows = []
    for spec in all_targets():
        why = spec.probe()
        rows.append(
            {
                "target": spec.name,
                "runs": spec.runs,
                "available": why.ok,
                "reason": why.reason,
                "device": spec.device,
                "int8_path": spec.int8_path(),
                "recipes": list(spec.recipes),
                "provider": spec.is_provider,
            }
        )
    if as_json:
        echo(json.dumps({"targets": rows}))
        return
    for r in rows:
        mark = "yes" if r["available"] else "no "
        echo(f"{r['target']:<13} {r['runs']:<9} runs here: {mark}  {r['reason']}")
        echo(f"{'':<13} int8: {r['int8_path']}; recipes: {', '.join(r['recipes'])}")
    echo("use one with --provider NAME on eval, generate and drift; quantize --verify-on NAME,...")


@targets_app.command("setup")
@domain_errors
def setup(
    name: str = typer.Argument(
        ..., help="The target to prepare: cpu-arm64 (builds its ARM64 sysroot), litert (its converter venv)."
    ),
) -> None:
    """Prepare a target that needs set-up (cached; offline after the first run)."""
    from rnnedge.errors import ConfigError
    from rnnedge.targets import check_target_name, target_spec

    key = check_target_name(name)
    if key == "cpu-arm64":
        from rnnedge.targets import arm64_sysroot

        arm64_sysroot.build(log=echo)
    elif key == "litert":
        from rnnedge.targets import litert_setup

        litert_setup.build(log=echo)
    elif target_spec(key).runs == "static":
        raise ConfigError(f"{key} needs no set-up here: rnnedge prepares and checks its graphs on this machine")
    why = target_spec(key).probe()
    echo(f"{key}: {'ready' if why.ok else 'not ready'}: {why.reason}")
    if not why.ok:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    app.add_typer(targets_app, name="targets")
