"""Loading the converted recogniser weights shipped in ``assets/recognition``."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TypeVar

import torch
from safetensors.torch import load_file
from torch import nn

from engine.errors import UserError

M = TypeVar("M", bound=nn.Module)


@functools.lru_cache(maxsize=4)
def _read(path: str) -> dict[str, torch.Tensor]:
    return load_file(path)


def load_frozen(net: M, path: str | Path, label: str, device: str | torch.device = "cpu") -> M:
    """Fill ``net`` from the safetensors file ``path``; frozen (no parameter grads), eval mode.

    Raises:
        UserError: the file is missing or does not fit ``net`` (``label`` names the network).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{label} weights not found: {path} (run python -m engine.recognition.convert)")
    try:
        net.load_state_dict(_read(str(path)))
    except RuntimeError as exc:
        raise UserError(f"{path} does not hold {label} weights: {str(exc).splitlines()[0]}") from exc
    return net.requires_grad_(False).eval().to(device)
