"""Load the engine: the shipped network (or a given one) on the best or a chosen backend."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from engine.build import build_fused, build_supernet, load_fused, load_weights, read_weights
from engine.configs import NASFEConfig, get_config
from engine.enhancer import Enhancer
from engine.errors import UserError
from engine.fused import NASFENet
from engine.genotype import Genotype
from engine.runtime.paths import SHIPPED_GENOTYPE, SHIPPED_WEIGHTS
from engine.runtime.select import create_enhancer

__all__ = ["load_network", "load_enhancer", "random_network"]


def load_network(weights: str | Path | None = None, genotype: str | Path | None = None) -> NASFENet:
    """The fused inference network (batch norms folded, eval mode).

    Args:
        weights: a ``weights.safetensors`` written by :func:`engine.build.save_fused`; default: the
            shipped ``assets/engine/weights.safetensors``.
        genotype: its ``genotype.json``; default: the one beside ``weights``, else the genotype
            recorded in the weights' metadata (or the shipped one with the shipped weights).

    Raises:
        UserError: the shipped engine is missing, or a file is missing, corrupt or mismatched.
    """
    if weights is None:
        if genotype is not None:
            raise UserError(f"genotype {genotype} given without its weights: pass the weights file too")
        missing = [str(p) for p in (SHIPPED_GENOTYPE, SHIPPED_WEIGHTS) if not p.is_file()]
        if missing:
            raise UserError(
                f"the shipped engine is missing ({', '.join(missing)} not found): this build does not "
                "include the trained model yet; pass --weights FILE (weights.safetensors from nasfe-train)"
            )
        weights, genotype = SHIPPED_WEIGHTS, SHIPPED_GENOTYPE
    weights = Path(weights)
    if genotype is None and weights.with_name("genotype.json").is_file():
        genotype = weights.with_name("genotype.json")
    if genotype is not None:
        return load_fused(genotype, weights, fuse=True)  # type: ignore[return-value]
    _, metadata = read_weights(weights)
    if "genotype" not in metadata:
        raise UserError(f"{weights} records no genotype and has no genotype.json beside it; pass the genotype file")
    try:
        arch = Genotype.from_json(metadata["genotype"])
        net = NASFENet(get_config(arch.config), arch)
    except ValueError as exc:
        raise UserError(f"weights file {weights} has an unusable genotype record: {exc}") from None
    load_weights(net, weights)
    return net.eval().fuse()  # type: ignore[return-value]


@torch.no_grad()
def random_network(config: str | NASFEConfig, seed: int = 0) -> NASFENet:
    """A fused random-weight network for benchmarks and backend tests (it enhances nothing).

    The architecture is the genotype a freshly built supernet of ``config`` derives; the weights
    are the network's own initialisation from ``seed`` with every zero-initialised parameter (FiLM,
    log-gain head, identity projection, neutral embedding) and every batch-norm statistic drawn at
    random, so that every branch contributes and the output is a non-trivial image in a sensible
    range (about 5 % of rt output pixels leave [0, 1] on random input), rather than the near-identity
    of an untrained network.
    """
    arch = build_supernet(config, seed=seed).derive()
    net = build_fused(arch, config, seed=seed)
    g = torch.Generator().manual_seed(seed)
    for p in net.parameters():
        if not p.any():
            std = 0.5 / p[0].numel() ** 0.5 if p.ndim >= 2 else 0.05
            p.copy_(torch.randn(p.shape, generator=g) * std)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.copy_(torch.rand(c, generator=g) * 0.5 + 0.25)
            m.bias.copy_(torch.randn(c, generator=g) * 0.1)
    return net.eval().fuse()  # type: ignore[return-value]


def load_enhancer(
    backend: str = "auto",
    weights: str | Path | None = None,
    genotype: str | Path | None = None,
    *,
    threads: int | None = None,
    cache_dir: str | Path | None = None,
) -> Enhancer:
    """The engine, ready to :meth:`~engine.enhancer.Enhancer.enhance` uint8 RGB face crops.

    Args:
        backend: ``"auto"`` (best usable: tensorrt > cuda > openvino > onnxruntime > torch) or a name
            (:data:`engine.runtime.BACKENDS`).
        weights: weights file; default: the shipped engine (see :func:`load_network`).
        genotype: genotype file; default: beside the weights or recorded in them.
        threads: CPU threads; default half the usable cores, at least one.
        cache_dir: where exported graphs and TensorRT engines are kept; default the user's cache
            folder (:func:`engine.runtime.paths.user_cache_dir`).

    Raises:
        UserError: missing engine files, an unknown backend, or a backend that cannot run here (the
            message names the extra to install).

    Example:
        >>> enhancer = load_enhancer(backend="auto")                           # doctest: +SKIP
        >>> out = enhancer.enhance(crops_rgb)  # (N, 128, 128, 3) uint8 -> same  # doctest: +SKIP
    """
    net = load_network(weights, genotype)
    return create_enhancer(net, backend, threads=threads, cache_dir=cache_dir)
