"""Long runs: a 1,000,000-token stream through an export's step graph stays finite and in constant memory.

Two loops over one step graph, one stream each (batch 1), --tokens tokens each:
  generate  StepSession fed its own samples (temperature 1), as `rnnedge generate` runs it: the
            session's double-buffered state carried from token to token;
  drift     the inference layer's StepRunner.step over the text of --data, cycled, as `rnnedge drift`
            runs a graph: state arrays carried step to step, NLL of the next character summed.
Each loop checks the logits are finite at every token and the floating-point states (finite, largest
|value|) every --check-every tokens, and reads the process's resident memory (VmRSS, from
rnnedge.runtime.memory) after a warm-up and at the end: the growth per 1,000 tokens says whether memory is
constant. The memory probe is a parameter, so tests run the same loops under tracemalloc.

    python benchmarks/long_stream.py [--tokens 1000000] [--export DIR] [--variant fp32] [--data PATH]
                                     [--threads 1] [--check-every 1000] [--write]

--export defaults to the bundled default model, exported once into a temp folder (needs torch). --data
defaults to tiny-shakespeare (downloaded once and cached); characters outside the model's vocabulary are
skipped. --write puts the JSON into benchmarks/results/long_stream.json; exit 1 if a check failed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rnnedge.errors import RnnedgeError
from rnnedge.graphmeta import FP32
from rnnedge.inference import StepRunner, graph_path, nll, open_graph
from rnnedge.io import write_json
from rnnedge.runtime import StepSession
from rnnedge.runtime.memory import resident
from rnnedge.runtime.sampling import Sampler

RESULTS = Path(__file__).resolve().parent / "results" / "long_stream.json"
WARMUP = 1000  # tokens before the starting memory reading: allocator pools and ORT arenas settle first
FLAT_BYTES = 4 << 20  # memory growth below this over the whole run counts as constant (RSS is page-grained)
Probe = Callable[[], int | None]


def rss_bytes() -> int | None:
    """This process's resident set (VmRSS) in bytes, or None where Linux's /proc is missing."""
    now = resident()
    return None if now is None else now["rss"]


class Checks:
    """Finiteness and size of what one loop produced, and memory from the end of the warm-up to the end."""

    def __init__(self, float_states: list[int], check_every: int, tokens: int, probe: Probe) -> None:
        self.float_states = float_states  # positions of the floating-point states
        self.every = max(1, min(check_every, tokens))
        self.tokens = tokens
        self.warm = WARMUP if tokens > WARMUP else 0
        self.probe = probe
        self.logits_finite = self.states_finite = True
        self.max_state = 0.0
        self.at: dict[str, float] = {}
        self.memory_start: int | None = None
        self.t0 = time.perf_counter()

    def before(self, t: int) -> None:
        """Before token t (1-based): the timed part, and its memory reading, start after the warm-up."""
        if t == self.warm + 1:
            self.memory_start = self.probe()
            self.t0 = time.perf_counter()

    def due(self, t: int) -> bool:
        """Whether the states are checked after token t."""
        return t % self.every == 0 or t == self.tokens

    def after(self, t: int, logits: np.ndarray, states: list[np.ndarray]) -> None:
        """After token t: logits (1, V) every time; `states` (all of them) when due(t)."""
        self.logits_finite = self.logits_finite and bool(np.isfinite(logits).all())
        if not self.due(t):
            return
        floats = [states[i] for i in self.float_states]
        self.states_finite = self.states_finite and all(bool(np.isfinite(s).all()) for s in floats)
        largest = max((float(np.abs(s).max()) for s in floats), default=0.0)
        self.max_state = max(self.max_state, largest)
        if t == self.every or t == self.tokens or t % max(1, self.tokens // 10) == 0:
            self.at[str(t)] = largest

    def result(self) -> dict[str, Any]:
        seconds = time.perf_counter() - self.t0
        end = self.probe()
        growth = None if end is None or self.memory_start is None else end - self.memory_start
        timed = self.tokens - self.warm
        return {
            "tokens": self.tokens,
            "warmup_tokens": self.warm,
            "us_per_token": seconds / timed * 1e6,
            "all_logits_finite": self.logits_finite,
            "all_states_finite": self.states_finite,
            "max_abs_state": self.max_state,
            "max_abs_state_at": self.at,
            "checked_every": self.every,
            "memory_start_bytes": self.memory_start,
            "memory_end_bytes": end,
            "memory_growth_bytes": growth,
            "memory_growth_bytes_per_1k_tokens": None if growth is None else growth / timed * 1000,
        }


def _float_positions(info: Any) -> list[int]:
    return [i for i, s in enumerate(info.states) if s.dtype.startswith("float")]


def generate_loop(
    export: Path,
    tokens: int,
    variant: str = FP32,
    threads: int = 1,
    check_every: int = 1000,
    probe: Probe = rss_bytes,
) -> dict[str, Any]:
    """Sample `tokens` tokens, each fed back into the StepSession (the `rnnedge generate` path)."""
    session = StepSession(export, variant=variant, threads=threads)
    checks = Checks(_float_positions(session.info), check_every, tokens, probe)
    names = session.state_names
    sampler = Sampler(temperature=1.0, seed=0)
    logits = session.feed(0, copy=False)  # (1, V)
    for t in range(1, tokens + 1):
        checks.before(t)
        logits = session.feed(sampler(logits), copy=False)  # (1, V)
        state = session.state if checks.due(t) else {}  # a copy: only when it is checked
        checks.after(t, logits, [state[n] for n in names] if state else [])
    return checks.result()


def drift_loop(
    export: Path,
    ids: np.ndarray,
    tokens: int,
    variant: str = FP32,
    threads: int = 1,
    check_every: int = 1000,
    probe: Probe = rss_bytes,
) -> dict[str, Any]:
    """Feed `tokens` ids (cycling through `ids`) through StepRunner.step with carried state (the drift path)."""
    graph = open_graph(graph_path(export, "step", variant), "step", threads=threads)
    runner = StepRunner(graph)
    checks = Checks(_float_positions(graph.info), check_every, tokens, probe)
    state = runner.zeros(1)
    total, n = 0.0, len(ids)
    for t in range(1, tokens + 1):
        checks.before(t)
        x = ids[(t - 1) % n : (t - 1) % n + 1]  # (1,)
        logits, state = runner.step(x, state)  # (1, V)
        total += float(nll(logits, ids[t % n : t % n + 1])[0])
        checks.after(t, logits, state)
    return {**checks.result(), "mean_nll_nats": total / tokens}


def passed(result: dict[str, Any]) -> bool:
    """Finite everywhere, and (where memory was read) no more than FLAT_BYTES of growth over the run."""
    growth = result["memory_growth_bytes"]
    finite = result["all_logits_finite"] and result["all_states_finite"]
    return finite and (growth is None or growth <= FLAT_BYTES)


def default_export(folder: Path) -> Path:
    """The bundled default model exported into `folder` (step graph checked; needs torch)."""
    from rnnedge.assets import default_model_path
    from rnnedge.exporter import export_model

    return export_model(default_model_path(), folder / "export", max_seq_len=4096, simplify=False).out_dir


def text_ids(data: str, vocab: Any) -> np.ndarray:
    """The ids of the text at `data` ('shakespeare': the cached download), unknown characters skipped."""
    from rnnedge.inference import read_text
    from rnnedge.training.data import resolve_data

    ids = vocab.encode(read_text(resolve_data(data), what="--data"), on_unknown="skip")
    if len(ids) < 2:
        raise RnnedgeError(f"--data {data} has fewer than 2 characters in the model's vocabulary")
    return ids


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=1_000_000, help="tokens per loop (default 1,000,000)")
    ap.add_argument("--export", type=Path, help="export folder (default: the bundled model, exported here)")
    ap.add_argument("--variant", default=FP32, help="precision variant of the step graph (default fp32)")
    ap.add_argument("--data", default="shakespeare", help="text the drift loop cycles through")
    ap.add_argument("--check-every", type=int, default=1000, help="tokens between state checks")
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (default 1)")
    ap.add_argument("--write", action="store_true", help=f"write {RESULTS.relative_to(RESULTS.parents[2])}")
    args = ap.parse_args(argv)
    if args.tokens < 1 or args.check_every < 1 or args.threads < 1:
        ap.error("--tokens, --check-every and --threads must be positive")
    try:
        with tempfile.TemporaryDirectory(prefix="rnnedge-long-") as tmp:
            export = args.export or default_export(Path(tmp))
            vocab = StepSession(export, variant=args.variant).vocab
            ids = text_ids(args.data, vocab)
            result = {
                "export": "bundled default model" if args.export is None else str(args.export),
                "variant": args.variant,
                "data": args.data,
                "onnxruntime": __import__("onnxruntime").__version__,
                "threads": args.threads,
                "generate": generate_loop(export, args.tokens, args.variant, args.threads, args.check_every),
                "drift": drift_loop(export, ids, args.tokens, args.variant, args.threads, args.check_every),
            }
    except RnnedgeError as exc:
        print(f"long_stream: error: {exc}", file=sys.stderr)
        return 1
    result["passed"] = {loop: passed(result[loop]) for loop in ("generate", "drift")}
    print(json.dumps(result, indent=2))
    if args.write:
        write_json(RESULTS, result)
        print(f"wrote {RESULTS}", file=sys.stderr)
    return 0 if all(result["passed"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
