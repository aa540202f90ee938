"""Build, save and load NASFE networks (safetensors only: no pickle).

Typical flows::

    sn = build_supernet("rt", seed=0)                 # search
    genotype = sn.derive(); genotype.save("genotype.json")
    net = derive_fused(sn, genotype)                  # warm start from the supernet's weights
    save_fused(net, "weights.safetensors")            # records config + genotype in the metadata
    net = load_fused("genotype.json", "weights.safetensors").fuse()   # inference, BN folded
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from engine.configs import NASFEConfig, get_config
from engine.errors import UserError
from engine.fused import NASFENet
from engine.genotype import Genotype, edge_index
from engine.supernet import NASFESupernet

__all__ = [
    "build_supernet",
    "build_fused",
    "transfer_weights",
    "derive_fused",
    "save_weights",
    "load_weights",
    "read_weights",
    "save_fused",
    "load_fused",
]

_FUSED_FORMAT = "nasfe-fused"


def build_supernet(config: str | NASFEConfig, seed: int = 0) -> NASFESupernet:
    """A freshly initialised supernet (weights and alpha/beta from ``seed``)."""
    cfg = get_config(config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return NASFESupernet(cfg, generator=torch.Generator().manual_seed(seed))


def build_fused(genotype: Genotype, config: str | NASFEConfig | None = None, seed: int = 0) -> NASFENet:
    """A freshly initialised derived network; ``config`` defaults to ``genotype.config``."""
    cfg = get_config(config if config is not None else genotype.config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return NASFENet(cfg, genotype)


@torch.no_grad()
def transfer_weights(supernet: NASFESupernet, net: NASFENet) -> None:
    """Copy every weight (and BN statistic) ``net`` has from the matching place in ``supernet``.

    Shell parts (encoders, classifier, entry, identity branch, decoder) copy by name; fusion cell
    ``l`` takes the supernet node on the path, its input resamplers for the path's source levels,
    and for each block the chosen operator of the chosen edge.
    """
    if supernet.config != net.config:
        raise ValueError(f"config mismatch: supernet {supernet.config.name!r}, network {net.config.name!r}")
    for name in ("classifier", "encoders", "entry", "identity_branch", "decoder"):
        getattr(net, name).load_state_dict(getattr(supernet, name).state_dict())
    levels = net.fusion.levels
    for i, cell in enumerate(net.fusion.cells):
        layer = i + 1
        node = supernet.fusion.nodes[supernet.fusion.node_name(layer, levels[i + 2])]
        cell.pre_prev.load_state_dict(node.pre_prev[str(levels[i + 1])].state_dict())
        cell.pre_pp.load_state_dict(node.pre_pp[str(levels[i])].state_dict())
        for b, (block, gene) in enumerate(zip(cell.blocks, net.genotype.blocks)):
            for module, j, op in ((block.op_a, gene.inputs[0], gene.ops[0]), (block.op_b, gene.inputs[1], gene.ops[1])):
                module.load_state_dict(node.edges[edge_index(b, j)].ops[op].state_dict())
        cell.out.load_state_dict(node.out.state_dict())


def derive_fused(supernet: NASFESupernet, genotype: Genotype | None = None) -> NASFENet:
    """The derived network of ``genotype`` (default: ``supernet.derive()``) with the supernet's weights."""
    genotype = genotype if genotype is not None else supernet.derive()
    net = NASFENet(supernet.config, genotype)
    transfer_weights(supernet, net)
    return net.train(supernet.training)


def _state(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}


def save_weights(module: nn.Module, path: str | Path, metadata: Mapping[str, str] | None = None) -> None:
    """Write ``module.state_dict()`` (parameters and buffers) to a safetensors file."""
    save_file(_state(module), str(path), metadata=dict(metadata or {}))


def read_weights(path: str | Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file.

    Raises:
        UserError: missing or unreadable/corrupt file (the message names it).
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"weights file not found: {p}")
    try:
        tensors = load_file(str(p))
        with safe_open(str(p), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"corrupt or unreadable weights file {p}: {exc}") from None
    return tensors, metadata


def load_weights(module: nn.Module, path: str | Path, *, prefix: str = "", allow_missing: bool = False) -> list[str]:
    """Load a safetensors file into ``module`` strictly (every key, every shape).

    ``prefix`` selects and strips a key prefix first, e.g. ``prefix="encoder."`` loads the encoder of
    a saved :class:`~engine.blocks.TaskPretrainNet` into ``model.encoders["noise"]``, and
    ``prefix="classifier."`` a full network's classifier into a standalone classifier.
    ``allow_missing`` lets keys of ``module`` that the file lacks keep their values (fine-tuning
    weights trained before a part was added); unexpected keys and other shapes still fail.

    Returns:
        The keys of ``module`` left as they were (empty unless ``allow_missing``).

    Raises:
        UserError: missing/corrupt file, or keys/shapes that do not match (named, with the file).
    """
    tensors, _ = read_weights(path)
    return _load_state(module, tensors, path, prefix, allow_missing)


def _load_state(
    module: nn.Module, tensors: dict[str, Tensor], path: str | Path, prefix: str = "", allow_missing: bool = False
) -> list[str]:
    """Strict ``load_state_dict`` whose mismatches become one :class:`UserError` naming ``path``."""
    if prefix:
        tensors = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        if not tensors:
            raise UserError(f"weights file {path} has no tensors under prefix {prefix!r}")
    own = module.state_dict()
    kept = sorted(set(own) - set(tensors)) if allow_missing else []
    tensors = {**{k: own[k] for k in kept}, **tensors}
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    shapes = [f"{k}: file {tuple(tensors[k].shape)} != model {tuple(own[k].shape)}" for k in own if k in tensors and tensors[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if shapes:
            parts.append(f"{len(shapes)} of another shape (e.g. {shapes[0]})")
        raise UserError(f"weights file {path} does not match the network: " + ", ".join(parts))
    module.load_state_dict(tensors)
    return kept


def save_fused(net: NASFENet, path: str | Path) -> None:
    """Save a derived network's weights with its config name and genotype in the metadata.

    Save before :meth:`~engine.blocks.NASFEShell.fuse` (the folded form has other keys).
    """
    save_weights(
        net,
        path,
        {"format": _FUSED_FORMAT, "config": net.config.name, "genotype": net.genotype.to_json()},
    )


def load_fused(
    genotype_path: str | Path,
    weights_path: str | Path,
    config: str | NASFEConfig | None = None,
    *,
    fuse: bool = False,
) -> NASFENet:
    """Build the derived network of ``genotype.json`` and load ``weights.safetensors`` into it.

    Args:
        genotype_path: genotype JSON (:class:`~engine.genotype.Genotype`).
        weights_path: safetensors written by :func:`save_fused` (or :func:`save_weights`).
        config: network config (name or object); default: the one named in the genotype.
        fuse: fold batch norms for inference (:meth:`~engine.blocks.NASFEShell.fuse`).

    Returns:
        The network in eval mode.

    Raises:
        UserError: a missing/corrupt/invalid file, a genotype that does not fit the config, or
            weights saved for another config/genotype or not matching the network; the message
            names the offending file.
    """
    raw = Genotype.load(genotype_path)
    cfg = get_config(config if config is not None else raw.config)
    try:
        raw.check(cfg)
    except ValueError as exc:
        raise UserError(f"genotype file {genotype_path} does not fit config {cfg.name!r}: {exc}") from None
    tensors, metadata = read_weights(weights_path)
    if metadata.get("genotype") is not None:
        try:
            saved = Genotype.from_json(metadata["genotype"])
        except ValueError as exc:
            raise UserError(f"weights file {weights_path} has a corrupt genotype record: {exc}") from None
        if saved != raw:
            raise UserError(f"weights file {weights_path} was saved for another genotype than {genotype_path}")
    if metadata.get("config") not in (None, cfg.name):
        raise UserError(f"weights file {weights_path} was saved for config {metadata['config']!r}, not {cfg.name!r}")
    net = NASFENet(cfg, raw)
    _load_state(net, tensors, weights_path)
    net.eval()
    return net.fuse() if fuse else net  # type: ignore[return-value]
