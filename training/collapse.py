"""Detecting the DARTS collapse: architecture weights drifting to parameter-free operators.

Differentiable search is known to favour skip connections (and "zero") as the weights train,
because they ease optimisation of the supernet, not because the derived network is better (DARTS+,
Liang et al. 2019; DARTS-, Chu et al. 2021). We watch the share of edges per cell whose strongest
operator has no parameters (decided by building each operator and counting, so new operators
classify themselves). Above ``max_param_free`` the cell has collapsed; the search stage then stops
the architecture updates and restores the last healthy α (DARTS+ style early stopping), and the
derive stage caps skip edges per cell as a second line of defence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch

from engine.ops import create_op

__all__ = ["is_parameter_free", "CollapseReport", "collapse_report"]


@lru_cache(maxsize=None)
def is_parameter_free(op_name: str) -> bool:
    """True for operators without learnable parameters (skip, zero, pooling...)."""
    return sum(p.numel() for p in create_op(op_name, 8).parameters()) == 0


@dataclass(frozen=True)
class CollapseReport:
    """Per-cell view of where the architecture weights point.

    Attributes:
        argmax_share: per cell, share of edges whose strongest operator is parameter-free.
        mass: per cell, mean softmax mass on parameter-free operators.
        threshold: the share above which a cell counts as collapsed.
    """

    argmax_share: tuple[float, ...]
    mass: tuple[float, ...]
    threshold: float

    @property
    def collapsed_cells(self) -> tuple[int, ...]:
        return tuple(i for i, s in enumerate(self.argmax_share) if s > self.threshold)

    @property
    def collapsed(self) -> bool:
        return bool(self.collapsed_cells)

    def summary(self) -> str:
        """One line for the log."""
        cells = ", ".join(f"{s:.0%}" for s in self.argmax_share)
        verdict = f"COLLAPSED cells {list(self.collapsed_cells)}" if self.collapsed else "healthy"
        return f"parameter-free strongest ops per cell [{cells}] (limit {self.threshold:.0%}): {verdict}"


def collapse_report(alphas: torch.Tensor, op_names: Sequence[str], threshold: float) -> CollapseReport:
    """Measure collapse of architecture logits.

    Args:
        alphas: ``(E, K)`` logits of one cell or ``(L, E, K)`` for ``L`` cells; ``K == len(op_names)``.
        op_names: operator of each of the ``K`` columns (registry names).
        threshold: largest healthy share of parameter-free strongest operators, in [0, 1].

    Returns:
        :class:`CollapseReport`.

    Example:
        >>> a = torch.zeros(4, 3); a[:, 1] = 5.0
        >>> collapse_report(a, ["sep_conv_3x3", "identity", "zero"], 0.5).collapsed
        True
    """
    a = alphas.detach().float()
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[-1] != len(op_names):
        raise ValueError(f"alphas: expected (E, K) or (L, E, K) with K={len(op_names)}, got {tuple(alphas.shape)}")
    free = torch.tensor([is_parameter_free(n) for n in op_names])
    strongest_free = free[a.argmax(-1)]  # (L, E)
    mass = a.softmax(-1)[..., free].sum(-1)  # (L, E)
    return CollapseReport(
        argmax_share=tuple(strongest_free.float().mean(-1).tolist()),
        mass=tuple(mass.mean(-1).tolist()),
        threshold=threshold,
    )
