"""Every graph rnnedge writes for a device, for every mixer, is one other runtimes take as it is (issue 22):
no Erf where a device graph must do without it, no symbolic value_info contradicting a fixed shape,
metadata that says what the graph declares (states layout, fixed batch, ids dtype), scan Slices whose
bounds stay in range under a symbolic T (tract), the `--ids` choice, and a graph changed after the
export (a converter run in place) loading with one warning line.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from rnnedge.cli import app
from rnnedge.errors import ExportChanged, GraphError
from rnnedge.exporter import export_model
from rnnedge.exporter.portable import check_metadata, declared_io
from rnnedge.graphio import io_mismatches
from rnnedge.graphmeta import INPUT_IDS, parse_metadata
from rnnedge.inference import open_graph
from rnnedge.inference.files import changed_since_export
from rnnedge.models import MIXER_NAMES
from rnnedge.quantization import quantize_export
from rnnedge.targets import target_spec
from tests.conftest import TEXT
from tests.device_support import MAX_SEQ_LEN, RECIPES, DeviceExport, device_exports  # noqa: F401

ERF_FREE = ("mobile/step.onnx", "qnn-htp/step.onnx", "opset20/step.onnx", "opset20/parallel.onnx")
# parallel graphs tract cannot type with T symbolic, and why (rnnedge's tract target gives concrete shapes)
SYMBOLIC_T_UNSUPPORTED = {"transformer": "Undetermined symbol"}  # its window padding: T rounded up to a multiple
FIXED = {"mobile/step.onnx": ("int32", 1), "qnn-htp/step.onnx": ("int64", 1)}  # graph -> (ids dtype, batch)


def meta_of(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def test_every_mixer_writes_every_device_graph(device_exports: dict[str, DeviceExport]) -> None:  # noqa: F811
    want = {"step.onnx", "parallel.onnx", "mobile/step.onnx", "qnn-htp/step.onnx", *ERF_FREE}
    want |= {f"{kind}.{r}.onnx" for kind in ("step", "parallel") for r in RECIPES}
    assert set(device_exports) == set(MIXER_NAMES)
    for arch, export in device_exports.items():
        assert set(export.graphs) == want, arch
        assert all(p.is_file() for p in export.graphs.values()), arch


def test_device_graphs_have_no_erf(device_exports: dict[str, DeviceExport]) -> None:  # noqa: F811
    """Exact GELU's Erf is not a TFLite built-in (FlexErf) and QNN refuses it: the mobile and qnn-htp graphs
    and an --opset 20 export (the Gelu op) have none, for every mixer."""
    for arch, export in device_exports.items():
        for name in ERF_FREE:
            ops = {n.op_type for n in onnx.load(export.graphs[name]).graph.node}
            assert "Erf" not in ops, (arch, name)
        assert "Gelu" in {n.op_type for n in onnx.load(export.graphs["opset20/step.onnx"]).graph.node}


def test_no_value_info_contradicts_a_fixed_shape(device_exports: dict[str, DeviceExport]) -> None:  # noqa: F811
    """A graph with symbolic inputs carries no value_info (tract: `Impossible to unify Sym(batch) with
    Val(1)`); a fixed-shape graph's value_info has only fixed dims."""
    for arch, export in device_exports.items():
        for name, path in export.graphs.items():
            model = onnx.load(path)
            fixed = all(isinstance(d, int) for _, shape in declared_io(model).values() for d in shape)
            symbolic = [
                v.name
                for v in model.graph.value_info
                if any(not d.HasField("dim_value") for d in v.type.tensor_type.shape.dim)
            ]
            assert not symbolic if fixed else not model.graph.value_info, (arch, name, symbolic[:3])


def test_metadata_says_what_each_graph_declares(device_exports: dict[str, DeviceExport]) -> None:  # noqa: F811
    """States layout, fixed batch and ids dtype in the metadata are the graph's own, for every graph."""
    for arch, export in device_exports.items():
        for name, path in export.graphs.items():
            model = onnx.load(path)
            info = parse_metadata(meta_of(model), name)
            assert io_mismatches(info, declared_io(model), strict=True) == [], (arch, name)
            ids, batch = FIXED.get(name, ("int64", None))
            assert (info.ids_dtype, info.fixed_batch) == (ids, batch), (arch, name)
            assert all(s.shape[0] == (batch or "batch") for s in info.states), (arch, name)


def test_a_lying_metadata_is_refused_before_writing_and_on_load(
    device_exports: dict[str, DeviceExport],  # noqa: F811
    tmp_path: Path,
) -> None:
    """The mobile graph's old lie (states ["batch", d] on a [1, d] graph) and a wrong ids dtype: the
    exporter's check refuses both; loading refuses the ids dtype and a contradicting fixed batch."""
    model = onnx.load(device_exports["mingru"].graphs["mobile/step.onnx"])
    meta = meta_of(model)
    states = json.loads(meta["rnnedge.states"])
    for lie in (
        {"rnnedge.states": json.dumps([{**s, "shape": ["batch", *s["shape"][1:]]} for s in states])},
        {"rnnedge.ids_dtype": "int64"},
    ):
        onnx.helper.set_model_props(model, {**meta, **lie})
        with pytest.raises(GraphError, match="metadata contradicts the graph"):
            check_metadata(model, "mobile step")
        path = tmp_path / "lie.onnx"
        onnx.save(model, path)
        if "rnnedge.ids_dtype" in lie:
            with pytest.raises(GraphError, match=r"input_ids is int32 but rnnedge\.ids_dtype says int64"):
                open_graph(path)
        else:  # an older rnnedge wrote exactly this: still loads, and serves any batch in calls of 1
            graph = open_graph(path)
            assert graph.fixed_batch == 1 and graph.ids_dtype == np.int32
            logits, _ = graph.run(np.array([1, 2, 3]), graph.zero_states(3))
            assert logits.shape[0] == 3
    onnx.helper.set_model_props(model, {**meta, "rnnedge.fixed_batch": "2"})
    with pytest.raises(GraphError, match=r"contradicts rnnedge\.fixed_batch"):
        parse_metadata(meta_of(model))


def test_scan_slices_stay_in_range_with_a_symbolic_time(device_exports: dict[str, DeviceExport]) -> None:  # noqa: F811
    """tract keeps a parallel graph's T symbolic when told so and does not clamp Slice bounds: the doubling
    scan's shifts (portable.py: Pad + Slice, end T; aaren's self-shift, end T from Shape) must stay in
    range for any T below 2^levels."""
    if not target_spec("tract").probe().ok:
        pytest.skip("tract is not installed (pip install 'rnnedge[runtimes]')")
    import tract

    for arch, export in device_exports.items():
        path = export.graphs["parallel.onnx"]
        ref = open_graph(path, "parallel", threads=1)
        model = tract.onnx().load(str(path))
        names = [model.input_name(i) for i in range(model.input_count())]
        states = {s.input: s for s in ref.info.states}
        for k, name in enumerate(names):
            dims = ["1", "T"] if name == INPUT_IDS else ["1", *(str(d) for d in states[name].shape[1:])]
            kind = "i64" if name == INPUT_IDS else {"float32": "f32", "int64": "i64"}[states[name].dtype]
            model.set_input_fact(k, ",".join([*dims, kind]))
        if arch in SYMBOLIC_T_UNSUPPORTED:
            with pytest.raises(tract.TractError, match=SYMBOLIC_T_UNSUPPORTED[arch]):
                model.into_model().into_runnable()
            continue
        runnable = model.into_model().into_runnable()
        for t in (1, 3, MAX_SEQ_LEN):
            ids = (np.arange(t, dtype=np.int64) % 7)[None]  # (1, T)
            zero = ref.zero_states(1)
            want, _ = ref.run(ids, zero)
            feed = {INPUT_IDS: ids, **{s.input: z for s, z in zip(ref.info.states, zero, strict=True)}}
            got = runnable.run([feed[n] for n in names])[0].to_numpy()
            assert float(np.abs(got - want).max()) <= 1e-4, (arch, t)


def test_ids_option_sets_the_targets_graphs(device_exports: dict[str, DeviceExport], tmp_path: Path) -> None:  # noqa: F811
    """`--ids int32` on the default target: step and parallel take int32 (and run); `--target mobile
    --ids int64`: the mobile graph takes int64 (what onnx2tf converts) while step.onnx stays int64."""
    ckpt = device_exports["gru"].folder.parent / "gru-ckpt"
    runner = CliRunner()
    out = tmp_path / "i32"
    res = runner.invoke(app, ["export", str(ckpt), "--out", str(out), "--max-seq-len", "32", "--ids", "int32"])
    assert res.exit_code == 0, res.output
    for kind in ("step", "parallel"):
        graph = open_graph(out / f"{kind}.onnx", kind)
        assert graph.ids_dtype == np.int32 and graph.info.ids_dtype == "int32"
        assert onnx.load(out / f"{kind}.onnx").graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.INT32
    (tmp_path / "calib.txt").write_text(TEXT[:2000])
    quantize_export(out, "int8-qdq", calib_text=tmp_path / "calib.txt")  # calibration feeds the graph's int32
    variant = open_graph(out / "step.int8-qdq.onnx", "step")
    assert variant.ids_dtype == np.int32 and variant.info.ids_dtype == "int32"
    assert np.isfinite(variant.run(np.array([1, 2]), variant.zero_states(2))[0]).all()
    mobile = export_model(ckpt, tmp_path / "m64", max_seq_len=32, target="mobile", ids="int64", verify=True)
    assert all(c["passed"] for c in mobile.manifest["mobile"]["verification"])
    graph = open_graph(tmp_path / "m64" / "mobile" / "step.onnx", "step")
    assert graph.ids_dtype == np.int64 and (graph.info.ids_dtype, graph.info.fixed_batch) == ("int64", 1)
    res = runner.invoke(app, ["export", str(ckpt), "--out", str(tmp_path / "bad"), "--ids", "int16"])
    assert res.exit_code == 1 and "--ids must be one of int64, int32" in res.output
    assert not (tmp_path / "bad").exists()


def test_a_graph_changed_after_the_export_loads_with_one_warning(
    device_exports: dict[str, DeviceExport],  # noqa: F811
    tmp_path: Path,
) -> None:
    """onnx2tf runs `onnxsim IN IN`: a graph rewritten in place no longer has the sha256 the export's ledger
    (or an older export's manifest) records. Loading it says so in one line; inspect reports it."""
    folder = tmp_path / "export"
    shutil.copytree(device_exports["elman"].folder, folder)
    assert changed_since_export(folder / "step.onnx") is None
    model = onnx.load(folder / "step.onnx")
    model.producer_name = "onnxsim"  # what an in-place simplifier leaves: the same graph, other bytes
    onnx.save(model, folder / "step.onnx")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        open_graph(folder / "step.onnx")
    notes = [str(w.message) for w in seen if issubclass(w.category, ExportChanged)]
    assert len(notes) == 1 and "step.onnx changed since rnnedge wrote it" in notes[0] and "copy" in notes[0]
    res = CliRunner().invoke(app, ["generate", str(folder), "--prompt", "Fi", "-n", "5"])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("rnnedge: warning: ") and "step.onnx changed" in lines[0]
    res = CliRunner().invoke(app, ["inspect", str(folder)])
    assert res.exit_code == 0 and "changed: " in res.stdout
    ledger = folder / ".rnnedge-ledger.json"  # an older rnnedge's folder: the manifest's sha256 decides
    ledger.unlink()
    assert "manifest.json" in (changed_since_export(folder / "step.onnx") or "")
    assert changed_since_export(folder / "parallel.onnx") is None
