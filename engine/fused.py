"""The derived ("fused") NASFE network: built from a genotype alone, only the chosen operators.

Each fusion layer is one cell at the level the genotype's path gives it; each block applies its two
chosen operators to its two chosen inputs and adds. Cell inputs that no block reads are not built.
Weights come from training this network directly, or from a supernet via
:func:`engine.build.transfer_weights` (warm start). :meth:`NASFEShell.fuse` then folds every batch
norm into its convolution for inference.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from engine.blocks import CellInput, NASFEShell
from engine.configs import NASFEConfig
from engine.genotype import BlockGene, Genotype
from engine.ops import create_op
from engine.ops.layers import ConvBN

__all__ = ["FusedBlock", "FusedCell", "FusedFusion", "NASFENet"]


class FusedBlock(nn.Module):
    """``op_a(state[i_a]) + op_b(state[i_b])``."""

    def __init__(self, channels: int, gene: BlockGene) -> None:
        super().__init__()
        self.inputs = gene.inputs
        self.op_a = create_op(gene.ops[0], channels)
        self.op_b = create_op(gene.ops[1], channels)

    def forward(self, states: Sequence[Tensor]) -> Tensor:
        return self.op_a(states[self.inputs[0]]) + self.op_b(states[self.inputs[1]])


class FusedCell(nn.Module):
    """One fusion layer at ``level``; ``prev_level``/``pp_level`` are where its inputs come from."""

    def __init__(
        self,
        config: NASFEConfig,
        genes: Sequence[BlockGene],
        level: int,
        prev_level: int,
        pp_level: int,
    ) -> None:
        super().__init__()
        widths = config.fusion_channels
        c = widths[level]
        # Block 0 reads two distinct states out of {0, 1}, so both cell inputs are always used.
        self.pre_pp = CellInput(widths[pp_level], c, level - pp_level)
        self.pre_prev = CellInput(widths[prev_level], c, level - prev_level)
        self.blocks = nn.ModuleList(FusedBlock(c, gene) for gene in genes)
        self.out = ConvBN(len(genes) * c, c, 1)

    def forward(self, prev: Tensor, pp: Tensor) -> Tensor:
        states = [self.pre_pp(pp), self.pre_prev(prev)]
        for block in self.blocks:
            states.append(block(states))
        return self.out(torch.cat(states[2:], dim=1))


class FusedFusion(nn.Module):
    """The fusion network along the genotype's path: ``cells[l - 1]`` is layer ``l``."""

    def __init__(self, config: NASFEConfig, genotype: Genotype) -> None:
        super().__init__()
        genotype.check(config)
        self.levels = (0, 0, *genotype.path)  # levels of layers -1, 0, 1, ..., n
        self.cells = nn.ModuleList(
            FusedCell(config, genotype.blocks, self.levels[i + 2], self.levels[i + 1], self.levels[i])
            for i in range(config.layers)
        )

    def forward(self, h0: Tensor) -> Tensor:
        pp, prev = h0, h0
        for cell in self.cells:
            pp, prev = prev, cell(prev, pp)
        return prev


class NASFENet(NASFEShell):
    """The derived NASFE network: ``forward(x, prior=None, identity=None) -> restored``.

    See :meth:`NASFEShell.forward` for shapes; :meth:`NASFEShell.classify` for the prior alone.
    """

    fusion: FusedFusion

    def __init__(self, config: NASFEConfig, genotype: Genotype) -> None:
        super().__init__(config, FusedFusion(config, genotype))
        self.genotype = genotype
