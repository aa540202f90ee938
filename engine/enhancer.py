"""The one interface every inference backend implements (torch, onnxruntime, TensorRT, ...).

The camera app and the benchmarks talk only to :class:`Enhancer`; which backend sits behind it is
chosen by the runtime selection in :mod:`engine`. Images cross this boundary as uint8 RGB crops so
that backends are free to pick their own tensor layout and precision.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

#: Degradation classes, in the order of the prior vector c = (b, n, l).
CLASSES: tuple[str, str, str] = ("blur", "noise", "lowlight")


@runtime_checkable
class Enhancer(Protocol):
    """Restores a batch of aligned face crops."""

    #: Side of the square aligned crop the engine expects (see :mod:`engine.align`).
    crop_size: int
    #: Backend name for logs and benchmarks, e.g. ``"torch-cpu"``.
    name: str

    def enhance(
        self,
        crops: np.ndarray,
        prior: np.ndarray | None = None,
        identity: np.ndarray | None = None,
    ) -> np.ndarray:
        """Restore ``crops``.

        Args:
            crops: ``(N, S, S, 3)`` uint8 RGB aligned crops, ``S == crop_size``.
            prior: ``(N, 3)`` float32 degradation probabilities (blur, noise, low light) that replace
                the built-in classifier's estimate, or ``None`` to let the classifier decide.
            identity: ``(C, h, w)`` float32 identity prior of the enrolled person (see
                :mod:`engine.identity`), shared by all crops, or ``None`` when nobody is enrolled.

        Returns:
            ``(N, S, S, 3)`` uint8 RGB restored crops.
        """
        ...
