"""The enrolled user's reference set: private files on this machine, deletable in one step.

Layout (issue 11, privacy): ``<config>/identity/`` (mode ``0700``) holds

* ``references.npy``: ``(n, S, S, 3)`` uint8 RGB aligned face crops (:mod:`engine.align`), kept so the
  prior can be recomputed if the identity encoder changes;
* ``prior.npy``: ``(C, h, w)`` float32 identity prior from :func:`engine.identity.enroll`;
* ``meta.json``: photo count, crop size and date.

Every file is created ``0600`` (never briefly world-readable: the mode is set when the file is
opened) and replaced atomically. Nothing here is ever sent anywhere.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np

from facecam.tray.settings import ensure_private_dir

__all__ = ["REFERENCE_FILES", "ReferenceStore"]

log = logging.getLogger(__name__)

#: Files the store writes, all deleted by :meth:`ReferenceStore.forget`.
REFERENCE_FILES: tuple[str, ...] = ("references.npy", "prior.npy", "meta.json")


@contextmanager
def _private_file(path: Path) -> Iterator[IO[bytes]]:
    """Open a ``0600`` temporary file beside ``path``; on success it replaces ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode is filtered by the umask, and an old tmp keeps its mode
        with os.fdopen(fd, "wb") as fh:
            fd = -1
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if fd >= 0:
            os.close(fd)
        tmp.unlink(missing_ok=True)


class ReferenceStore:
    """Saves, loads and forgets the user's reference crops and identity prior.

    Args:
        folder: where the files live, normally ``config_dir() / "identity"``.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    @property
    def prior_path(self) -> Path:
        return self.folder / "prior.npy"

    def exists(self) -> bool:
        """Whether an identity prior is saved."""
        return self.prior_path.is_file()

    def save(self, crops_rgb: np.ndarray, prior: np.ndarray) -> None:
        """Store a new reference set, replacing any old one.

        Args:
            crops_rgb: ``(n, S, S, 3)`` uint8 RGB aligned crops, n >= 1.
            prior: ``(C, h, w)`` float32 identity prior computed from them.
        """
        if crops_rgb.ndim != 4 or crops_rgb.shape[0] < 1 or crops_rgb.shape[3] != 3 or crops_rgb.dtype != np.uint8:
            raise ValueError(f"expected (n >= 1, S, S, 3) uint8 RGB crops, got {crops_rgb.shape} {crops_rgb.dtype}")
        prior = np.asarray(prior, np.float32)
        if prior.ndim != 3 or not np.isfinite(prior).all():
            raise ValueError(f"expected a finite (C, h, w) identity prior, got shape {prior.shape}")
        ensure_private_dir(self.folder)
        meta = {"photos": int(crops_rgb.shape[0]), "crop_size": int(crops_rgb.shape[1]),
                "prior_shape": list(prior.shape), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        writers: list[tuple[str, Callable[[IO[bytes]], None]]] = [
            ("references.npy", lambda fh: np.save(fh, np.ascontiguousarray(crops_rgb), allow_pickle=False)),
            ("meta.json", lambda fh: fh.write((json.dumps(meta, indent=2) + "\n").encode())),
            ("prior.npy", lambda fh: np.save(fh, prior, allow_pickle=False)),  # last: marks the set complete
        ]
        for name, write in writers:
            with _private_file(self.folder / name) as fh:
                write(fh)

    def load_prior(self) -> np.ndarray | None:
        """The saved ``(C, h, w)`` float32 prior, or ``None`` when nobody is enrolled.

        Raises:
            ValueError: the file exists but is not a finite ``(C, h, w)`` float array.
        """
        if not self.exists():
            return None
        prior = np.load(self.prior_path, allow_pickle=False)
        if prior.ndim != 3 or prior.dtype.kind != "f" or not np.isfinite(prior).all():
            raise ValueError(f"{self.prior_path} is not a finite (C, h, w) float array: {prior.shape} {prior.dtype}")
        return prior.astype(np.float32)

    def photo_count(self) -> int:
        """How many reference photos are stored (0 when nobody is enrolled or the set is unreadable)."""
        try:
            return int(json.loads((self.folder / "meta.json").read_text())["photos"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def forget(self) -> list[Path]:
        """Delete every reference file and the folder; returns the files deleted."""
        deleted = []
        for name in REFERENCE_FILES:
            path = self.folder / name
            if path.exists():
                path.unlink()
                deleted.append(path)
        for stale in self.folder.glob(".*.partial"):  # left by a crash mid-write
            stale.unlink()
            deleted.append(stale)
        if self.folder.is_dir() and not any(self.folder.iterdir()):
            self.folder.rmdir()
        log.info("deleted %d reference file(s) from %s", len(deleted), self.folder)
        return deleted
