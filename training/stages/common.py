"""Small pieces the trained stages share: loop settings, seeded model init, PSNR, LR schedule."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from training.batches import Batch, degradation_config, fixed_batch
from training.data import ReferencePicker
from training.loop import LoopSettings
from training.run_config import StageConfig
from training.seeding import derive_seed, stream_id
from training.stages.context import RunContext

__all__ = [
    "loop_settings",
    "seeded_init",
    "psnr",
    "cosine_lr",
    "set_lr",
    "identity_inputs",
    "val_count",
    "recalibrate_batch_norm",
]


def val_count(ctx: RunContext, cfg: StageConfig) -> int:
    """Size of a stage's fixed validation batch: its own cap, else ``data.val_images``, at most the pool."""
    wanted = cfg.val_images or ctx.cfg.data.val_images
    return min(wanted, len(ctx.split[1]))


def loop_settings(cfg: StageConfig) -> LoopSettings:
    """The loop part of a stage config."""
    return LoopSettings(steps=cfg.steps, ckpt_every=cfg.ckpt_every, eval_every=cfg.eval_every,
                        log_every=cfg.log_every, max_minutes=cfg.max_minutes)


@contextmanager
def seeded_init(seed: int, name: str) -> Iterator[int]:
    """Build modules with the global torch RNG seeded from ``(seed, name)``, restoring it afterwards.

    PyTorch's default initialisers draw from the global generator; this keeps model init a function
    of the run seed without leaking state into the rest of the process. Yields the derived seed.
    """
    s = derive_seed(seed, stream_id(name))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(s)
        yield s


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of ``pred`` clamped to [0, 1] against ``target``; ``(B, 3, H, W)`` -> ``(B,)``."""
    mse = (pred.detach().float().clamp(0, 1) - target.float()).pow(2).mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(1.0 / mse.clamp_min(1e-10))


def cosine_lr(step: int, total: int, lr: float, lr_final: float, warmup: int = 0) -> float:
    """Cosine decay from ``lr`` at step 0 to ``lr_final`` at ``total``, scaled by a linear ramp
    ``(step + 1) / warmup`` over the first ``warmup`` steps (a fresh Adam's first updates are about
    ``lr`` per weight whatever the gradient, which jolts converged weights out of their optimum)."""
    if warmup < 0:
        raise ValueError(f"warmup: expected >= 0 steps, got {warmup}")
    t = min(max(step / max(total, 1), 0.0), 1.0)
    ramp = min(1.0, (step + 1) / warmup) if warmup else 1.0
    return ramp * (lr_final + 0.5 * (lr - lr_final) * (1.0 + math.cos(math.pi * t)))


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's rate to ``lr`` times its ``lr_scale`` (1 when the group has none)."""
    for group in opt.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def identity_inputs(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """``(identity, has_identity)`` for the network: the batch's prior and a float {0, 1} mask.

    The network always gets a tensor and a mask (never ``None``) so that every parameter of the
    identity branch takes part in every step, as DistributedDataParallel requires; samples without
    references carry zeros and mask 0 (the network's learned neutral embedding).
    """
    if batch.identity is None:
        raise ValueError("batch has no identity priors (BatchMaker was built without a reference table)")
    return batch.identity, batch.has_identity.float()


@torch.no_grad()
def recalibrate_batch_norm(model: nn.Module, batches: Iterable[Batch]) -> None:
    """Re-estimate every batch norm's running statistics on ``batches`` (cumulative average).

    A network derived from a supernet inherits running statistics measured on softmax-weighted
    mixtures of operators; with one operator per edge at full weight they no longer fit, and the
    eval-mode network can overflow until retraining catches up. A few forward passes fix that.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    was_training = model.training
    model.train()
    for b in batches:
        identity, has = identity_inputs(b)
        model(b.degraded, None, identity, has_identity=has)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.train(was_training)


def mixed_validation_batch(ctx: RunContext, cfg: StageConfig, val_idx, priors) -> Batch:
    """The fixed validation batch of search and retrain: held-out faces, mixed degradations and
    identity references of the same held-out people (same seed, so both stages score alike)."""
    data = ctx.cfg.data
    refs = ReferencePicker(ctx.faces.identity, val_idx)
    return fixed_batch(ctx.faces, val_idx, val_count(ctx, cfg), ctx.cfg.seed, "val-mixed",
                       degradation_config(data), ctx.runtime.device, refs, data.n_refs, priors)
