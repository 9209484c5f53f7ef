"""The LiteRT converter step, run as a script under the converter's own Python (TensorFlow + onnx2tf):

    python litert_convert.py --onnx step.onnx --out DIR [--int8 rep.npz]

writes DIR/step.tflite (onnx2tf's float32 conversion: TFLite built-in ops only, the signature's inputs
and outputs named as in the ONNX graph) and, with `--int8`, DIR/step.int8.tflite: the TFLite converter's
full-integer quantization (`TFLITE_BUILTINS_INT8`, int8 weights and activations, the recurrent state
included; float32 I/O through QUANTIZE/DEQUANTIZE) calibrated on the representative dataset `rep.npz`
(one array per input, first axis = sample: real step inputs with their states). Prints one JSON line:
the files, the int8 model's output names -> the ONNX output names, and the versions.

Standalone on purpose (stdlib, NumPy, onnx2tf, TensorFlow; no rnnedge import): rnnedge reaches it by a
subprocess (targets/litert.py: converter_python), so TensorFlow never loads into rnnedge's process. onnx2tf
runs `onnxsim IN IN`, overwriting its input file: the graph is always converted from a private copy.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ERROR = "litert_convert: error: "  # the prefix of the one line a failure writes to stderr


def convert_float(onnx_path: Path, work: Path) -> tuple[Path, Path]:
    """(the float32 .tflite, the SavedModel folder) onnx2tf writes for a private copy of the graph."""
    import onnx2tf

    copy = work / "graph.onnx"
    shutil.copyfile(onnx_path, copy)  # onnx2tf overwrites its input (onnxsim IN IN)
    saved = work / "saved_model"
    onnx2tf.convert(
        input_onnx_file_path=str(copy),
        output_folder_path=str(saved),
        output_signaturedefs=True,
        non_verbose=True,
    )
    tflite = saved / "graph_float32.tflite"
    if not tflite.is_file():
        raise SystemExit(f"onnx2tf wrote no {tflite.name}")
    return tflite, saved


def convert_int8(saved: Path, rep_path: Path) -> bytes:
    """Full-integer int8 quantization of the SavedModel, calibrated on every sample of rep.npz."""
    import numpy as np
    import tensorflow as tf

    rep = np.load(rep_path)
    names = list(rep.files)
    samples = rep[names[0]].shape[0]

    def dataset():  # one dict of signature inputs per real step
        for i in range(samples):
            yield {name: rep[name][i] for name in names}

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = dataset
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def match_outputs(float_path: Path, int8: bytes, rep_path: Path) -> dict[str, str]:
    """The int8 model's output names (the TFLite converter renames them output_0, ...) -> the float
    model's (the ONNX names), matched by shape and value on the first representative sample."""
    import numpy as np
    import tensorflow as tf

    rep = np.load(rep_path)
    feed = {name: rep[name][0] for name in rep.files}
    want = tf.lite.Interpreter(model_path=str(float_path)).get_signature_runner()(**feed)
    got = tf.lite.Interpreter(model_content=int8).get_signature_runner()(**feed)
    mapping: dict[str, str] = {}
    for key, value in got.items():
        free = [n for n in want if n not in mapping.values() and want[n].shape == value.shape]
        if not free:
            raise SystemExit(f"int8 output {key} {value.shape} matches no float output")
        mapping[key] = min(free, key=lambda n: float(np.abs(want[n] - value).max()))
    return mapping


def versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for name in ("tensorflow", "tensorflow-cpu", "onnx2tf", "onnx", "onnxsim", "numpy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--int8", type=Path, default=None, help="representative dataset (.npz) for full-int8")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except Exception as exc:  # TensorFlow / onnx2tf: one line the caller can show
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        sys.stderr.write(f"{ERROR}{type(exc).__name__}: {first}\n")
        return 1


def run(args: argparse.Namespace) -> int:
    """The conversion `main` parsed."""
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict = {"files": [], "versions": versions()}
    with tempfile.TemporaryDirectory(prefix="rnnedge-litert-") as tmp:
        float_path, saved = convert_float(args.onnx.resolve(), Path(tmp))
        shutil.copyfile(float_path, args.out / "step.tflite")
        report["files"].append("step.tflite")
        if args.int8 is not None:
            int8 = convert_int8(saved, args.int8)
            report["int8_outputs"] = match_outputs(float_path, int8, args.int8)
            (args.out / "step.int8.tflite").write_bytes(int8)
            report["files"].append("step.int8.tflite")
    sys.stdout.write(json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
