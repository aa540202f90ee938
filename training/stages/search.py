"""Stage 2: search the fusion architecture (cell α, network-level β) in the supernet.

First-order DARTS / Auto-DeepLab, as the paper follows [37]: the training photos are split into two
disjoint halves; each step updates the network weights on a batch of half A, and after ``warmup``
steps also α/β on a batch of half B (Adam, betas (0.5, 0.999), weight decay). The loss is L2 to
the clean crop; the encoders and the classifier start from the pretraining stage. The prior is the
network's own (pretrained, here frozen) classifier estimate, as at inference. Samples carry the
identity prior of their references (or none, with probability ``data.p_no_identity``).

Collapse guard (see :mod:`training.collapse`): after each architecture step the share of edges
whose strongest operator is parameter-free is measured; above the limit (``action: freeze``) the
architecture update is undone, α/β are frozen at the last healthy values for the rest of the stage
and the event is logged (``search/collapse.json``, the ``free_share`` column of ``log.csv``).

Writes ``search/supernet.safetensors`` (all weights, α and β).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from engine.build import build_supernet
from engine.errors import UserError
from training.batches import BatchMaker, degradation_config
from training.checkpoint import load_weights, save_weights, write_json
from training.collapse import collapse_report
from training.data import ReferencePicker
from training.loop import StageLoop
from training.seeding import derive_seed, make_generator, stream_id
from training.stages import pretrain
from training.stages.common import identity_inputs, loop_settings, mixed_validation_batch, psnr
from training.stages.context import RunContext
from training.stages.identity import reference_table

__all__ = ["run", "weights_path", "halves"]

NAME = "search"


def weights_path(ctx: RunContext):
    return ctx.stage_dir(NAME) / "supernet.safetensors"


def halves(train_idx: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint halves of the training photos: A for weight steps, B for architecture steps."""
    perm = torch.randperm(len(train_idx), generator=make_generator(seed, stream_id("search-halves"))).numpy()
    a, b = np.sort(train_idx[perm[: len(perm) // 2]]), np.sort(train_idx[perm[len(perm) // 2:]])
    return a, b


def run(ctx: RunContext) -> None:
    """Search (or resume the search) and write the supernet weights with α/β."""
    ctx.check_fresh(NAME)
    cfg, rt, data, seed, net_cfg = ctx.cfg.search, ctx.runtime, ctx.cfg.data, ctx.cfg.seed, ctx.net
    pre = pretrain.weights_path(ctx)
    if not pre.is_file():
        raise UserError(f"{pre} not found: run the pretrain stage first (nasfe-train pretrain --out {ctx.out})")
    train_idx, val_idx = ctx.split
    half_w, half_a = halves(train_idx, seed)
    model = build_supernet(net_cfg, seed=derive_seed(seed, stream_id("init-search"))).to(rt.device)
    load_weights(pre, {"encoders": model.encoders, "classifier": model.classifier})
    model.classifier.requires_grad_(False)  # trained in pretrain/retrain; here it only supplies the prior
    net = rt.wrap(model)
    w_opt = torch.optim.Adam(model.weight_parameters(), lr=cfg.lr)
    a_opt = torch.optim.Adam(model.arch_parameters(), lr=cfg.arch_lr, betas=(0.5, 0.999),
                             weight_decay=cfg.arch_weight_decay)
    scaler = rt.grad_scaler()
    loop = StageLoop(NAME, ctx.stage_dir(NAME), loop_settings(cfg), rt, {"supernet": model},
                     {"weights": w_opt, "arch": a_opt},
                     metrics=["loss", "arch_loss", "free_share", "free_mass"],
                     val_metrics=["psnr", "psnr_input"], scaler=scaler)
    if ctx.resume:
        loop.resume()
    loop.state.setdefault("frozen_at", None)
    loop.state.setdefault("events", [])

    priors = reference_table(ctx)
    refs = ReferencePicker(ctx.faces.identity, train_idx)
    common = dict(degradation=degradation_config(data), augment=data.augment, device=rt.device, rank=rt.rank,
                  world=rt.world_size, references=refs, n_refs=data.n_refs, p_no_identity=data.p_no_identity,
                  priors=priors, patch=cfg.patch)
    weights_batches = BatchMaker(ctx.faces, half_w, cfg.batch, seed, "search-weights", **common)
    arch_batches = BatchMaker(ctx.faces, half_a, cfg.batch, seed, "search-arch", **common)
    ops = net_cfg.ops
    healthy = [p.detach().clone() for p in model.arch_parameters()]

    def l2(batch) -> torch.Tensor:
        identity, has = identity_inputs(batch)
        with rt.autocast():
            out = net(batch.degraded, None, identity, has_identity=has)
        return F.mse_loss(out.float(), batch.clean)

    def update(loss: torch.Tensor, opt: torch.optim.Optimizer) -> None:
        w_opt.zero_grad(set_to_none=True)
        a_opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    def step(i: int) -> dict[str, float]:
        loss = l2(weights_batches(i))
        update(loss, w_opt)
        out = {"loss": loss.item()}
        if i >= cfg.warmup and loop.state["frozen_at"] is None:
            arch_loss = l2(arch_batches(i))
            update(arch_loss, a_opt)
            report = collapse_report(model.fusion.alpha, ops, cfg.collapse.max_param_free)
            out.update(arch_loss=arch_loss.item(), free_share=report.argmax_share[0], free_mass=report.mass[0])
            if report.collapsed and cfg.collapse.action == "freeze":
                with torch.no_grad():
                    for p, h in zip(model.arch_parameters(), healthy):
                        p.copy_(h)
                loop.state["frozen_at"] = i + 1
                loop.state["events"].append({"step": i + 1, "action": "freeze", "report": report.summary()})
                if rt.is_main:
                    tqdm.write(f"[search] step {i + 1}: {report.summary()} -> architecture frozen at the last "
                               f"healthy alpha/beta (DARTS+ early stop)")
            else:
                if report.collapsed:
                    loop.state["events"].append({"step": i + 1, "action": "warn", "report": report.summary()})
                for p, h in zip(model.arch_parameters(), healthy):
                    h.copy_(p.detach())
        return out

    val = None
    if rt.is_main:
        val = mixed_validation_batch(ctx, cfg, val_idx, priors)

    @torch.no_grad()
    def evaluate(i: int) -> dict[str, float]:
        model.eval()
        identity, has = identity_inputs(val)
        restored = model(val.degraded, None, identity, has_identity=has)
        model.train()
        return {"psnr": psnr(restored, val.clean).mean().item(), "psnr_input": psnr(val.degraded, val.clean).mean().item()}

    loop.run(step, evaluate)
    if rt.is_main:
        save_weights(weights_path(ctx), {"": model})
        final = collapse_report(model.fusion.alpha, ops, cfg.collapse.max_param_free)
        write_json(ctx.stage_dir(NAME) / "collapse.json", {
            "final": final.summary(), "argmax_share": final.argmax_share, "mass": final.mass,
            "frozen_at": loop.state["frozen_at"], "events": loop.state["events"],
        })
        tqdm.write(f"[search] final architecture weights: {final.summary()}")
    rt.barrier()
