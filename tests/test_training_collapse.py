"""The collapse detector fires on skip-dominated architecture weights and not on healthy ones."""

from __future__ import annotations

import pytest
import torch

from training.collapse import collapse_report, is_parameter_free
from training.seeding import make_generator

OPS = ["zero", "identity", "sep_conv_3x3", "dil_conv_3x3", "res_op", "fft_op"]


def test_parameter_free_ops_classify_themselves() -> None:
    assert [is_parameter_free(o) for o in OPS] == [True, True, False, False, False, False]


def test_fires_on_all_skip() -> None:
    a = torch.randn(3, 14, len(OPS), generator=make_generator(0)) * 0.01
    a[..., 1] += 2.0  # identity strongest everywhere
    rep = collapse_report(a, OPS, threshold=0.5)
    assert rep.collapsed and rep.collapsed_cells == (0, 1, 2)
    assert all(s == 1.0 for s in rep.argmax_share) and all(m > 0.5 for m in rep.mass)
    assert "COLLAPSED" in rep.summary()


def test_fires_on_one_collapsed_cell_only() -> None:
    a = torch.randn(2, 10, len(OPS), generator=make_generator(1)) * 0.01
    a[0, :, 2] += 1.0  # cell 0 prefers a convolution
    a[1, :7, 0] += 1.0  # cell 1: 7 of 10 edges prefer zero
    a[1, 7:, 3] += 1.0
    assert collapse_report(a, OPS, threshold=0.5).collapsed_cells == (1,)


def test_quiet_on_healthy() -> None:
    a = torch.randn(4, 14, len(OPS), generator=make_generator(2)) * 1e-3  # DARTS initialisation
    a[..., 2:] += torch.rand(4, 14, 4, generator=make_generator(3))  # a trained search: convs lead
    rep = collapse_report(a, OPS, threshold=0.5)
    assert not rep.collapsed and "healthy" in rep.summary()
    assert collapse_report(a[0], OPS, 0.5).argmax_share == (rep.argmax_share[0],)


def test_bad_shape() -> None:
    with pytest.raises(ValueError, match="K=6"):
        collapse_report(torch.zeros(4, 5), OPS, 0.5)


def test_derive_caps_skip_edges() -> None:
    from engine.genotype import num_edges
    from training.stages.derive import capped_cell

    ops = ("zero", "identity", "sep_conv_3x3", "res_op")
    blocks = 4
    a = torch.randn(num_edges(blocks), len(ops), generator=make_generator(4)) * 0.01
    a[:, 1] += 3.0  # skip strongest on every edge
    a[:, 2] += torch.linspace(0.0, 1.0, num_edges(blocks))
    genes, removed = capped_cell(a, ops, blocks, max_skip=2)
    skips = sum(op == "identity" for g in genes for op in g.ops)
    assert skips == 2 and removed >= 6
    uncapped, none_removed = capped_cell(a, ops, blocks, max_skip=-1)
    assert none_removed == 0 and sum(op == "identity" for g in uncapped for op in g.ops) == 2 * blocks
