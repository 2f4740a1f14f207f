"""The fit loop every method trains through: fixed seed, progress bars,
atomic checkpoints every epoch (and every N steps if asked), exact resume
after an interruption, callbacks for the methods, and DDP under torchrun."""
from __future__ import annotations

import dataclasses
import io
import json
import math
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..analysis.evaluate import as_logits, evaluate
from ..artifact.format import atomic_write_bytes, remove_stale_temp_files
from ..core.errors import ConfigError, DataError
from ..zoo.data import Loader
from . import distributed
from .callbacks import Callback, TrainState
from .augment import random_shift
from .config import TrainConfig

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], "torch.Tensor | tuple[torch.Tensor, torch.Tensor]"]
CHECKPOINT = "last.pt"


@dataclasses.dataclass
class FitResult:
    model: nn.Module
    history: list
    resumed_from: dict | None
    seconds: float


def cross_entropy(label_smoothing: float = 0.0) -> LossFn:
    def loss(model, x, y):
        logits = model(x)
        if not isinstance(logits, torch.Tensor):
            logits = as_logits(logits)  # a Hugging Face output's .logits
        return F.cross_entropy(logits, y, label_smoothing=label_smoothing), logits

    return loss


def make_optimizer(params: Iterable[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(cfg: TrainConfig, step: int, total: int, steps_per_epoch: int) -> float:
    """Learning-rate multiplier at a global step; a pure function of the step,
    so a resumed run follows the same schedule."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.scheduler == "none" or total <= 0:
        return 1.0
    if cfg.scheduler == "cosine":
        t = min(1.0, (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps))
        return 0.5 * (1 + math.cos(math.pi * t))
    if cfg.scheduler == "step":
        return cfg.gamma ** ((step // max(1, steps_per_epoch)) // cfg.step_size)
    # onecycle: linear up for 30%, cosine down
    t = step / max(1, total)
    return t / 0.3 if t < 0.3 else 0.5 * (1 + math.cos(math.pi * (t - 0.3) / 0.7))


def _ckpt_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _comparable(cfg: dict) -> dict:
    # fields that may change between a run and its resumption
    return {k: v for k, v in cfg.items() if k not in ("epochs", "checkpoint_every_steps", "eval_every")}


def fit(model: nn.Module, train_data, config: TrainConfig | None = None, *, eval_data=None,
        loss_fn: LossFn | None = None, callbacks: Sequence[Callback] = (), out_dir: str | Path | None = None,
        resume: bool = True, progress: bool = True, optimizer: torch.optim.Optimizer | None = None,
        params: Iterable[torch.nn.Parameter] | None = None) -> FitResult:
    """Train ``model`` on ``train_data`` (an ArrayDataset) in place.

    With ``out_dir``, checkpoints go to ``out_dir/checkpoints/last.pt`` after
    every epoch (and every ``checkpoint_every_steps``); rerunning the same call
    resumes from there, seeing exactly the batches an uninterrupted run would.
    Under ``torchrun`` the model is wrapped in DistributedDataParallel and each
    rank trains on its shard; rank 0 writes checkpoints.
    """
    cfg = config or TrainConfig()
    if getattr(train_data, "attention_mask", None) is not None:
        raise DataError(
            f"training on sentences ({getattr(train_data, 'name', '') or 'a sentence file'}) is not supported: the "
            "training loop feeds labelled (x, y) batches without an attention mask; measure a sentence encoder on "
            "sentences (embedding fidelity) and use stages without fine-tuning, or fine-tune on labelled data")
    t0 = time.perf_counter()
    rank, world_size = distributed.world()
    torch.manual_seed(cfg.seed)
    loader = Loader(train_data, cfg.batch_size, shuffle=True, seed=cfg.seed, drop_last=False,
                    rank=rank, world_size=world_size)
    steps_per_epoch = len(loader) if cfg.max_steps_per_epoch is None else min(len(loader), cfg.max_steps_per_epoch)
    # parameters in name order, not registration order: a model rebuilt from an artifact registers them in
    # another order than one pruned in memory, and a resumed optimizer state must line up with either
    own = [p for _, p in sorted(model.named_parameters(), key=lambda kv: kv[0])]
    opt = optimizer or make_optimizer(params if params is not None else own, cfg)
    base_lrs = [g["lr"] for g in opt.param_groups]
    loss_fn = loss_fn or cross_entropy(cfg.label_smoothing)
    state = TrainState(model=model, optimizer=opt, config=cfg, steps_per_epoch=steps_per_epoch,
                       total_steps=steps_per_epoch * cfg.epochs, rank=rank, world_size=world_size)

    ckpt_path = Path(out_dir) / "checkpoints" / CHECKPOINT if out_dir is not None else None
    resumed = None
    epoch_loss = [0.0, 0]  # this epoch's summed loss and batches so far (checkpointed: a mid-epoch resume continues it)
    if ckpt_path is not None and rank == 0:
        remove_stale_temp_files(ckpt_path.parent, recursive=False)  # a checkpoint write a kill interrupted
    if ckpt_path is not None and resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        # fields added in a later version are missing from older checkpoints: they had the default
        saved_cfg = {**type(cfg)().to_dict(), **json.loads(ck["config"])}
        if _comparable(saved_cfg) != _comparable(cfg.to_dict()):
            diff = sorted(k for k in _comparable(cfg.to_dict()) if saved_cfg.get(k) != cfg.to_dict().get(k))
            raise ConfigError(
                f"{ckpt_path}: checkpoint was made with different training settings ({', '.join(diff)}); "
                "use another output folder or pass resume=False / --no-resume to start over"
            )
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        for cb, cb_state in zip(callbacks, ck.get("callbacks", [])):
            cb.load_state_dict(cb_state)
        state.epoch, state.batch_in_epoch, state.global_step = ck["epoch"], ck["batch_in_epoch"], ck["global_step"]
        state.history = json.loads(ck["history"])
        if state.batch_in_epoch and "epoch_loss" in ck:  # older checkpoints: the epoch's loss restarts at the resume
            epoch_loss = list(json.loads(ck["epoch_loss"]))
        resumed = {"epoch": state.epoch, "batch_in_epoch": state.batch_in_epoch, "global_step": state.global_step}

    def save_checkpoint() -> None:
        if ckpt_path is None or rank != 0:
            return
        obj = {
            "model": model.state_dict(), "optimizer": opt.state_dict(),
            "callbacks": [cb.state_dict() for cb in callbacks],
            "epoch": state.epoch, "batch_in_epoch": state.batch_in_epoch, "global_step": state.global_step,
            "config": json.dumps(cfg.to_dict()), "history": json.dumps(state.history),
            "epoch_loss": json.dumps(epoch_loss),
        }
        atomic_write_bytes(ckpt_path, _ckpt_bytes(obj))

    net: nn.Module = model
    if world_size > 1:
        net = nn.parallel.DistributedDataParallel(model)
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16 if cfg.amp == "bf16" else torch.float16)
                if cfg.amp != "none" else None)

    for cb in callbacks:
        cb.on_fit_start(state)
    show = progress and rank == 0
    while state.epoch < cfg.epochs:
        loader.set_epoch(state.epoch)
        model.train()
        for cb in callbacks:
            cb.on_epoch_start(state)
        skip = state.batch_in_epoch
        if not skip:
            epoch_loss[:] = [0.0, 0]
        bar = tqdm(total=steps_per_epoch, initial=skip, desc=f"epoch {state.epoch + 1}/{cfg.epochs}",
                   disable=not show, leave=False, dynamic_ncols=True)
        ep_t0 = time.perf_counter()
        for i, (x, y) in enumerate(loader):
            if i >= steps_per_epoch:
                break
            if i < skip:
                continue
            for g, base in zip(opt.param_groups, base_lrs):
                g["lr"] = base * lr_factor(cfg, state.global_step, state.total_steps, steps_per_epoch)
            for cb in callbacks:
                cb.on_batch_start(state)
            if cfg.shift:
                g = torch.Generator().manual_seed((cfg.seed * 1_000_003 + state.global_step) * 64 + rank)
                x = random_shift(x, cfg.shift, g)
            if autocast is not None:
                with autocast:
                    out = loss_fn(net, x, y)
            else:
                out = loss_fn(net, x, y)
            loss = out[0] if isinstance(out, tuple) else out
            for cb in callbacks:
                extra = cb.extra_loss(state)
                if extra is not None:
                    loss = loss + extra
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"training loss became {loss.item()} at epoch {state.epoch + 1}, step {i}; lower the learning rate "
                    f"(now {cfg.lr}) or enable grad_clip"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for cb in callbacks:
                cb.on_after_backward(state)
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            state.global_step += 1
            state.batch_in_epoch = i + 1
            state.last_loss = float(loss.detach())
            epoch_loss[0] += state.last_loss
            epoch_loss[1] += 1
            for cb in callbacks:
                cb.on_batch_end(state)
            bar.update(1)
            bar.set_postfix(loss=f"{state.last_loss:.4f}")
            if cfg.checkpoint_every_steps and state.global_step % cfg.checkpoint_every_steps == 0:
                save_checkpoint()
        bar.close()
        train_loss = distributed.all_reduce_mean(epoch_loss[0] / max(1, epoch_loss[1]))
        metrics = {"epoch": state.epoch + 1, "train_loss": train_loss,
                   "seconds": time.perf_counter() - ep_t0, "lr": opt.param_groups[0]["lr"]}
        if eval_data is not None and cfg.eval_every and (state.epoch + 1) % cfg.eval_every == 0:
            m = evaluate(model, eval_data)
            metrics["eval_accuracy"] = m["accuracy"]
        for cb in callbacks:
            cb.on_epoch_end(state, metrics)
        state.history.append(metrics)
        if show:
            desc = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
            tqdm.write(desc, file=sys.stderr)  # stdout stays clean for --json output
        state.epoch += 1
        state.batch_in_epoch = 0
        save_checkpoint()
        distributed.barrier()
    for cb in callbacks:
        cb.on_fit_end(state)
    model.eval()
    return FitResult(model=model, history=state.history, resumed_from=resumed, seconds=time.perf_counter() - t0)
