"""Build once, load ever after: a per-user store of machine-specific build outputs.

Exported ONNX graphs and TensorRT engines take seconds to minutes to build, and a TensorRT engine
is only valid for the GPU, TensorRT version and weights it was built with. :class:`ArtifactCache`
names each artefact by the digest of everything it depends on (its *key*), so a changed input is a
cache miss (a fresh build) and never a stale engine. The build itself is injected, which is how the
tests check the second start is a hit without TensorRT.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import torch

from engine.fused import NASFENet

__all__ = ["ArtifactCache", "key_digest", "network_digest"]

log = logging.getLogger(__name__)

T = TypeVar("T")


def key_digest(key: Mapping[str, str]) -> str:
    """Stable 24-hex-digit digest of a flat ``{name: value}`` key (order does not matter)."""
    text = json.dumps({str(k): str(v) for k, v in key.items()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


@torch.no_grad()
def network_digest(net: NASFENet) -> str:
    """SHA-256 of a network's config, genotype and every tensor of its state (names, dtypes, bytes).

    Two networks with the same digest compute the same function, whether their weights came from
    the shipped file, another file or a random initialisation (tests).
    """
    h = hashlib.sha256()
    h.update(json.dumps(net.config.to_dict(), sort_keys=True).encode())
    h.update(net.genotype.to_json().encode())
    for name, tensor in sorted(net.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{name}:{t.dtype}:{tuple(tensor.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class ArtifactCache:
    """Get-or-build store of one kind of artefact (one file each) under ``root / kind``.

    Args:
        root: the cache folder (:func:`engine.runtime.paths.user_cache_dir`).
        kind: sub-folder and log label, e.g. ``"onnx"`` or ``"tensorrt"``.
        suffix: file suffix of the artefacts, e.g. ``".onnx"`` (some writers insist on one).

    Files are written to a private temporary folder and moved into place, so a crash mid-build or
    two processes building at once never leave a half-written artefact under the final name. Each
    artefact has a ``.json`` beside it with its key, for people inspecting the cache.
    """

    def __init__(self, root: str | Path, kind: str, suffix: str) -> None:
        self.folder = Path(root) / kind
        self.kind = kind
        self.suffix = suffix

    def path(self, key: Mapping[str, str]) -> Path:
        """Where the artefact for ``key`` lives (it may not exist yet)."""
        return self.folder / f"{key_digest(key)}{self.suffix}"

    def get_or_build(
        self,
        key: Mapping[str, str],
        build: Callable[[Path], None],
        load: Callable[[Path], T],
    ) -> tuple[T, bool]:
        """Load the artefact for ``key``, building it first when it is missing or unreadable.

        Args:
            key: everything the artefact depends on, as strings.
            build: writes the artefact to the path it is given.
            load: reads an artefact file into the object to return.

        Returns:
            ``(loaded object, hit)``; ``hit`` is False when ``build`` ran.
        """
        path = self.path(key)
        if path.is_file():
            try:
                return load(path), True
            except Exception as exc:  # a damaged cache file must cost a rebuild, never the app
                log.warning("cached %s artefact %s is unreadable (%s: %s); rebuilding", self.kind, path, type(exc).__name__, exc)
                path.unlink(missing_ok=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".build-", dir=self.folder))
        try:
            built = staging / path.name
            build(built)
            if not built.is_file():
                raise RuntimeError(f"building the {self.kind} artefact wrote nothing to {built}")
            os.replace(built, path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        path.with_suffix(".json").write_text(json.dumps(dict(key), indent=1, sort_keys=True) + "\n")
        return load(path), False
