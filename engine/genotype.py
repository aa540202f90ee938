"""Genotype: the architecture found by the search, as a small JSON file.

A genotype fixes, for the one cell type shared by all fusion layers, each block's two inputs and the
operator applied to each (``inputs`` index the cell's states: 0 = previous-previous cell,
1 = previous cell, ``2 + i`` = block ``i`` of this cell), and the network-level path: the fusion
level of each layer ``1..layers`` (layer 0 is the entry at level 0; the path ends at level 0, where
the decoder reads).

File format (``version`` 1)::

    {"format": "nasfe-genotype", "version": 1, "config": "rt",
     "blocks": [{"inputs": [0, 1], "ops": ["sep_conv_3x3", "fft_op"]}, ...],
     "path": [1, 1, 0, 1, 0]}
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from engine.configs import NASFEConfig
from engine.errors import UserError
from engine.ops import has_op

__all__ = [
    "BlockGene",
    "Genotype",
    "edge_index",
    "num_edges",
    "derive_cell",
    "viterbi_path",
    "alive_levels",
    "source_levels",
    "all_paths",
    "GENOTYPE_FORMAT",
    "GENOTYPE_VERSION",
]

GENOTYPE_FORMAT = "nasfe-genotype"
GENOTYPE_VERSION = 1


def num_edges(blocks: int) -> int:
    """Edges of a searchable cell: block ``i`` has one per earlier state (``2 + i``)."""
    return 2 * blocks + blocks * (blocks - 1) // 2


def edge_index(block: int, source: int) -> int:
    """Row of the architecture weights alpha for the edge ``state[source] -> block``."""
    if not 0 <= source < 2 + block:
        raise ValueError(f"block {block} has inputs 0..{block + 1}, got {source}")
    return 2 * block + block * (block - 1) // 2 + source


def alive_levels(layer: int, layers: int, levels: int) -> tuple[int, ...]:
    """Fusion levels that exist at ``layer`` (reachable from level 0 at layer 0, able to return to
    level 0 by the last layer). Layers -1 and 0 are the entry (level 0 only)."""
    if layer <= 0:
        return (0,)
    return tuple(range(min(layer, layers - layer, levels - 1) + 1))


def source_levels(layer: int, level: int, layers: int, levels: int) -> tuple[int, ...]:
    """Levels of layer ``layer - 1`` that feed node ``(layer, level)`` (one level apart at most)."""
    return tuple(k for k in alive_levels(layer - 1, layers, levels) if abs(k - level) <= 1)


def all_paths(layers: int, levels: int) -> list[tuple[int, ...]]:
    """Every valid network-level path (levels of layers ``1..layers``, ending at level 0)."""
    paths: list[tuple[int, ...]] = [()]
    for layer in range(1, layers + 1):
        paths = [
            p + (s,)
            for p in paths
            for s in alive_levels(layer, layers, levels)
            if abs(s - (p[-1] if p else 0)) <= 1
        ]
    return paths


@dataclass(frozen=True)
class BlockGene:
    """One block of the cell: ``op[0](state[inputs[0]]) + op[1](state[inputs[1]])``.

    Stored in canonical order (inputs ascending; the sum does not depend on the order), so equal
    blocks compare equal however they were written.
    """

    inputs: tuple[int, int]
    ops: tuple[str, str]

    def __post_init__(self) -> None:
        inputs, ops = tuple(self.inputs), tuple(self.ops)
        if len(inputs) == 2 == len(ops) and all(isinstance(j, int) for j in inputs) and inputs[0] > inputs[1]:
            inputs, ops = inputs[::-1], ops[::-1]
        object.__setattr__(self, "inputs", inputs)
        object.__setattr__(self, "ops", ops)


@dataclass(frozen=True)
class Genotype:
    """A derived architecture: the cell's blocks and the network-level path."""

    config: str
    blocks: tuple[BlockGene, ...]
    path: tuple[int, ...]

    def __post_init__(self) -> None:
        errors = self.problems()
        if errors:
            raise ValueError("invalid genotype: " + "; ".join(errors))

    def problems(self, config: NASFEConfig | None = None) -> list[str]:
        """Everything wrong with this genotype (alone, or for ``config``); empty when valid."""
        out: list[str] = []
        if not self.blocks:
            out.append("no blocks")
        for i, block in enumerate(self.blocks):
            if len(block.inputs) != 2 or len(block.ops) != 2:
                out.append(f"block {i} needs exactly two inputs and two ops")
                continue
            for j in block.inputs:
                if not isinstance(j, int) or not 0 <= j < 2 + i:
                    out.append(f"block {i} input {j!r} is not one of 0..{i + 1}")
            if block.inputs[0] == block.inputs[1]:
                out.append(f"block {i} uses input {block.inputs[0]} twice")
            for op in block.ops:
                if op == "zero":
                    out.append(f"block {i} uses the zero operator")
                elif not has_op(op):
                    out.append(f"block {i} uses unknown operator {op!r}")
        if not self.path:
            out.append("empty path")
        levels = (0, *self.path)
        for layer, (a, b) in enumerate(zip(levels, levels[1:]), start=1):
            if not isinstance(b, int) or b < 0 or abs(b - a) > 1:
                out.append(f"path level {b!r} at layer {layer} is not a step of at most one from {a}")
        if self.path and self.path[-1] != 0:
            out.append(f"path must end at level 0, ends at {self.path[-1]}")
        if config is not None:
            if len(self.blocks) != config.blocks:
                out.append(f"{len(self.blocks)} blocks, config {config.name!r} has {config.blocks}")
            if len(self.path) != config.layers:
                out.append(f"path has {len(self.path)} layers, config {config.name!r} has {config.layers}")
            if self.path and max(self.path) >= config.levels:
                out.append(f"path reaches level {max(self.path)}, config {config.name!r} has {config.levels} levels")
            foreign = sorted({op for b in self.blocks for op in b.ops} - set(config.ops))
            if foreign:
                out.append(f"operators {foreign} are not in config {config.name!r}'s search space")
        return out

    def check(self, config: NASFEConfig) -> None:
        """Raise ``ValueError`` listing every mismatch between this genotype and ``config``."""
        errors = self.problems(config)
        if errors:
            raise ValueError("genotype does not fit the config: " + "; ".join(errors))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": GENOTYPE_FORMAT,
            "version": GENOTYPE_VERSION,
            "config": self.config,
            "blocks": [{"inputs": list(b.inputs), "ops": list(b.ops)} for b in self.blocks],
            "path": list(self.path),
        }

    def to_json(self) -> str:
        """Canonical JSON text (sorted keys: equal genotypes give equal text)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any) -> Genotype:
        """Parse and validate; raises ``ValueError`` saying what is wrong."""
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        if data.get("format") != GENOTYPE_FORMAT:
            raise ValueError(f"format is {data.get('format')!r}, expected {GENOTYPE_FORMAT!r}")
        if data.get("version") != GENOTYPE_VERSION:
            raise ValueError(f"version {data.get('version')!r} is not supported (expected {GENOTYPE_VERSION})")
        missing = [k for k in ("config", "blocks", "path") if k not in data]
        if missing:
            raise ValueError(f"missing keys {missing}")
        if not isinstance(data["config"], str):
            raise ValueError("'config' must be a string")
        if not isinstance(data["blocks"], list) or not isinstance(data["path"], list):
            raise ValueError("'blocks' and 'path' must be lists")
        blocks = []
        for i, b in enumerate(data["blocks"]):
            if not isinstance(b, dict) or not isinstance(b.get("inputs"), list) or not isinstance(b.get("ops"), list):
                raise ValueError(f"block {i} must be an object with lists 'inputs' and 'ops'")
            blocks.append(BlockGene(tuple(b["inputs"]), tuple(b["ops"])))  # type: ignore[arg-type]
        return cls(data["config"], tuple(blocks), tuple(data["path"]))

    @classmethod
    def from_json(cls, text: str) -> Genotype:
        """Parse JSON text; raises ``ValueError`` on bad JSON or an invalid genotype."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not JSON ({exc})") from exc
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        """Write :meth:`to_json` (indented) to ``path``."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: str | Path, config: NASFEConfig | None = None) -> Genotype:
        """Read and validate a genotype file (and check it against ``config`` if given).

        Raises:
            UserError: missing, unreadable or invalid file, or a mismatch with ``config``; the
                message names the file.
        """
        p = Path(path)
        try:
            text = p.read_text()
        except FileNotFoundError:
            raise UserError(f"genotype file not found: {p}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read genotype file {p}: {exc}") from None
        try:
            genotype = cls.from_json(text)
            if config is not None:
                genotype.check(config)
        except ValueError as exc:
            raise UserError(f"bad genotype file {p}: {exc}") from None
        return genotype


def derive_cell(alpha: Tensor, ops: tuple[str, ...], blocks: int) -> tuple[BlockGene, ...]:
    """DARTS decoding of the cell: per block the two inputs whose strongest non-zero operator has the
    largest softmax weight, each with that operator. Ties go to the lower index (deterministic).

    Args:
        alpha: ``(num_edges(blocks), len(ops))`` architecture logits.
        ops: operator names of alpha's columns.
        blocks: blocks per cell.
    """
    if alpha.shape != (num_edges(blocks), len(ops)):
        raise ValueError(f"alpha: expected shape {(num_edges(blocks), len(ops))}, got {tuple(alpha.shape)}")
    weights = torch.softmax(alpha.detach().double().cpu(), dim=-1).tolist()
    candidates = [k for k, op in enumerate(ops) if op != "zero"]
    genes = []
    for i in range(blocks):
        scored = []
        for j in range(2 + i):
            row = weights[edge_index(i, j)]
            best = max(candidates, key=lambda k: (row[k], -k))
            scored.append((row[best], j, ops[best]))
        top = sorted(sorted(scored, key=lambda s: (-s[0], s[1]))[:2], key=lambda s: s[1])
        genes.append(BlockGene((top[0][1], top[1][1]), (top[0][2], top[1][2])))
    return tuple(genes)


def viterbi_path(transition: list[dict[int, dict[int, float]]], layers: int, levels: int) -> tuple[int, ...]:
    """Most probable level sequence from level 0 (layer 0) to level 0 (last layer).

    Args:
        transition: ``transition[l - 1][s][k]`` = probability that node ``(l, s)`` takes its input
            from level ``k`` of layer ``l - 1`` (each node's incoming weights sum to 1).
        layers, levels: network size.

    Returns:
        levels of layers ``1..layers``. Ties go to the lower level.
    """
    score: dict[int, float] = {0: 0.0}
    back: list[dict[int, int]] = []
    for layer in range(1, layers + 1):
        new: dict[int, float] = {}
        arg: dict[int, int] = {}
        for s in alive_levels(layer, layers, levels):
            best_k, best = -1, -math.inf
            for k in source_levels(layer, s, layers, levels):
                p = transition[layer - 1][s][k]
                value = score[k] + (math.log(p) if p > 0 else -math.inf)
                if value > best:
                    best_k, best = k, value
            new[s], arg[s] = best, best_k if best_k >= 0 else source_levels(layer, s, layers, levels)[0]
        score = new
        back.append(arg)
    path = [0]
    for layer in range(layers, 1, -1):
        path.append(back[layer - 1][path[-1]])
    return tuple(reversed(path))
