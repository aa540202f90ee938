"""What every backend shares: input checks, the fixed graph inputs, batching and uint8 conversion.

Backends subclass :class:`CropEnhancer` and implement :meth:`CropEnhancer._run` on a
:class:`GraphInputs` of at most ``max_batch`` crops. The optional ``prior`` and ``identity`` of
:meth:`engine.enhancer.Enhancer.enhance` become always-present inputs plus 0/1 flags (the signature
of :mod:`engine.export`, see :mod:`engine.runtime.graph`), so one compiled graph serves every call.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from engine.configs import NASFEConfig

__all__ = ["GraphInputs", "CropEnhancer", "NonFiniteOutputError", "to_uint8_nhwc"]


@dataclass(frozen=True)
class GraphInputs:
    """One engine call in the fixed form every backend runs.

    Attributes:
        crops: ``(N, S, S, 3)`` uint8 RGB aligned crops, C-contiguous.
        prior: ``(N, 3)`` float32 degradation probabilities (zeros where ``has_prior`` is 0).
        has_prior: ``(N,)`` float32, 1 = use ``prior``, 0 = the built-in classifier's estimate.
        identity: ``(N, C, h, h)`` float32 identity prior, one copy per crop (zeros when unused).
        has_identity: ``(N,)`` float32, 1 = apply ``identity``, 0 = the learned neutral embedding.
    """

    crops: np.ndarray
    prior: np.ndarray
    has_prior: np.ndarray
    identity: np.ndarray
    has_identity: np.ndarray

    def __len__(self) -> int:
        return len(self.crops)

    def _map(self, fn) -> GraphInputs:
        return GraphInputs(*(fn(a) for a in (self.crops, self.prior, self.has_prior, self.identity, self.has_identity)))

    def slice(self, start: int, stop: int) -> GraphInputs:
        """Crops ``start:stop`` and their inputs."""
        return self._map(lambda a: a[start:stop])

    def padded(self, batch: int) -> GraphInputs:
        """These inputs grown to ``batch`` crops by repeating the last one (for fixed-size engines;
        the caller keeps the first ``len(self)`` outputs)."""
        extra = batch - len(self)
        if extra < 0:
            raise ValueError(f"cannot pad {len(self)} crops down to {batch}")
        if extra == 0:
            return self

        return self._map(lambda a: np.concatenate([a, np.repeat(a[-1:], extra, axis=0)]))

    def image(self) -> np.ndarray:
        """``(N, 3, S, S)`` float32 RGB in [0, 1]: the network's input layout."""
        return np.ascontiguousarray(self.crops.transpose(0, 3, 1, 2), dtype=np.float32) * np.float32(1 / 255)

    def arrays(self) -> dict[str, np.ndarray]:
        """Named float32 graph inputs, in :data:`engine.export.INPUT_NAMES` order."""
        return {
            "image": self.image(),
            "prior": self.prior,
            "has_prior": self.has_prior,
            "identity": self.identity,
            "has_identity": self.has_identity,
        }


class NonFiniteOutputError(FloatingPointError):
    """The network produced NaN or inf: the caller passes the frame through instead of showing it."""


def to_uint8_nhwc(restored: np.ndarray) -> np.ndarray:
    """``(N, 3, S, S)`` float RGB, nominally [0, 1] -> ``(N, S, S, 3)`` uint8 RGB (clipped, rounded).

    Raises:
        NonFiniteOutputError: any NaN or inf (a cast would silently turn it into a black face).
    """
    restored = np.asarray(restored, np.float32)
    if not np.isfinite(restored).all():
        raise NonFiniteOutputError("engine output contains NaN or inf")
    out = np.clip(restored * 255.0, 0.0, 255.0)
    return np.ascontiguousarray(np.rint(out).astype(np.uint8).transpose(0, 2, 3, 1))


class CropEnhancer(ABC):
    """Base of every backend: implements :class:`engine.enhancer.Enhancer` on top of :meth:`_run`.

    Args:
        config: the network config (crop size, identity prior shape).
        name: backend label for logs and benchmarks, e.g. ``"onnxruntime-cpu"``.
        max_batch: most crops one :meth:`_run` call receives; larger batches are split.
    """

    def __init__(self, config: NASFEConfig, name: str, *, max_batch: int) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self.config = config
        self.crop_size = config.crop_size
        self.name = name
        self.max_batch = max_batch

    def pack(self, crops: np.ndarray, prior: np.ndarray | None, identity: np.ndarray | None) -> GraphInputs:
        """Check the arguments of :meth:`enhance` and turn them into :class:`GraphInputs`.

        Raises:
            ValueError: a shape, dtype or value that does not fit (the message names both).
        """
        s, cfg = self.crop_size, self.config
        crops = np.asarray(crops)
        if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[1:] != (s, s, 3):
            raise ValueError(f"crops: expected (N, {s}, {s}, 3) uint8 RGB, got {crops.shape} {crops.dtype}")
        n = len(crops)
        if prior is None:
            prior_arr, has_prior = np.zeros((n, 3), np.float32), np.zeros(n, np.float32)
        else:
            prior_arr = np.asarray(prior, np.float32)
            if prior_arr.shape != (n, 3):
                raise ValueError(f"prior: expected shape ({n}, 3) for {n} crops, got {prior_arr.shape}")
            if not np.isfinite(prior_arr).all():
                raise ValueError("prior contains NaN or inf")
            has_prior = np.ones(n, np.float32)
        id_shape = (cfg.id_channels, cfg.id_size, cfg.id_size)
        if identity is None:
            id_arr, has_identity = np.zeros((n, *id_shape), np.float32), np.zeros(n, np.float32)
        else:
            id_arr = np.asarray(identity, np.float32)
            if id_arr.shape != id_shape:
                raise ValueError(f"identity: expected shape {id_shape}, got {id_arr.shape}")
            if not np.isfinite(id_arr).all():
                raise ValueError("identity prior contains NaN or inf")
            id_arr, has_identity = np.repeat(id_arr[None], n, axis=0), np.ones(n, np.float32)
        return GraphInputs(np.ascontiguousarray(crops), np.ascontiguousarray(prior_arr), has_prior, id_arr, has_identity)

    def enhance(
        self,
        crops: np.ndarray,
        prior: np.ndarray | None = None,
        identity: np.ndarray | None = None,
    ) -> np.ndarray:
        """Restore ``crops``; see :meth:`engine.enhancer.Enhancer.enhance` for the arguments.

        Returns:
            ``(N, S, S, 3)`` uint8 RGB restored crops.
        """
        inputs = self.pack(crops, prior, identity)
        if len(inputs) == 0:
            return inputs.crops.copy()
        parts = [self._run(inputs.slice(i, i + self.max_batch)) for i in range(0, len(inputs), self.max_batch)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    @abstractmethod
    def _run(self, inputs: GraphInputs) -> np.ndarray:
        """Restore ``1 <= len(inputs) <= max_batch`` crops; returns ``(N, S, S, 3)`` uint8 RGB."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, crop_size={self.crop_size})"
