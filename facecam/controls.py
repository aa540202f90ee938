"""The filter's live settings, shared between the frame thread and a UI (the tray) or the CLI.

The UI writes through :class:`PipelineControls`' properties from any thread; the frame thread reads
one consistent :class:`Settings` snapshot per frame, so a frame never mixes two strengths.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from engine.enhancer import CLASSES

__all__ = ["MODES", "Settings", "PipelineControls", "mode_prior"]

#: Enhancement modes -> class prior c = (blur, noise, lowlight) given to the engine; ``auto`` lets
#: the engine's classifier estimate it from each crop.
MODES: dict[str, tuple[float, float, float] | None] = {
    "auto": None,
    "deblur": (1.0, 0.0, 0.0),
    "denoise": (0.0, 1.0, 0.0),
    "lowlight": (0.0, 0.0, 1.0),
}
assert len(CLASSES) == 3


def mode_prior(mode: str, n: int) -> np.ndarray | None:
    """The ``(n, 3)`` float32 prior for ``mode`` (one row per crop), or ``None`` for ``auto``."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: expected one of {', '.join(MODES)}")
    c = MODES[mode]
    return None if c is None else np.tile(np.asarray(c, np.float32), (n, 1))


@dataclass(frozen=True)
class Settings:
    """What one frame is processed with (a snapshot of :class:`PipelineControls`).

    Attributes:
        enabled: False = bypass: frames pass through untouched.
        strength: 0 (bit-exact passthrough) to 1 (full enhancement).
        mode: a key of :data:`MODES`.
        identity: ``(C, h, w)`` float32 identity prior of the enrolled user, or ``None``.
    """

    enabled: bool = True
    strength: float = 1.0
    mode: str = "auto"
    identity: np.ndarray | None = None


class PipelineControls:
    """Thread-safe live settings of a running filter.

    Args:
        strength: initial strength in [0, 1].
        mode: initial mode, a key of :data:`MODES`.
        enabled: initial on/off state.
        identity: initial identity prior (``(C, h, w)`` float32) or ``None``.

    Example:
        >>> controls = PipelineControls(strength=0.8)
        >>> controls.mode = "lowlight"
        >>> controls.snapshot().mode
        'lowlight'
    """

    def __init__(
        self,
        *,
        strength: float = 1.0,
        mode: str = "auto",
        enabled: bool = True,
        identity: np.ndarray | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._settings = Settings()
        self.strength = strength
        self.mode = mode
        self.enabled = enabled
        self.identity = identity

    def snapshot(self) -> Settings:
        """The current settings, as one immutable value."""
        with self._lock:
            return self._settings

    def _replace(self, **changes: object) -> None:
        with self._lock:
            self._settings = Settings(**{**self._settings.__dict__, **changes})

    @property
    def strength(self) -> float:
        """Enhancement strength in [0, 1]; 0 passes frames through bit-exactly."""
        return self.snapshot().strength

    @strength.setter
    def strength(self, value: float) -> None:
        value = float(value)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {value}")
        self._replace(strength=value)

    @property
    def mode(self) -> str:
        """Enhancement mode, a key of :data:`MODES`."""
        return self.snapshot().mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise ValueError(f"unknown mode {value!r}: expected one of {', '.join(MODES)}")
        self._replace(mode=value)

    @property
    def enabled(self) -> bool:
        """False bypasses the filter (frames pass through untouched)."""
        return self.snapshot().enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._replace(enabled=bool(value))

    @property
    def identity(self) -> np.ndarray | None:
        """Identity prior ``(C, h, w)`` float32 of the enrolled user, or ``None``."""
        return self.snapshot().identity

    @identity.setter
    def identity(self, value: np.ndarray | None) -> None:
        if value is not None:
            value = np.asarray(value, np.float32)
            if value.ndim != 3:
                raise ValueError(f"identity prior must be (C, h, w), got shape {value.shape}")
            if not np.isfinite(value).all():
                raise ValueError("identity prior contains NaN or inf")
            value.setflags(write=False)
        self._replace(identity=value)
