"""Identity priors of the reference photos for training batches (filled in by engine.identity)."""

from __future__ import annotations

from training.batches import ReferencePriors
from training.stages.context import RunContext

__all__ = ["reference_priors"]


def reference_priors(ctx: RunContext) -> ReferencePriors | None:
    """Per-photo identity priors of the run's face set, or ``None`` while engine.identity is absent."""
    return None
