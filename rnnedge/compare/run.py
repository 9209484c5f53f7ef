"""`run_compare`: check every argument, export and quantize checkpoints, measure each model, write the report.

1. settings, the target folder and every argument are checked first (one line each, nothing written);
2. checkpoints are exported (`exporter`, i.e. rnnedge.exporter.export_model) into a work folder
   beside the report, then quantized to the variant (rnnedge.quantization.quantize_export; the
   text's first 90% calibrates, the held-out 10% checks); export folders are measured as given;
3. each export is measured (measure.py) on the held-out text;
4. the report and the exports made here go into the report folder (REPORT/exports/<name>/) in one
   atomic commit (rnnedge.drift.folder); the work folder is removed whatever happens.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rnnedge.compare.measure import Log, Measured, measure_export
from rnnedge.compare.report import COMPARE, EXPORTS, REPORT_FILES, write_report
from rnnedge.compare.settings import HELD_OUT_FRACTION, CompareSettings, held_out
from rnnedge.compare.sources import (
    CHECKPOINT,
    Source,
    check_comparable,
    check_outside,
    check_variant,
    read_source,
    unique_names,
)
from rnnedge.drift.folder import check_target
from rnnedge.inference import encode_text, read_text
from rnnedge.io import display_name, write_text
from rnnedge.quantization.recipes import recipe

# (checkpoint folder, export folder to write, parallel-graph max_seq_len) -> None
Exporter = Callable[[Path, Path, int], None]
# the model config of an export's metadata -> its costs (rnnedge.models.costs.ModelCosts.to_dict())
Costs = Callable[[dict[str, Any]], dict[str, Any]]
MIN_HELD_OUT = 32  # characters of held-out text at least (rnnedge.inference.text.MIN_CHARS)
# The quantizer's own check of a variant made here reads this many held-out characters (the comparison
# scores the whole held-out text itself); more only slows it down (a transformer's step graph most).
QUANTIZE_CHECK_CHARS = 16384


def _nearest_folder(path: Path) -> Path:
    path = path.absolute()
    while not path.is_dir():
        path = path.parent
    return path


def _quantize(folder: Path, variant: str, calib: Path, held: Path, log: Log) -> None:
    from rnnedge.quantization import quantize_export

    quantize_export(folder, variant, calib_text=calib, eval_text=held, log=lambda m: log(f"  {m}"))


def _prepare(
    source: Source, work: Path, texts: tuple[Path, Path], settings: CompareSettings, exporter: Exporter | None, log: Log
) -> Path:
    """The export folder to measure: the given one, or the checkpoint exported and quantized in `work`."""
    if source.kind != CHECKPOINT:
        return source.path
    if exporter is None:
        raise ValueError("a checkpoint needs an exporter")
    folder = work / EXPORTS / source.name
    log(f"{source.name}: exporting {source.path} (max_seq_len {settings.max_seq_len})")
    exporter(source.path, folder, settings.max_seq_len)
    log(f"{source.name}: quantizing to {settings.variant}")
    _quantize(folder, settings.variant, texts[0], texts[1], log)
    return folder


def _staged_files(work: Path) -> dict[str, Path]:
    """{path relative to the report: staged file} of every export made in `work`."""
    root = work / EXPORTS
    if not root.is_dir():
        return {}
    return {p.relative_to(work).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def run_compare(
    paths: Sequence[str | Path],
    data: str | Path,
    out: str | Path,
    settings: CompareSettings,
    *,
    exporter: Exporter | None,
    costs: Costs,
    data_label: str | None = None,
    log: Log = print,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Compare the models at `paths` (checkpoints or export folders) on the text file `data`; write
    REPORT/compare.{json,md,html} and plots into `out` and return the compare.json object.

    `exporter` exports a checkpoint (None: only export folders are accepted); `costs` counts a model's
    parameters and MACs per token from its config. `data_label` names the text in the report.
    """
    if not paths:
        raise ValueError("nothing to compare")
    folders = [Path(p) for p in paths]
    out = Path(out)
    names = unique_names(folders)
    sources = [read_source(p, n) for p, n in zip(folders, names, strict=True)]
    if any(s.kind == CHECKPOINT for s in sources):  # quantized here: the variant must be a recipe (aliases resolved)
        settings = dataclasses.replace(settings, variant=recipe(settings.variant).name)
    check_comparable(sources)
    for s in sources:
        check_variant(s, settings.variant)
        check_outside(s, out)
        if s.kind == CHECKPOINT and exporter is None:
            raise ValueError(f"{s.path} is a checkpoint and no exporter was given")
    check_target(out, REPORT_FILES, COMPARE, overwrite=overwrite)
    text = read_text(data, what="--data", min_chars=math.ceil(MIN_HELD_OUT / HELD_OUT_FRACTION))
    calib, held = held_out(text)
    held = held[: settings.eval_chars] if settings.eval_chars else held
    ids = encode_text(held, sources[0].vocab, settings.on_unknown, what="the held-out text", min_chars=MIN_HELD_OUT)  # type: ignore[arg-type]
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.work-", dir=_nearest_folder(out.parent)))
    try:
        texts = (work / "calib.txt", work / "quantize_check.txt")
        write_text(texts[0], calib)  # a full disk here: one line (rnnedge.io), the work folder removed
        write_text(texts[1], held[:QUANTIZE_CHECK_CHARS])
        measured: list[Measured] = []
        for s in sources:
            folder = _prepare(s, work, texts, settings, exporter, log)
            log(f"{s.name} ({s.arch}): measuring {folder}")
            m = measure_export(s, folder, held, ids, settings, costs(s.config), log)
            if s.kind == CHECKPOINT:
                m.entry["source"]["export"] = f"{EXPORTS}/{s.name}"
            measured.append(m)
        data_info = {
            "path": data_label or display_name(data),
            "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
            "chars": len(text),
            "held_out_chars": len(held),
        }
        return write_report(measured, out, settings, data_info, _staged_files(work), overwrite=overwrite)
    finally:
        shutil.rmtree(work, ignore_errors=True)
