"""Stage 3: derive the genotype from the searched α/β (the network engineer's DARTS decoding),
with at most ``derive.max_skip`` skip edges per cell.

The cap is the second line of defence against the skip collapse (DARTS+): while the decoded cell
has too many ``identity`` operators, the weakest chosen skip edge loses its skip option and the cell
is decoded again. Writes ``genotype.json`` in the run folder, ``derive/report.json`` and
``derive/alpha.png`` (softmax of α per edge and operator, β transition weights).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from engine.build import build_supernet  # noqa: E402
from engine.errors import UserError  # noqa: E402
from engine.genotype import BlockGene, Genotype, derive_cell, edge_index  # noqa: E402
from training.checkpoint import load_weights, write_json  # noqa: E402
from training.collapse import collapse_report  # noqa: E402
from training.stages import search  # noqa: E402
from training.stages.context import RunContext  # noqa: E402

__all__ = ["run", "capped_cell", "genotype_path"]

NAME = "derive"
SKIP = "identity"


def genotype_path(ctx: RunContext) -> Path:
    return ctx.out / "genotype.json"


def capped_cell(alpha: torch.Tensor, ops: tuple[str, ...], blocks: int, max_skip: int) -> tuple[tuple[BlockGene, ...], int]:
    """:func:`engine.genotype.derive_cell` with at most ``max_skip`` skip operators in the cell.

    Args:
        alpha: ``(num_edges(blocks), len(ops))`` architecture logits.
        ops: operator names of alpha's columns.
        blocks: blocks per cell.
        max_skip: largest number of ``identity`` operators allowed (< 0: no cap).

    Returns:
        The blocks and how many skip options were removed to meet the cap.
    """
    a = alpha.detach().double().cpu().clone()
    if max_skip < 0 or SKIP not in ops:
        return derive_cell(a, ops, blocks), 0
    k = ops.index(SKIP)
    weight = torch.softmax(a, dim=-1)[:, k]
    removed = 0
    while True:
        genes = derive_cell(a, ops, blocks)
        chosen = [edge_index(i, j) for i, g in enumerate(genes) for j, op in zip(g.inputs, g.ops) if op == SKIP]
        if len(chosen) <= max_skip:
            return genes, removed
        weakest = min(chosen, key=lambda e: (weight[e].item(), e))
        a[weakest, k] = float("-inf")
        removed += 1


def _plot(alpha: torch.Tensor, transitions: list, ops: tuple[str, ...], blocks: int, path: Path) -> None:
    w = torch.softmax(alpha.detach().float().cpu(), dim=-1).numpy()
    labels = [f"{j}->b{i}" for i in range(blocks) for j in range(2 + i)]
    fig, axes = plt.subplots(1, 2, figsize=(12, max(3.0, 0.35 * len(labels) + 1.5)),
                             gridspec_kw={"width_ratios": [len(ops), 4]})
    im = axes[0].imshow(w, cmap="viridis", aspect="auto", vmin=0)
    axes[0].set_xticks(range(len(ops)), ops, rotation=60, ha="right")
    axes[0].set_yticks(range(len(labels)), labels)
    axes[0].set_title("cell α (softmax per edge)")
    fig.colorbar(im, ax=axes[0], fraction=0.04)
    rows = [(layer + 1, s, k, float(p)) for layer, nodes in enumerate(transitions)
            for s, srcs in nodes.items() for k, p in srcs.items()]
    axes[1].axis("off")
    axes[1].set_title("β: P(node layer,level <- source level)")
    text = "\n".join(f"layer {l} level {s} <- {k}: {p:.2f}" for l, s, k, p in rows)
    axes[1].text(0, 1, text, va="top", family="monospace", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run(ctx: RunContext) -> Genotype:
    """Decode the searched supernet into ``genotype.json`` (rank 0 writes; all ranks return it)."""
    weights = search.weights_path(ctx)
    if not weights.is_file():
        raise UserError(f"{weights} not found: run the search stage first (nasfe-train search --out {ctx.out})")
    net_cfg = ctx.net
    model = build_supernet(net_cfg)
    load_weights(weights, {"": model})
    searched = model.derive()
    blocks, removed = capped_cell(model.fusion.alpha, net_cfg.ops, net_cfg.blocks, ctx.cfg.derive.max_skip)
    genotype = Genotype(config=net_cfg.name, blocks=blocks, path=searched.path)
    if ctx.runtime.is_main:
        folder = ctx.stage_dir(NAME)
        folder.mkdir(parents=True, exist_ok=True)
        genotype.save(genotype_path(ctx))
        with torch.no_grad():
            transitions = [{s: {k: float(p) for k, p in src.items()} for s, src in layer.items()}
                           for layer in model.fusion.transition_weights()]
        report = collapse_report(model.fusion.alpha, net_cfg.ops, ctx.cfg.search.collapse.max_param_free)
        write_json(folder / "report.json", {
            "genotype": genotype.to_dict(),
            "uncapped": searched.to_dict(),
            "skip_options_removed": removed,
            "max_skip": ctx.cfg.derive.max_skip,
            "collapse": report.summary(),
        })
        _plot(model.fusion.alpha, transitions, net_cfg.ops, net_cfg.blocks, folder / "alpha.png")
        print(f"[derive] {genotype_path(ctx)}: " + "; ".join(
            f"b{i}: {g.ops[0]}({g.inputs[0]}) + {g.ops[1]}({g.inputs[1]})" for i, g in enumerate(genotype.blocks))
            + f"; path {list(genotype.path)}" + (f" ({removed} skip option(s) removed by the cap)" if removed else ""))
    ctx.runtime.barrier()
    return genotype
