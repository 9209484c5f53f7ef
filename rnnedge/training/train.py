"""The training loop: AdamW, warm-up + cosine LR, grad clipping, periodic val loss, atomic checkpoints.

The loop knows no mixer: CharLM.forward on (B, T) runs whatever the mixer's spec declares — the
parallel scan for mixers with `parallel_training` (minGRU, minLSTM), a recurrence over t otherwise
(torch's fused nn.GRU / nn.LSTM / nn.RNN for GRU, LSTM, Elman). Under torchrun every rank trains on
its own batches (DDP); only rank 0 prints and writes checkpoints.
"""

from __future__ import annotations

import contextlib
import math
import os
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from rnnedge.errors import CheckpointError, ConfigError, Interrupted, RnnedgeError
from rnnedge.models import CharLM, build_model
from rnnedge.outlock import remove_stale_temps, writer_lock
from rnnedge.ownership import LEDGER, check_folder, check_replaceable
from rnnedge.training import distributed as dist_util
from rnnedge.training.checkpoint import CHECKPOINT_FILES, load_checkpoint, resume_point, save_checkpoint
from rnnedge.training.config import TrainConfig, check_resume, lr_at
from rnnedge.training.data import (
    BatchSampler,
    TextData,
    load_text_data,
    recorded_sha256,
    resolve_data,
)
from rnnedge.training.device import resolve_device
from rnnedge.training.evaluate import stream_nll
from rnnedge.training.memory import check_fits
from rnnedge.training.optim import build_optimizer, load_optimizer_tensors, optimizer_tensors
from rnnedge.training.progress import TrainProgress


class TrainingError(RnnedgeError):
    """Training diverged (NaN/inf loss or gradients)."""


@dataclass
class TrainResult:
    out_dir: Path
    steps_done: int
    tokens_seen: int
    train_time_s: float
    val_loss: float | None
    train_loss: float | None
    num_params: int
    history: list[dict[str, Any]] = field(default_factory=list)


def val_loss(model: CharLM, data: TextData, config: TrainConfig, device: torch.device) -> float:
    """Mean val NLL (nats/char): up to eval_batches*B*T val chars as B streams, state carried over chunks."""
    ids = data.val[: config.eval_batches * config.batch_size * config.seq_len].long()  # (N,)
    streams = config.batch_size if len(ids) // config.batch_size >= 2 else 1
    ids = ids[: len(ids) // streams * streams].view(streams, -1)  # (S, L)
    was_training = model.training
    model.eval()
    total, count = stream_nll(model, ids.to(device), config.seq_len)
    model.train(was_training)
    return total / count


def resumed_config(resume: str | os.PathLike[str]) -> tuple[TrainConfig, dict[str, Any]]:
    """The TrainConfig and training metadata stored in a checkpoint folder."""
    meta = load_checkpoint(resume).training
    if "config" not in meta:
        raise CheckpointError(f"{resume} holds no training config (not written by `rnnedge train`); cannot resume")
    try:
        config = TrainConfig.from_dict(meta["config"])
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"{resume}: bad training config: {exc}") from exc
    resume_point(meta, Path(resume) / "config.json")  # its counters are sane before anything runs
    return config, meta


def train(
    config: TrainConfig,
    data: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    resume: str | os.PathLike[str] | None = None,
    quiet: bool = False,
    log_every: int = 0,
    stop_at: int | None = None,
    overwrite: bool = False,
) -> TrainResult:
    """Train (or resume) a char LM on the text at `data` ('shakespeare' = cached download); write `out_dir`.

    `stop_at` ends this session after that many steps (checkpoint saved) without changing the
    schedule, so a later `resume` continues exactly as if never stopped. An `out_dir` that already
    holds a checkpoint is refused unless it is the one being resumed or `overwrite` is set.
    """
    out = Path(out_dir)
    resolve_device(config.device)  # no CUDA, or no such device: one line before any work
    same = resume is not None and Path(resume).resolve() == out.resolve()
    if (out / "config.json").exists() and not (same or overwrite):
        raise ConfigError(f"{out} already holds a checkpoint; choose another --out, --resume it, or pass --overwrite")
    rank0 = int(os.environ.get("RANK", "0")) == 0
    with _no_empty_folders_left(out), writer_lock(out) if rank0 else contextlib.nullcontext():
        if rank0:
            ledger = check_folder(out, overwrite=overwrite or same)
            check_replaceable(ledger, CHECKPOINT_FILES, overwrite=overwrite or same)
            remove_stale_temps(out, [*CHECKPOINT_FILES, LEDGER])
        info, device = dist_util.setup(config.device)
        try:
            return _train(config, data, out, resume, info, device, quiet, log_every, stop_at)
        finally:
            dist_util.teardown(info)


@contextlib.contextmanager
def _no_empty_folders_left(out: Path) -> Iterator[None]:
    """On failure, remove the folders the run created for `out` (it and missing parents) if still empty."""
    created: list[Path] = []
    folder = out.absolute()
    while not folder.exists() and folder != folder.parent:
        created.append(folder)
        folder = folder.parent
    try:
        yield
    except BaseException:
        if int(os.environ.get("RANK", "0")) == 0:  # only rank 0 writes, so only it tidies
            for path in created:  # deepest first
                if not path.is_dir() or any(path.iterdir()):
                    break
                with contextlib.suppress(OSError):  # never mask the failure being reported
                    path.rmdir()
        raise


def _train(
    config: TrainConfig,
    data: str | os.PathLike[str],
    out: Path,
    resume: str | os.PathLike[str] | None,
    info: dist_util.DistInfo,
    device: torch.device,
    quiet: bool,
    log_every: int,
    stop_at: int | None,
) -> TrainResult:
    if config.threads:
        torch.set_num_threads(config.threads)
    elif info.active and device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // info.world_size))
    data_path = resolve_data(data)
    start_step, tokens_seen, time_before = 0, 0, 0.0
    history: list[dict[str, Any]] = []
    if resume is not None:
        saved, meta = resumed_config(resume)
        check_resume(saved, config)
        ckpt = load_checkpoint(resume, with_optimizer=True)
        if ckpt.optimizer_tensors is None:
            raise CheckpointError(f"{resume} has no optimizer state (optimizer.safetensors); cannot resume exactly")
        model, vocab = ckpt.model, ckpt.vocab
        point = resume_point(meta, Path(resume) / "config.json")
        start_step, tokens_seen, time_before, history = (
            point.steps_done,
            point.tokens_seen,
            point.train_time_s,
            point.history,
        )
        if start_step >= config.steps:
            raise ConfigError(f"{resume} already completed {start_step} steps; pass --steps above {start_step}")
    else:
        vocab = None

    def same_text(record: dict[str, Any]) -> None:
        if resume is not None and recorded_sha256(meta) not in (None, record["sha256"]):
            raise ConfigError(
                f"cannot resume: {data_path} is not the text {resume} was trained on (its sha256 differs); "
                "resume continues the same run on the same data"
            )

    tdata, record = load_text_data(data, data_path, vocab=vocab, seq_len=config.seq_len, check=same_text)
    if device.type == "cpu":
        check_fits(config, len(tdata.vocab))  # a run that cannot fit is one line now, not a torch error later
    if resume is None:
        torch.manual_seed(config.seed)
        model = build_model(config.model_config(len(tdata.vocab)))
    model.to(device).train()
    opt = build_optimizer(model, config)
    if resume is not None:
        assert ckpt.optimizer_tensors is not None
        load_optimizer_tensors(model, opt, ckpt.optimizer_tensors)
    ddp = (
        DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None) if info.active else None
    )
    net = ddp if ddp is not None else model
    sampler = BatchSampler(tdata.train, config.batch_size, config.seq_len, config.seed, rank=info.rank)
    tokens_per_step = config.batch_size * config.seq_len * info.world_size

    def save(step: int, loss: float | None, val: float | None, elapsed: float) -> None:
        if not info.is_main:
            return
        training = {
            "steps_done": step,
            "tokens_seen": tokens_seen,
            "train_time_s": round(elapsed, 3),
            "val_loss": val,
            "train_loss": loss,
            "data": record,
            "seed": config.seed,
            "world_size": info.world_size,
            "num_params": model.num_params(),
            "config": config.to_dict(),
            "history": history,
        }
        save_checkpoint(
            out, model, tdata.vocab, val_loss=val, training=training, optimizer_tensors=optimizer_tensors(model, opt)
        )

    t0 = time.perf_counter()
    step_time = 0.0  # seconds spent in training steps this session (excludes evaluation)
    resumed_here = resume is not None and Path(resume).resolve() == out.resolve()
    last_saved: int | None = start_step if resumed_here else None
    loss_value: float | None = None
    val: float | None = None
    step = start_step
    try:
        with TrainProgress(config.steps, start_step, enabled=info.is_main and not quiet, log_every=log_every) as bar:
            while step < config.steps:
                elapsed = time_before + time.perf_counter() - t0
                frac = elapsed / config.max_time if config.max_time else 0.0
                lr = lr_at(config, step, frac)
                for group in opt.param_groups:
                    group["lr"] = lr
                ts = time.perf_counter()
                batch = sampler.sample(step).to(device)  # (B, T+1)
                logits, _ = net(batch[:, :-1])  # (B, T, V)
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = (
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip) if config.grad_clip else None
                )
                shared = torch.tensor(
                    [loss.item(), float(grad_norm) if grad_norm is not None else 0.0, elapsed if info.is_main else 0.0]
                )
                shared = dist_util.all_sum(shared, info)
                loss_value = float(shared[0]) / info.world_size
                if not (math.isfinite(loss_value) and math.isfinite(float(shared[1]))):
                    good = f"the last good checkpoint ({out}, step {last_saved}) is kept"
                    kept = good if last_saved else "nothing saved"
                    raise TrainingError(
                        f"loss or gradients became NaN/inf at step {step + 1} (lr {lr:.2e}); {kept}; try a lower --lr"
                    )
                opt.step()
                step += 1
                tokens_seen += tokens_per_step
                step_time += time.perf_counter() - ts
                tps = (step - start_step) * tokens_per_step / max(step_time, 1e-9)
                over_time = config.max_time is not None and float(shared[2]) >= config.max_time
                done = step == config.steps or over_time or step == stop_at
                evaluated = step % config.eval_every == 0 or done
                if evaluated:
                    val = val_loss(model, tdata, config, device)
                    history.append(
                        {
                            "step": step,
                            "train_loss": round(loss_value, 5),
                            "val_loss": round(val, 5),
                            "time_s": round(time_before + time.perf_counter() - t0, 2),
                        }
                    )
                bar.update(step, loss_value, val, tps, evaluated=evaluated)
                periodic = config.save_every and step % config.save_every == 0
                if (evaluated and config.save_every == 0) or periodic or done:
                    save(step, loss_value, val, time_before + time.perf_counter() - t0)
                    last_saved = step
                if over_time:
                    bar.message(f"time budget of {config.max_time:g} s reached after {step} steps")
                if done:
                    break
    except KeyboardInterrupt as exc:
        if isinstance(exc, Interrupted):
            raise
        raise Interrupted(_interrupt_note(out, data, step, config.steps, last_saved)) from None
    dist_util.barrier(info)
    return TrainResult(
        out_dir=out,
        steps_done=step,
        tokens_seen=tokens_seen,
        train_time_s=time_before + time.perf_counter() - t0,
        val_loss=val,
        train_loss=loss_value,
        num_params=model.num_params(),
        history=history,
    )


def _interrupt_note(out: Path, data: str | os.PathLike[str], step: int, steps: int, saved: int | None) -> str:
    """What Ctrl-C during training kept, and the exact command that continues the run."""
    if saved is None:
        return f"no partial file was written; stopped after step {step} of {steps}, before the first checkpoint"
    q = shlex.quote
    return (
        f"no partial file was written; stopped after step {step} of {steps}, the checkpoint of step {saved} "
        f"in {out} is kept; resume with: rnnedge train --resume {q(str(out))} --data {q(str(data))} --out {q(str(out))}"
    )
