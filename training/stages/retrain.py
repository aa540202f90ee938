"""Stage 4: retrain the derived (fused) network with the final loss.

Paper sec. 3.3 / 4: ``L_final = L2 + lambda_per * L_per + lambda_iden * L_iden``, Adam, lr 5e-4
(batch 40 in the paper). The network starts from the search supernet's weights along the derived
architecture (:func:`engine.build.derive_fused`; ``retrain.from_search: false`` starts the fusion
cells fresh and takes only the pretrained encoders and classifier; ``retrain.init`` fine-tunes
given fused weights). The classifier keeps learning its labels with BCE beside the restoration loss
(it is detached from the restoration path), and the learning rate follows a cosine from ``lr`` to
``lr_final``.

Validation every ``eval_every`` steps on the fixed held-out batch: PSNR with the identity prior,
without it, and of the degraded input. The best weights by PSNR are kept in ``best/`` with their
``genotype.json``; the last in ``retrain/weights.safetensors``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from engine.build import build_fused, build_supernet, derive_fused, save_fused
from engine.build import load_weights as load_fused_weights  # one module, optionally lenient
from engine.errors import UserError
from engine.genotype import Genotype
from engine.recognition import DlibCropFeatures, load_dlib_resnet
from training.batches import BatchMaker, degradation_config
from training.checkpoint import load_weights
from training.data import ReferencePicker
from training.loop import StageLoop
from training.losses import FinalLoss
from training.seeding import derive_seed, stream_id
from training.stages import derive, pretrain, search
from training.stages.common import (
    cosine_lr,
    identity_inputs,
    loop_settings,
    mixed_validation_batch,
    psnr,
    recalibrate_batch_norm,
    set_lr,
)
from training.stages.context import RunContext
from training.stages.identity import loss_references, reference_table

__all__ = ["run", "best_dir", "weights_path"]

NAME = "retrain"


def best_dir(ctx: RunContext) -> Path:
    return ctx.out / "best"


def weights_path(ctx: RunContext) -> Path:
    return ctx.stage_dir(NAME) / "weights.safetensors"


def _initial_network(ctx: RunContext, genotype: Genotype) -> tuple[nn.Module, list[str]]:
    """The network to retrain and the names of the parameters ``retrain.init`` lacked (if any)."""
    cfg, net_cfg = ctx.cfg.retrain, ctx.net
    if cfg.from_search and not cfg.init:
        supernet = build_supernet(net_cfg)
        load_weights(search.weights_path(ctx), {"": supernet})
        return derive_fused(supernet, genotype).train(), []
    net = build_fused(genotype, net_cfg, seed=derive_seed(ctx.cfg.seed, stream_id("init-retrain")))
    kept: list[str] = []
    if not cfg.init:
        load_weights(pretrain.weights_path(ctx), {"encoders": net.encoders, "classifier": net.classifier})
    elif kept := load_fused_weights(net, cfg.init, allow_missing=True):
        tqdm.write(f"[retrain] {cfg.init} lacks {len(kept)} tensors, kept at their initialisation "
                   f"(learning rate x{cfg.new_lr_scale:g}): {', '.join(kept)}")
    return net, kept


def _param_groups(model: nn.Module, new: list[str], scale: float) -> list[dict]:
    """Adam groups: the parameters in ``new`` train at ``scale`` times the stage's rate."""
    fresh = set(new)
    named = list(model.named_parameters())
    scaled = [p for n, p in named if n in fresh]  # ``new`` may also name buffers
    groups = [{"params": [p for n, p in named if n not in fresh]}]
    return groups + [{"params": scaled, "lr_scale": scale}] if scaled else groups


def run(ctx: RunContext) -> None:
    """Retrain (or resume) the derived network; keep the best weights by validation PSNR."""
    ctx.check_fresh(NAME)
    cfg, rt, data, seed, net_cfg = ctx.cfg.retrain, ctx.runtime, ctx.cfg.data, ctx.cfg.seed, ctx.net
    gpath = derive.genotype_path(ctx)
    if not gpath.is_file():
        raise UserError(f"{gpath} not found: run the derive stage first (nasfe-train derive --out {ctx.out})")
    genotype = Genotype.load(gpath, net_cfg)
    if cfg.init and not Path(cfg.init).is_file():
        raise UserError(f"retrain.init: weights file {cfg.init} not found")
    needed = search.weights_path(ctx) if cfg.from_search else pretrain.weights_path(ctx)
    if not cfg.init and not needed.is_file():
        raise UserError(f"{needed} not found: run the earlier stages first")
    train_idx, val_idx = ctx.split
    model, new = _initial_network(ctx, genotype)
    model = model.to(rt.device)
    net = rt.wrap(model)
    opt = torch.optim.Adam(_param_groups(model, new, cfg.new_lr_scale), lr=cfg.lr)
    scaler = rt.grad_scaler()
    loop = StageLoop(NAME, ctx.stage_dir(NAME), loop_settings(cfg), rt, {"net": model}, {"adam": opt},
                     metrics=["loss", "l2", "per", "iden", "bce", "lr"], val_metrics=["psnr", "psnr_noid", "psnr_input"],
                     scaler=scaler)
    if ctx.resume:
        loop.resume()
    loop.state.setdefault("best_psnr", None)
    loop.state.setdefault("best_step", None)

    priors = reference_table(ctx)
    final_loss = FinalLoss(cfg.lambda_per, cfg.lambda_iden,
                           DlibCropFeatures(load_dlib_resnet(device=rt.device), net_cfg.crop_size)).to(rt.device)

    def training_batches(stream: str) -> BatchMaker:
        return BatchMaker(ctx.faces, train_idx, cfg.batch, seed, stream, degradation_config(data), data.augment,
                          rt.device, rt.rank, rt.world_size, ReferencePicker(ctx.faces.identity, train_idx),
                          data.n_refs, data.p_no_identity, priors, patch=cfg.patch)

    batches = training_batches("retrain")
    if loop.step == 0 and cfg.from_search and not cfg.init and cfg.bn_batches:
        calib = training_batches("retrain-bn")
        recalibrate_batch_norm(model, (calib(k) for k in range(cfg.bn_batches)))

    def step(i: int) -> dict[str, float]:
        lr = cosine_lr(i, cfg.steps, cfg.lr, cfg.lr_final, cfg.lr_warmup)
        set_lr(opt, lr)
        b = batches(i)
        identity, has = identity_inputs(b)
        with rt.autocast():
            logits = model.classifier(b.degraded)  # one pass: BCE target and (detached) prior
            restored = net(b.degraded, torch.sigmoid(logits).detach(), identity, has_identity=has)
        refs, mask = loss_references(priors, b, rt.device)
        parts = final_loss(restored.float(), b.clean, refs, mask)
        bce = F.binary_cross_entropy_with_logits(logits.float(), b.labels)
        loss = parts.total + bce
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return {"loss": loss.item(), "l2": parts.l2.item(), "per": parts.perceptual.item(),
                "iden": parts.identity.item(), "bce": bce.item(), "lr": lr}

    val = None
    if rt.is_main:
        val = mixed_validation_batch(ctx, cfg, val_idx, priors)

    @torch.no_grad()
    def evaluate(i: int) -> dict[str, float]:
        model.eval()
        identity, has = identity_inputs(val)
        with_id = psnr(model(val.degraded, None, identity, has_identity=has), val.clean).mean().item()
        without = psnr(model(val.degraded, None, None), val.clean).mean().item()
        model.train()
        best = loop.state["best_psnr"]
        if i > 0 and (best is None or with_id > best):
            loop.state.update(best_psnr=with_id, best_step=i)
            _save_best(ctx, model, genotype)
            tqdm.write(f"[retrain] step {i}: new best validation PSNR {with_id:.3f} dB -> {best_dir(ctx)}")
        return {"psnr": with_id, "psnr_noid": without, "psnr_input": psnr(val.degraded, val.clean).mean().item()}

    loop.run(step, evaluate)
    if rt.is_main:
        save_fused(model, weights_path(ctx))
        if not (best_dir(ctx) / "weights.safetensors").is_file():
            _save_best(ctx, model, genotype)
    rt.barrier()


def _save_best(ctx: RunContext, model, genotype: Genotype) -> None:
    folder = best_dir(ctx)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "weights.safetensors.tmp"
    save_fused(model, tmp)
    tmp.replace(folder / "weights.safetensors")
    genotype.save(folder / "genotype.json")
