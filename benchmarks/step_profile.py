"""Step graph at batch 1: node counts, ONNX Runtime's per-op profile, and µs/token against the NumPy
floor and PyTorch eager, before and after the lean step pass (rnnedge/exporter/lean.py).

    python benchmarks/step_profile.py [--model CKPT] [--archs mingru,minlstm,...]
                                      [--threads 1 2] [--rounds 7] [--calls 400] [--write]

"before" is the step graph as the exporter wrote it until this pass existed: the T == 1 trace with
g(·) as torch.where, simplified by onnxsim alone. "after" is what `rnnedge export` writes now
(onnxsim + the lean pass; g as max(x + 0.5, σ(x))). The bundled checkpoint is measured as trained;
every other registered mixer at the same size (3 layers, d_model 128), randomly initialised. Also
ORT's mobile checker on each mixer's mobile graph (exporter/mobile.py, `--target mobile`).

Timings: ORT through rnnedge.runtime.StepSession (IOBinding, the runtime's own path), the floor from
rnnedge.runtime.floor (the graph's `rnnedge.matmuls` products in NumPy, BLAS threads 1 and N, the
faster), PyTorch eager calling the CharLM on one token. Each figure is the minimum over `--rounds`
interleaved rounds of the mean of `--calls` calls: the machine is shared and noisy, and the minimum
is the least disturbed estimate. Prints a table; writes benchmarks/results/step_profile.json only
with --write.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rnnedge import __version__  # noqa: E402
from rnnedge.assets import default_model_path  # noqa: E402
from rnnedge.exporter import mobile, trace  # noqa: E402
from rnnedge.exporter.simplify import onnxsim_simplify, step_simplify  # noqa: E402
from rnnedge.graphmeta import GraphInfo  # noqa: E402
from rnnedge.inference import open_graph, session_options  # noqa: E402
from rnnedge.io import write_json  # noqa: E402
from rnnedge.models import MIXER_NAMES, CharLM, ModelConfig, build_model, mixer_spec  # noqa: E402
from rnnedge.runtime.floor import measure_floors  # noqa: E402
from rnnedge.runtime.step import StepSession  # noqa: E402
from rnnedge.training.checkpoint import load_checkpoint  # noqa: E402
from rnnedge.vocab import CharVocab  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "step_profile.json"


@contextlib.contextmanager
def where_g() -> Iterator[None]:
    """Trace with the former g(x) = where(x >= 0, x + 0.5, σ(x)) (GreaterOrEqual/Add/Sigmoid/Where)."""
    import rnnedge.models.mingru as mingru
    import rnnedge.models.minlstm as minlstm

    def g(x: torch.Tensor) -> torch.Tensor:
        return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))

    saved = mingru.g, minlstm.g
    mingru.g = minlstm.g = g  # type: ignore[assignment]
    try:
        yield
    finally:
        mingru.g, minlstm.g = saved  # type: ignore[assignment]


def step_graphs(lm: CharLM, vocab: CharVocab) -> dict[str, onnx.ModelProto]:
    """{"before", "after"} step graphs of `lm`, each with the exporter's metadata."""
    cfg = lm.config
    info = GraphInfo("step", vocab, cfg.to_dict(), cfg.state_infos(), __version__, matmuls=cfg.weight_products())
    with where_g():
        before = onnxsim_simplify(onnx.load_from_string(trace.trace_step(lm, 17)))
    after = step_simplify(onnx.load_from_string(trace.trace_step(lm, 17)))
    for model in (before, after):
        onnx.helper.set_model_props(model, info.to_metadata())
    return {"before": before, "after": after}


def ort_optimized(path: Path) -> onnx.ModelProto:
    """The graph ONNX Runtime runs after its level-'all' optimizations."""
    opts = session_options(threads=1)
    opts.optimized_model_filepath = str(path.with_suffix(".ortopt.onnx"))
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return onnx.load(opts.optimized_model_filepath)


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    return dict(sorted(collections.Counter(n.op_type for n in model.graph.node).items()))


def profile(path: Path, calls: int) -> dict[str, Any]:
    """ORT's profiler, 1 thread: per op type, nodes and kernel µs per run (the profiler inflates every
    figure; compare the shares, not the absolute values with the timings)."""
    opts = session_options(threads=1, spinning=False)
    opts.enable_profiling = True
    opts.profile_file_prefix = str(path.with_suffix(""))
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feeds = {}
    for inp in sess.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in inp.shape]
        feeds[inp.name] = np.zeros(shape, np.int64 if inp.type == "tensor(int64)" else np.float32)
    for _ in range(calls):
        sess.run(None, feeds)
    events = json.loads(Path(sess.end_profiling()).read_text())
    kernels: dict[str, list[float]] = collections.defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            kernels[e["args"]["op_name"]].append(float(e["dur"]))
    runs = [float(e["dur"]) for e in events if e.get("name") == "model_run"]
    per_op = {
        op: {"nodes": round(len(d) / calls), "us_per_run": round(sum(d) / calls, 2)}
        for op, d in sorted(kernels.items(), key=lambda kv: -sum(kv[1]))
    }
    total = sum(v["us_per_run"] for v in per_op.values())
    for v in per_op.values():
        v["share"] = round(v["us_per_run"] / total, 3) if total else 0.0
    return {"model_run_median_us": float(np.median(runs)), "kernel_us_per_run": round(total, 2), "ops": per_op}


def timer(fn: Callable[[], Any], calls: int) -> Callable[[], float]:
    """A callable that runs `fn` `calls` times and returns µs per call."""

    def once() -> float:
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - t0) / calls * 1e6

    return once


def ort_step(path: Path, threads: int) -> Callable[[], Any]:
    """One token through StepSession (the runtime's IOBinding path)."""
    sess = StepSession(path, threads=threads)
    return lambda: sess.feed(3, copy=False)


def ort_setting(path: Path, threads: int, spinning: bool, optimization: str) -> Callable[[], Any]:
    """One token through GraphSession.run (feed dict) with a given ORT setting (the settings table)."""
    graph = open_graph(path, "step", None, threads, spinning=spinning, optimization=optimization)
    ids, states = np.array([3]), graph.zero_states(1)
    return lambda: graph.run(ids, states)


def eager_step(lm: CharLM, threads: int) -> Callable[[], Any]:
    ids = torch.tensor([[3]])  # (1, 1)
    state = lm.init_state(1)

    def step() -> None:
        torch.set_num_threads(threads)
        with torch.inference_mode():
            lm(ids, state)

    return step


def interleaved_min(contenders: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    best = {k: float("inf") for k in contenders}
    for fn in contenders.values():
        fn()  # warm-up
    for _ in range(rounds):
        for k, fn in contenders.items():
            best[k] = min(best[k], fn())
    return {k: round(v, 2) for k, v in best.items()}


def measure_arch(lm: CharLM, vocab: CharVocab, tmp: Path, args: argparse.Namespace, detail: bool) -> dict[str, Any]:
    graphs = step_graphs(lm, vocab)
    paths = {}
    out: dict[str, Any] = {"params": lm.num_params(), "graphs": {}}
    for name, model in graphs.items():
        paths[name] = tmp / f"{lm.config.arch}.{name}.onnx"
        onnx.save(model, paths[name])
        optimized = ort_optimized(paths[name])
        out["graphs"][name] = {
            "nodes": len(model.graph.node),
            "ort_nodes": len(optimized.graph.node),
            "op_types": op_counts(model),
            "ort_op_types": op_counts(optimized),
        }
    try:  # ORT's mobile checker on the mobile target's graph (rnnedge export --target mobile)
        mobile_model, _ = mobile.build(graphs["after"])
        out["mobile_checker"] = mobile.usability(mobile_model.SerializeToString())
    except Exception as exc:  # a mixer the mobile rewrite cannot express: say so, keep measuring
        out["mobile_checker"] = {"error": f"{type(exc).__name__}: {exc}"}
    matmuls = [list(m) for m in lm.config.weight_products()]
    out["latency"] = {}
    for threads in args.threads:
        contenders = {
            "ort_before": timer(ort_step(paths["before"], threads), args.calls),
            "ort_after": timer(ort_step(paths["after"], threads), args.calls),
            "torch_eager": timer(eager_step(lm, threads), max(50, args.calls // 4)),
        }
        if detail:  # GraphSession.run with a feed dict: ORT settings against each other
            for spin in (True, False):
                for level in ("all", "extended", "basic"):
                    key = f"run_{level}_{'spin' if spin else 'nospin'}"
                    contenders[key] = timer(ort_setting(paths["after"], threads, spin, level), args.calls)
        floor = min(measure_floors(matmuls, threads, (1,))["batch1"]["shape_floor_us"] for _ in range(2))
        fig = interleaved_min(contenders, args.rounds)
        fig["numpy_floor"] = round(floor, 2)
        fig["after_vs_floor"] = round(fig["ort_after"] / floor, 2)
        fig["before_vs_floor"] = round(fig["ort_before"] / floor, 2)
        fig["eager_vs_after"] = round(fig["torch_eager"] / fig["ort_after"], 2)
        fig["eager_vs_before"] = round(fig["torch_eager"] / fig["ort_before"], 2)
        out["latency"][f"threads{threads}"] = fig
    eager_best = min(fig["torch_eager"] for fig in out["latency"].values())  # torch at its best thread count
    for fig in out["latency"].values():
        fig["eager_best_vs_after"] = round(eager_best / fig["ort_after"], 2)
    if detail:
        out["profile"] = {name: profile(paths[name], args.calls * 2) for name in paths}
    return out


def print_table(results: dict[str, Any]) -> None:
    print(f"{'mixer':<9}{'nodes b/a':>11}{'ORT nodes b/a':>15}  thr  {'before':>8}{'after':>8}{'floor':>8}"
          f"{'eager':>9}{'a/floor':>9}{'eager/a':>9}{'best eager/a':>13}")  # fmt: skip
    for arch, r in results["mixers"].items():
        g = r["graphs"]
        for key, fig in r["latency"].items():
            print(
                f"{arch:<9}{g['before']['nodes']:>5}/{g['after']['nodes']:<5}{g['before']['ort_nodes']:>8}/"
                f"{g['after']['ort_nodes']:<6}{key[7:]:>4}  {fig['ort_before']:>8.1f}{fig['ort_after']:>8.1f}"
                f"{fig['numpy_floor']:>8.1f}{fig['torch_eager']:>9.1f}{fig['after_vs_floor']:>9.2f}"
                f"{fig['eager_vs_after']:>9.2f}{fig['eager_best_vs_after']:>13.2f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path(default_model_path()), help="checkpoint (bundled)")
    parser.add_argument("--archs", default=",".join(MIXER_NAMES), help="mixers at the same size (default: all)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--write", action="store_true", help=f"write {OUT.relative_to(ROOT)}")
    args = parser.parse_args()
    loaded = load_checkpoint(args.model)
    base = loaded.model.eval()
    results: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_avg_start": os.getloadavg(),
            "versions": {"onnxruntime": ort.__version__, "onnx": onnx.__version__, "torch": torch.__version__},
        },
        "method": "min over interleaved rounds of the mean of N calls; batch 1; µs per token",
        "rounds": args.rounds,
        "calls": args.calls,
        "mixers": {},
    }
    with tempfile.TemporaryDirectory(prefix="rnnedge-step-profile-") as tmp:
        for arch in args.archs.split(","):
            mixer_spec(arch)
            if arch == base.config.arch:
                lm, label = base, "checkpoint"
            else:
                torch.manual_seed(0)
                cfg = ModelConfig(**{**base.config.to_dict(), "arch": arch})
                lm, label = build_model(cfg).eval(), "random init, same size"
            r = measure_arch(lm, loaded.vocab, Path(tmp), args, detail=arch == base.config.arch)
            results["mixers"][arch] = {"weights": label, **r}
            print(f"{arch}: done", file=sys.stderr)
    results["machine"]["load_avg_end"] = os.getloadavg()
    print_table(results)
    if args.write:
        write_json(OUT, results)
        print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
