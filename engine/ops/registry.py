"""The one operator registry of the fusion search space: a factory per name, duplicates refused.

Every operator is shape-preserving, ``(B, C, H, W) -> (B, C, H, W)``, and is built from the channel
count alone, so the supernet (all operators mixed on every edge) and the derived network (one chosen
operator per edge) create them the same way: ``create_op(name, channels)``.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

__all__ = ["OpFactory", "register_op", "create_op", "list_ops", "has_op"]

#: ``factory(channels) -> module`` building one shape-preserving operator.
OpFactory = Callable[[int], nn.Module]

_OPS: dict[str, OpFactory] = {}


def register_op(name: str) -> Callable[[OpFactory], OpFactory]:
    """Decorator registering ``factory`` under ``name``; a second registration of a name is an error."""

    def decorate(factory: OpFactory) -> OpFactory:
        if name in _OPS:
            raise ValueError(f"operator {name!r} is already registered")
        _OPS[name] = factory
        return factory

    return decorate


def has_op(name: str) -> bool:
    """Whether ``name`` is a registered operator."""
    return name in _OPS


def list_ops() -> tuple[str, ...]:
    """Registered operator names, in registration order."""
    return tuple(_OPS)


def create_op(name: str, channels: int) -> nn.Module:
    """Build operator ``name`` for ``channels`` feature channels (C -> C, same H x W)."""
    if name not in _OPS:
        raise KeyError(f"unknown operator {name!r}; registered: {', '.join(_OPS)}")
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    return _OPS[name](channels)
