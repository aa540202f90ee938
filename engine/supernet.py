"""The search network: every operator on every edge (cell level, weights alpha) and every fusion
level at every layer (network level, weights beta), Auto-DeepLab style.

Cell level (DARTS, paper eq. 4-6): block ``i`` of a cell sums, over every earlier state ``j``
(previous-previous cell, previous cell, blocks ``< i``), ``sum_k softmax(alpha[j->i])_k op_k(state_j)``.
One alpha is shared by all cells (eq. 6: ``Z^l = Cell(Z^{l-1}, Z^{l-2}, alpha)``).

Network level: node ``(l, s)`` (layer ``l``, level ``s``) is a cell whose previous input is the
beta-weighted sum of the resampled outputs of nodes ``(l-1, s-1), (l-1, s), (l-1, s+1)``; the
previous-previous input is the matching two-step mixture, so that with one-hot betas each node reads
exactly the cells of its path. Two deviations from Auto-DeepLab, both to keep the supernet cheap and
the derived network exact: (1) one cell per node mixes its *inputs* (rather than three cells, one per
incoming transition, mixing outputs); (2) beta is normalised over a node's *incoming* transitions,
so every mixed input is a convex combination. :func:`~engine.genotype.viterbi_path` decodes the most
probable path from level 0 back to level 0, where the decoder reads.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor, nn

from engine.blocks import CellInput, NASFEShell
from engine.configs import NASFEConfig
from engine.genotype import (
    Genotype,
    alive_levels,
    derive_cell,
    edge_index,
    num_edges,
    source_levels,
    viterbi_path,
)
from engine.ops import create_op
from engine.ops.layers import ConvBN

__all__ = ["MixedOp", "SearchCell", "SearchFusion", "NASFESupernet", "pp_source_levels"]


def pp_source_levels(layer: int, level: int, layers: int, levels: int) -> tuple[int, ...]:
    """Levels of layer ``layer - 2`` that reach node ``(layer, level)`` in two steps."""
    if layer <= 2:
        return (0,)
    out = {
        j
        for k in source_levels(layer, level, layers, levels)
        for j in source_levels(layer - 1, k, layers, levels)
    }
    return tuple(sorted(out))


class MixedOp(nn.Module):
    """``sum_k w_k op_k(x)`` over the search space (eq. 5)."""

    def __init__(self, channels: int, ops: Sequence[str]) -> None:
        super().__init__()
        self.ops = nn.ModuleDict({name: create_op(name, channels) for name in ops})

    def forward(self, x: Tensor, weights: Tensor) -> Tensor:
        out = 0.0
        for w, op in zip(weights, self.ops.values()):
            out = out + w * op(x)
        return out  # type: ignore[return-value]


class SearchCell(nn.Module):
    """One node ``(layer, level)`` of the supernet: input resampling per source level, all edges,
    concat of the blocks, 1x1 conv + BN back to the level's width."""

    def __init__(
        self,
        config: NASFEConfig,
        level: int,
        prev_levels: Sequence[int],
        pp_levels: Sequence[int],
    ) -> None:
        super().__init__()
        c = config.fusion_channels[level]
        widths = config.fusion_channels
        self.blocks = config.blocks
        self.pre_prev = nn.ModuleDict({str(k): CellInput(widths[k], c, level - k) for k in prev_levels})
        self.pre_pp = nn.ModuleDict({str(j): CellInput(widths[j], c, level - j) for j in pp_levels})
        self.edges = nn.ModuleList(MixedOp(c, config.ops) for _ in range(num_edges(config.blocks)))
        self.out = ConvBN(config.blocks * c, c, 1)

    def forward(
        self,
        prev: dict[int, Tensor],
        prev_weights: dict[int, Tensor],
        pp: dict[int, Tensor],
        pp_weights: dict[int, Tensor],
        alpha_weights: Tensor,
    ) -> Tensor:
        s1 = sum(prev_weights[k] * self.pre_prev[str(k)](prev[k]) for k in prev_weights)
        s0 = sum(pp_weights[j] * self.pre_pp[str(j)](pp[j]) for j in pp_weights)
        states: list[Tensor] = [s0, s1]  # type: ignore[list-item]
        for i in range(self.blocks):
            states.append(
                sum(self.edges[edge_index(i, j)](states[j], alpha_weights[edge_index(i, j)]) for j in range(2 + i))  # type: ignore[arg-type]
            )
        return self.out(torch.cat(states[2:], dim=1))


class SearchFusion(nn.Module):
    """The searchable fusion network: nodes ``(layer, level)``, alpha ``(E, |ops|)``, beta ``(L, levels, 3)``.

    ``beta[l - 1, s, d]`` is the logit of node ``(l, s)`` taking its input from level ``s + d - 1``
    of layer ``l - 1``; impossible transitions are masked out.
    """

    def __init__(self, config: NASFEConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        n, levels = config.layers, config.levels
        self.alpha = nn.Parameter(1e-3 * torch.randn(num_edges(config.blocks), len(config.ops), generator=generator))
        self.beta = nn.Parameter(1e-3 * torch.randn(n, levels, 3, generator=generator))
        mask = torch.zeros(n, levels, 3, dtype=torch.bool)
        for layer in range(1, n + 1):
            for s in alive_levels(layer, n, levels):
                for k in source_levels(layer, s, n, levels):
                    mask[layer - 1, s, k - s + 1] = True
        self.register_buffer("beta_mask", mask, persistent=False)
        self.nodes = nn.ModuleDict(
            {
                self.node_name(layer, s): SearchCell(
                    config,
                    s,
                    source_levels(layer, s, n, levels),
                    pp_source_levels(layer, s, n, levels),
                )
                for layer in range(1, n + 1)
                for s in alive_levels(layer, n, levels)
            }
        )

    @staticmethod
    def node_name(layer: int, level: int) -> str:
        return f"{layer}_{level}"

    def transition_weights(self) -> list[dict[int, dict[int, Tensor]]]:
        """``w[l - 1][s][k]``: softmax weight of source level ``k`` for node ``(l, s)`` (sums to 1)."""
        probs = torch.softmax(self.beta.masked_fill(~self.beta_mask, -1e9), dim=-1)
        n, levels = self.config.layers, self.config.levels
        return [
            {
                s: {k: probs[layer - 1, s, k - s + 1] for k in source_levels(layer, s, n, levels)}
                for s in alive_levels(layer, n, levels)
            }
            for layer in range(1, n + 1)
        ]

    def forward(self, h0: Tensor) -> Tensor:
        n = self.config.layers
        alpha_weights = torch.softmax(self.alpha, dim=-1)
        trans = self.transition_weights()
        one = torch.ones((), device=h0.device, dtype=h0.dtype)
        states: dict[int, dict[int, Tensor]] = {-1: {0: h0}, 0: {0: h0}}
        for layer in range(1, n + 1):
            states[layer] = {}
            for s, prev_w in trans[layer - 1].items():
                if layer <= 2:  # layers -1 and 0 are the entry: one source, weight 1
                    pp_w = {0: one}
                else:
                    pp_w = {}
                    for k, wk in prev_w.items():
                        for j, wj in trans[layer - 2][k].items():
                            pp_w[j] = pp_w[j] + wk * wj if j in pp_w else wk * wj
                states[layer][s] = self.nodes[self.node_name(layer, s)](
                    states[layer - 1], prev_w, states[layer - 2], pp_w, alpha_weights
                )
        return states[n][0]

    def derive(self) -> Genotype:
        """Decode alpha and beta: per block the two strongest non-zero inputs/ops, Viterbi path."""
        trans = [
            {s: {k: float(w.detach()) for k, w in ws.items()} for s, ws in layer.items()}
            for layer in self.transition_weights()
        ]
        return Genotype(
            config=self.config.name,
            blocks=derive_cell(self.alpha, self.config.ops, self.config.blocks),
            path=viterbi_path(trans, self.config.layers, self.config.levels),
        )

    @torch.no_grad()
    def set_architecture_(self, genotype: Genotype, margin: float = 1e4) -> None:
        """Make alpha and beta one-hot (up to ``exp(-margin)``) on ``genotype``: chosen edges on their
        operator, all other edges on ``zero``, each path node on its path source.

        With this the supernet computes exactly what the derived network computes (used by the
        equivalence test, and to fine-tune a fixed architecture inside the supernet).
        """
        genotype.check(self.config)
        if "zero" not in self.config.ops:
            raise ValueError("set_architecture_ needs 'zero' in the search space to silence unused edges")
        ops = list(self.config.ops)
        self.alpha.fill_(-margin)
        self.alpha[:, ops.index("zero")] = 0.0
        for i, gene in enumerate(genotype.blocks):
            for j, op in zip(gene.inputs, gene.ops):
                self.alpha[edge_index(i, j)] = -margin
                self.alpha[edge_index(i, j), ops.index(op)] = 0.0
        self.beta.fill_(-margin)
        levels = (0, *genotype.path)
        for layer in range(1, self.config.layers + 1):
            self.beta[layer - 1, levels[layer], levels[layer - 1] - levels[layer] + 1] = 0.0


class NASFESupernet(NASFEShell):
    """NASFE with the searchable fusion network; ``forward(x, prior=None, identity=None)`` as the
    derived network. Alternate optimisers over :meth:`weight_parameters` and :meth:`arch_parameters`
    (the paper follows DARTS' alternating updates)."""

    fusion: SearchFusion

    def __init__(self, config: NASFEConfig, generator: torch.Generator | None = None) -> None:
        super().__init__(config, SearchFusion(config, generator))

    def arch_parameters(self) -> list[nn.Parameter]:
        """``[alpha, beta]``."""
        return [self.fusion.alpha, self.fusion.beta]

    def weight_parameters(self) -> Iterator[nn.Parameter]:
        """Every parameter except alpha and beta."""
        arch = {id(p) for p in self.arch_parameters()}
        return (p for p in self.parameters() if id(p) not in arch)

    def derive(self) -> Genotype:
        """The architecture the current alpha/beta encode (deterministic, never ``zero``)."""
        return self.fusion.derive()

    def set_architecture_(self, genotype: Genotype, margin: float = 1e4) -> None:
        """See :meth:`SearchFusion.set_architecture_`."""
        self.fusion.set_architecture_(genotype, margin)
