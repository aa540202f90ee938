"""Parameter and FLOP counts, the worst-case FLOPs of any derived network, CPU latency.

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode``: 2 per multiply-add of every
convolution and matrix product (including the DFT matmuls of ``fft_op`` and attention);
element-wise work (activations, BN, additions, resampling) is not counted.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from engine.blocks import CellInput
from engine.configs import NASFEConfig, get_config
from engine.fused import NASFENet
from engine.genotype import BlockGene, Genotype, all_paths
from engine.ops import create_op
from engine.ops.layers import ConvBN

__all__ = [
    "count_params",
    "count_flops",
    "example_inputs",
    "network_flops",
    "WorstCase",
    "worst_case",
    "param_range",
    "measure_latency",
    "Latency",
    "FLOP_COUNTER",
]

#: How FLOPs are counted (shown by ``nasfe-train info``).
FLOP_COUNTER = "torch.utils.flop_counter.FlopCounterMode (2 per multiply-add of conv/matmul; element-wise not counted)"


def count_params(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (learnable, by default) parameter elements."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def count_flops(module: nn.Module, *args: object, **kwargs: object) -> int:
    """FLOPs of one ``module(*args, **kwargs)`` call (see module docstring for what counts)."""
    counter = FlopCounterMode(display=False)
    with counter:
        module(*args, **kwargs)
    return int(counter.get_total_flops())


def example_inputs(config: NASFEConfig, batch: int = 1, size: int | None = None, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A random image ``(batch, 3, S, S)`` in [0, 1] and identity prior ``(batch, id_channels, h, h)``."""
    g = torch.Generator().manual_seed(seed)
    s = size or config.crop_size
    return (
        torch.rand(batch, 3, s, s, generator=g),
        torch.randn(batch, config.id_channels, config.id_size, config.id_size, generator=g),
    )


def network_flops(net: nn.Module, config: NASFEConfig, size: int | None = None) -> int:
    """FLOPs of one crop through ``net`` with the classifier (``prior=None``) and an identity prior."""
    x, identity = example_inputs(config, 1, size)
    was_training = net.training
    net.eval()
    try:
        return count_flops(net, x, None, identity)
    finally:
        net.train(was_training)


@dataclass(frozen=True)
class WorstCase:
    """The most expensive network a config's search can derive, and its counted FLOPs."""

    genotype: Genotype
    flops: int


def _level_shape(config: NASFEConfig, level: int, size: int) -> tuple[int, int]:
    """Channels and side of fusion level ``level`` for ``size x size`` crops."""
    return config.fusion_channels[level], size // (config.stem * 2 ** (config.fusion_down + level))


def _extreme_genotype(
    cfg: NASFEConfig,
    op_cost: Callable[[str, int], int],
    input_cost: Callable[[int, int], int],
    out_cost: Callable[[int], int],
    largest: bool,
) -> Genotype:
    """The genotype maximising (or minimising) an additive cost over every path and operator choice.

    Costs add up over a cell's parts and every block slot reads a state of the cell's width, so the
    extreme cell puts one operator (the extreme one summed over the path's levels) on all
    ``2 * blocks`` slots; block 0 always reads both cell inputs, so every cell pays both resamplers
    (``input_cost(source_level, level)``) and its output projection (``out_cost(level)``).
    """
    ops = [op for op in cfg.ops if op != "zero"]
    sign = 1 if largest else -1
    best: tuple[int, str, tuple[int, ...]] | None = None
    for path in all_paths(cfg.layers, cfg.levels):
        lv = (0, 0, *path)
        fixed = sum(
            input_cost(lv[i + 1], lv[i + 2]) + input_cost(lv[i], lv[i + 2]) + out_cost(lv[i + 2])
            for i in range(cfg.layers)
        )
        for op in ops:
            total = sign * (fixed + 2 * cfg.blocks * sum(op_cost(op, level) for level in path))
            if best is None or total > best[0]:
                best = (total, op, path)
    assert best is not None
    _, op, path = best
    return Genotype(cfg.name, tuple(BlockGene((0, 1), (op, op)) for _ in range(cfg.blocks)), path)


def worst_case(config: str | NASFEConfig, size: int | None = None) -> WorstCase:
    """The derived network with the most FLOPs over every path and every operator choice.

    Part costs are counted on each part alone to find it (see :func:`_extreme_genotype`); the
    winner is then built and counted whole, so the returned bound is measured, not estimated.
    Cached per ``(config, size)``.
    """
    return _worst_case(get_config(config), size or get_config(config).crop_size)


@functools.lru_cache(maxsize=16)
def _worst_case(cfg: NASFEConfig, s: int) -> WorstCase:
    @functools.cache
    def op_cost(op: str, level: int) -> int:
        c, side = _level_shape(cfg, level, s)
        return count_flops(create_op(op, c).eval(), torch.zeros(1, c, side, side))

    @functools.cache
    def input_cost(src: int, dst: int) -> int:
        c, side = _level_shape(cfg, src, s)
        return count_flops(CellInput(c, cfg.fusion_channels[dst], dst - src).eval(), torch.zeros(1, c, side, side))

    @functools.cache
    def out_cost(level: int) -> int:
        c, side = _level_shape(cfg, level, s)
        return count_flops(ConvBN(cfg.blocks * c, c, 1).eval(), torch.zeros(1, cfg.blocks * c, side, side))

    genotype = _extreme_genotype(cfg, op_cost, input_cost, out_cost, largest=True)
    return WorstCase(genotype, network_flops(NASFENet(cfg, genotype), cfg, s))


def param_range(config: str | NASFEConfig) -> tuple[int, int]:
    """Learnable parameters of the lightest and the heaviest network the config's search can derive
    (both built and counted)."""
    cfg = get_config(config)

    @functools.cache
    def op_cost(op: str, level: int) -> int:
        return count_params(create_op(op, cfg.fusion_channels[level]))

    def input_cost(src: int, dst: int) -> int:
        return count_params(CellInput(cfg.fusion_channels[src], cfg.fusion_channels[dst], dst - src))

    def out_cost(level: int) -> int:
        c = cfg.fusion_channels[level]
        return count_params(ConvBN(cfg.blocks * c, c, 1))

    low, high = (_extreme_genotype(cfg, op_cost, input_cost, out_cost, largest) for largest in (False, True))
    return count_params(NASFENet(cfg, low)), count_params(NASFENet(cfg, high))


@dataclass(frozen=True)
class Latency:
    """Wall time of one forward in milliseconds: the median, and the fastest run (the better
    estimate of an unloaded machine when other processes share the cores)."""

    median_ms: float
    min_ms: float


@torch.no_grad()
def measure_latency(
    net: nn.Module,
    x: Tensor,
    *,
    threads: int,
    channels_last: bool = True,
    warmup: int = 10,
    runs: int = 50,
    **kwargs: object,
) -> Latency:
    """Time ``net(x, **kwargs)`` (eval mode) on ``threads`` CPU threads; restores the thread count."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        net.eval()
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        times = []
        for i in range(warmup + runs):
            t = time.perf_counter()
            net(x, **kwargs)
            if i >= warmup:
                times.append((time.perf_counter() - t) * 1000.0)
        return Latency(statistics.median(times), min(times))
    finally:
        torch.set_num_threads(old)
