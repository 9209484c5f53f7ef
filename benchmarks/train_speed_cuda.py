"""`train_speed.py --device cuda`: one minGRU / minLSTM layer, forward + backward, on a GPU.

Implementations, timed interleaved round by round in one process on the same input (B, T, D):
  doubling            rnnedge's layer, `RNNEDGE_SCAN=doubling` (the Hillis-Steele scan it exports)
  fused               rnnedge's layer on fla-core's `chunk_hgrn` (what training on CUDA uses)
  fla_recurrent       the same mapping on fla-core's `fused_recurrent_hgrn` (the other fla form)
  logspace            a log-space layer in the style of lucidrains' minGRU-pytorch (Heinsen's
                      cumsum + logcumsumexp scan, here rnnedge.models.scan.logspace_scan), same weights
  sequential          the paper's comparison: the same layer with the scan as a loop over time
                      (only at T <= --sequential-max-t; it is slow)
  cudnn_gru/cudnn_lstm  torch's nn.GRU / nn.LSTM (cuDNN), D -> D, one layer
each in fp32 and under bf16 autocast, plus a whole-model training step (CharLM, AdamW) in tokens/s
for the doubling and fused scans. Results carry torch.cuda.get_device_name(); outputs of every scan
implementation are compared with the doubling scan's (max abs difference, fp32).
"""

from __future__ import annotations

import contextlib
import importlib
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import torch
import torch.nn.functional as F
from torch import nn

from rnnedge.models import ModelConfig, build_model, fused_scan, mixer_spec
from rnnedge.models.fused_scan import forced_scan
from rnnedge.models.registry import MIXER_MODULES
from rnnedge.models.scan import logspace_scan, sequential_scan

SHAPES = ((64, 256, 512), (64, 256, 4096), (8, 512, 16384))  # (B, D, T)
QUICK_SHAPES = ((4, 32, 256), (2, 64, 1024))
ARCHS = ("mingru", "minlstm")
GOALS_T = 4096  # the GPU training goals (docs/gpu.md): fused >= 1.8x logspace (fp32), >= 3x (bf16), >= 7x cuDNN GRU


def log_g(x: torch.Tensor) -> torch.Tensor:
    """log of the paper's g: log(relu(x) + 0.5) for x >= 0, −softplus(−x) otherwise."""
    return torch.where(x >= 0, torch.log(F.relu(x) + 0.5), -F.softplus(-x))


class LogSpaceLayer(nn.Module):
    """minGRU / minLSTM computed in log space (lucidrains' style), sharing the rnnedge layer's weights."""

    def __init__(self, layer: nn.Module, arch: str) -> None:
        super().__init__()
        self.layer, self.arch = layer, arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.arch == "mingru":
            k, k_h = self.layer.to_zh(x).chunk(2, dim=-1)  # (B, T, H) each
            log_a, log_gate = -F.softplus(k), -F.softplus(-k)  # log(1 − z), log z
        else:
            k_f, k_i, k_h = self.layer.to_fih(x).chunk(3, dim=-1)  # (B, T, H) each
            diff = F.softplus(-k_f) - F.softplus(-k_i)  # (B, T, H)
            log_a, log_gate = -F.softplus(diff), -F.softplus(-diff)  # log f', log i'
        h = logspace_scan(log_a, log_gate + log_g(k_h))  # (B, T, H)
        return self.layer.out(h)  # (B, T, D)


def loop_scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None, levels: int | None = None):
    """`linear_scan`'s signature, computed as the loop over time (the paper's sequential form)."""
    return sequential_scan(a, b, h0)


@contextlib.contextmanager
def fla_form(kernel: Callable[..., Any] | None) -> Iterator[None]:
    """Within the block the fused path runs `kernel` (e.g. fused_recurrent_hgrn) instead of chunk_hgrn."""
    with forced_scan("fused"), mock.patch.object(fused_scan, "fla_kernel", lambda: kernel):
        yield


def fwd_bwd(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, params: list[nn.Parameter], bf16: bool):
    def run() -> None:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            y = fn(x)  # (B, T, D)
        y.float().square().mean().backward()
        for p in [*params, x]:
            p.grad = None
        if x.device.type == "cuda":
            torch.cuda.synchronize()

    return run


def timed(variants: dict[str, Callable[[], None]], repeats: int, budget_s: float) -> dict[str, Any]:
    """Median ms per call (rounds interleave the variants) and peak memory of one call; errors as text."""
    out: dict[str, Any] = {}
    live = {}
    for name, fn in variants.items():  # warm-up (Triton compiles here), peak memory, errors
        try:
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            fn()
            live[name] = fn
            peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
            out[name] = {"peak_mib": peak}
        except Exception as exc:  # e.g. out of memory, an op without bf16 support
            out[name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
    times: dict[str, list[float]] = {k: [] for k in live}
    start = time.perf_counter()
    for r in range(repeats):
        for name, fn in live.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
        if r >= 1 and time.perf_counter() - start > budget_s:
            break
    for name, samples in times.items():
        out[name]["ms"] = round(statistics.median(samples) * 1e3, 3)
    return out


def implementations(
    arch: str, layer: nn.Module, baselines: dict[str, nn.Module], recurrent: Callable[..., Any] | None, sequential: bool
) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """name -> x (B, T, D) -> y (B, T, D), every implementation of the docstring that can run here."""

    def scan(mode: str, kernel: Callable[..., Any] | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
        def call(x: torch.Tensor) -> torch.Tensor:
            with fla_form(kernel) if kernel is not None else forced_scan(mode):
                return layer(x)[0]

        return call

    def looped(x: torch.Tensor) -> torch.Tensor:
        module = importlib.import_module(MIXER_MODULES[arch])
        with forced_scan("doubling"), mock.patch.object(module, "linear_scan", loop_scan):
            return layer(x)[0]

    impls = {"doubling": scan("doubling"), "logspace": LogSpaceLayer(layer, arch)}
    if fused_scan.fla_kernel() is not None:
        impls |= {"fused": scan("fused"), "fla_recurrent": scan("fused", recurrent)}
    if sequential:
        impls["sequential"] = looped
    for name, rnn in baselines.items():
        impls[name] = lambda x, rnn=rnn: rnn(x)[0]
    return impls


def layer_rows(device: str, shapes, repeats: int, budget: float, sequential_max_t: int) -> list[dict[str, Any]]:
    recurrent = None
    if fused_scan.fla_kernel() is not None:
        from fla.ops.hgrn import fused_recurrent_hgrn as recurrent
    rows = []
    for batch, dim, seq_len in shapes:
        torch.manual_seed(0)
        x = torch.randn(batch, seq_len, dim, device=device, requires_grad=True)  # (B, T, D)
        baselines = {
            "cudnn_gru": nn.GRU(dim, dim, batch_first=True).to(device),
            "cudnn_lstm": nn.LSTM(dim, dim, batch_first=True).to(device),
        }
        for arch in ARCHS:
            layer = mixer_spec(arch).build(ModelConfig(1, arch, 1, dim, expansion=1.0)).to(device)
            impls = implementations(arch, layer, baselines, recurrent, seq_len <= sequential_max_t)
            with torch.no_grad():
                ref = impls["doubling"](x)  # (B, T, D)
                diffs = {k: float((f(x).float() - ref).abs().max()) for k, f in impls.items() if k not in baselines}
            for bf16 in (False, True):
                variants = {
                    k: fwd_bwd(f, x, list(baselines.get(k, layer).parameters()), bf16) for k, f in impls.items()
                }
                res = timed(variants, repeats, budget)
                row = {
                    "arch": arch,
                    "batch": batch,
                    "d": dim,
                    "seq_len": seq_len,
                    "precision": "bf16" if bf16 else "fp32",
                }
                row |= {"results": res, "max_abs_diff_vs_doubling_fp32": diffs}
                row["speedups_of_fused"] = ratios(res, "fused")
                row["speedups_of_doubling"] = ratios(res, "doubling")
                rows.append(row)
                print(summary(row), flush=True)
    return rows


def ratios(res: dict[str, Any], base: str) -> dict[str, float]:
    """How many times faster `base` is than each other implementation (their ms / its ms)."""
    if "ms" not in res.get(base, {}):
        return {}
    return {k: round(v["ms"] / res[base]["ms"], 2) for k, v in res.items() if k != base and "ms" in v}


def summary(row: dict[str, Any]) -> str:
    times = "  ".join(f"{k} {v['ms']:.2f}" if "ms" in v else f"{k} ERR" for k, v in row["results"].items())
    return f"{row['arch']:7s} B={row['batch']} D={row['d']} T={row['seq_len']} {row['precision']}: {times} (ms)"


def model_rows(device: str, steps: int) -> list[dict[str, Any]]:
    """Whole-model training step (CharLM 3 x 128, vocab 65, B = 32, T = 256, AdamW) in tokens/s."""
    rows = []
    modes = ["doubling"] + (["fused"] if fused_scan.fla_kernel() is not None else [])
    for arch in ARCHS:
        for mode in modes:
            torch.manual_seed(0)
            model = build_model(ModelConfig(65, arch, 3, 128)).to(device).train()
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
            idx = torch.randint(0, 65, (32, 257), device=device)  # (B, T+1)

            def step(m=model, o=opt, i=idx, md=mode) -> None:
                with forced_scan(md):
                    logits, _ = m(i[:, :-1])  # (B, T, V)
                F.cross_entropy(logits.flatten(0, 1), i[:, 1:].flatten()).backward()
                o.step()
                o.zero_grad(set_to_none=True)

            for _ in range(3):
                step()
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            if device == "cuda":
                torch.cuda.synchronize()
            tokens_per_s = steps * 32 * 256 / (time.perf_counter() - t0)
            rows.append({"arch": arch, "scan": mode, "tokens_per_s": round(tokens_per_s)})
            print(f"model {arch:7s} {mode:8s} {tokens_per_s:,.0f} tokens/s", flush=True)
    return rows


def goals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The GPU training goals at T = GOALS_T, as measured (None where an implementation did not run)."""
    out = []
    for row in rows:
        if row["seq_len"] != GOALS_T:
            continue
        speed = row["speedups_of_fused"]
        wanted = {"logspace": 1.8 if row["precision"] == "fp32" else 3.0, "cudnn_gru": 7.0}
        for other, target in wanted.items():
            got = speed.get(other)
            out.append(
                {"arch": row["arch"], "precision": row["precision"], "fused_vs": other, "target": target,
                 "measured": got, "met": None if got is None else got >= target}
            )  # fmt: skip
    return out


def run_cuda_suite(args: Any, device: str = "cuda") -> dict[str, Any]:
    """All figures of `train_speed.py --device cuda` (`device` is 'cuda' but for a smoke run elsewhere)."""
    shapes = QUICK_SHAPES if args.quick else SHAPES
    rows = layer_rows(device, shapes, args.repeats, args.budget, args.sequential_max_t)
    return {
        "benchmark": "train_speed_cuda",
        "what": "forward+backward ms of one mixer layer (D -> D) per implementation, fp32 and bf16 autocast; "
        "median over interleaved rounds; plus whole-model training tokens/s",
        "device": torch.cuda.get_device_name() if device == "cuda" else device,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "fla": fused_scan.fla_status(),
        "quick": args.quick,
        "layers": rows,
        "model_step": model_rows(device, 5 if args.quick else 50),
        "goals_at_T4096": goals(rows),
    }
