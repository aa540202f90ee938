"""Stage 1: pretrain the task encoders (deblur, denoise, low light) and the degradation classifier.

Paper sec. 4: "Encoders (E_B, E_N, E_L) are initially trained to address the corresponding
individual tasks", and the classification network is trained on the labels c with BCE. Each
encoder gets a light image head (:class:`engine.blocks.TaskPretrainNet`) and data with only its
degradation (always on); the classifier sees the mixed recipe. One step trains all four on their
own batches with one Adam; the encoder loss is L1 to the clean crop (robust for restoration warm-up;
the fused network is then trained with the paper's L2-based loss).

Writes ``pretrain/weights.safetensors`` with keys ``encoders.<task>.*`` and ``classifier.*``, the
names of :class:`engine.blocks.NASFEShell`, so the search loads them by name.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from engine.blocks import DegradationClassifier, TaskPretrainNet
from engine.configs import NASFEConfig
from engine.enhancer import CLASSES
from training.batches import TASKS, BatchMaker, degradation_config, fixed_batch
from training.checkpoint import save_weights
from training.loop import StageLoop
from training.stages.common import loop_settings, psnr, seeded_init, val_count
from training.stages.context import RunContext

__all__ = ["PretrainModel", "run", "weights_path"]

NAME = "pretrain"


class PretrainModel(nn.Module):
    """The three task nets and the classifier as one module (one DDP wrapper, one forward)."""

    def __init__(self, config: NASFEConfig) -> None:
        super().__init__()
        self.tasks = nn.ModuleDict({t: TaskPretrainNet(config, t) for t in CLASSES})
        self.classifier = DegradationClassifier(config)

    def forward(self, task_inputs: list[torch.Tensor], mixed: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Restorations of each task's ``(B, 3, S, S)`` input (order :data:`CLASSES`) and classifier
        logits ``(B, 3)`` of the mixed batch."""
        return [self.tasks[t](x) for t, x in zip(CLASSES, task_inputs)], self.classifier(mixed)

    def encoders(self) -> nn.ModuleDict:
        """The encoders alone, keyed like :attr:`engine.blocks.NASFEShell.encoders`."""
        return nn.ModuleDict({t: net.encoder for t, net in self.tasks.items()})


def weights_path(ctx: RunContext):
    return ctx.stage_dir(NAME) / "weights.safetensors"


def run(ctx: RunContext) -> None:
    """Train (or resume) the pretraining stage and write its weights."""
    ctx.check_fresh(NAME)
    cfg, rt, data, seed = ctx.cfg.pretrain, ctx.runtime, ctx.cfg.data, ctx.cfg.seed
    train_idx, val_idx = ctx.split
    with seeded_init(seed, "init-pretrain"):
        model = PretrainModel(ctx.net).to(rt.device)
    net = rt.wrap(model)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scaler = rt.grad_scaler()
    loop = StageLoop(NAME, ctx.stage_dir(NAME), loop_settings(cfg), rt, {"model": model}, {"adam": opt},
                     metrics=["loss", *(f"l1_{t}" for t in TASKS), "bce"],
                     val_metrics=[*(f"psnr_{t}" for t in TASKS), *(f"psnr_in_{t}" for t in TASKS), "cls_acc"],
                     scaler=scaler)
    if ctx.resume:
        loop.resume()

    def maker(task: str | None) -> BatchMaker:
        return BatchMaker(ctx.faces, train_idx, cfg.batch, seed, f"pretrain-{task or 'mixed'}",
                          degradation_config(data, task), data.augment, rt.device, rt.rank, rt.world_size,
                          patch=cfg.patch)

    makers = [maker(t) for t in TASKS]
    mixed = maker(None)

    def step(i: int) -> dict[str, float]:
        batches = [m(i) for m in makers]
        mix = mixed(i)
        with rt.autocast():
            outs, logits = net([b.degraded for b in batches], mix.degraded)
            l1 = [F.l1_loss(o.float(), b.clean) for o, b in zip(outs, batches)]
            bce = F.binary_cross_entropy_with_logits(logits.float(), mix.labels)
            loss = sum(l1) + bce
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return {"loss": loss.item(), **{f"l1_{t}": v.item() for t, v in zip(TASKS, l1)}, "bce": bce.item()}

    val = None
    if rt.is_main:
        n = val_count(ctx, cfg)
        val = {t: fixed_batch(ctx.faces, val_idx, n, seed, f"val-{t}", degradation_config(data, t), rt.device)
               for t in TASKS}
        val_mixed = fixed_batch(ctx.faces, val_idx, n, seed, "val-mixed", degradation_config(data), rt.device)

    @torch.no_grad()
    def evaluate(i: int) -> dict[str, float]:
        model.eval()
        out: dict[str, float] = {}
        for t in TASKS:
            b = val[t]
            out[f"psnr_{t}"] = psnr(model.tasks[t](b.degraded), b.clean).mean().item()
            out[f"psnr_in_{t}"] = psnr(b.degraded, b.clean).mean().item()
        pred = model.classifier(val_mixed.degraded) > 0
        out["cls_acc"] = (pred == (val_mixed.labels > 0.5)).float().mean().item()
        model.train()
        return out

    loop.run(step, evaluate)
    if rt.is_main:
        save_weights(weights_path(ctx), {"encoders": model.encoders(), "classifier": model.classifier})
    rt.barrier()
