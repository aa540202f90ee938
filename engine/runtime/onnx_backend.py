"""``onnxruntime`` backend: the network's ONNX export (:func:`engine.export.export_onnx`) on the CPU.

The ONNX file is exported once per network (the weights digest is in its cache key) into the
user's cache folder and loaded from there on later starts; its inputs are the flagged signature
of :mod:`engine.runtime.graph` and only its ``restored`` output is read. Sessions use all of onnxruntime's graph
optimisations (``ORT_ENABLE_ALL``: constant folding, conv + bias + activation fusion, layout
transforms), ``intra_op_num_threads`` threads for the operators, no inter-op parallelism (the
graph is one chain; a second pool would only compete with the video call for the cores), and no
spinning: idle pool threads sleep instead of busy-waiting for the next frame, which would burn the
CPU time the video-call app needs.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from engine.export import export_onnx
from engine.fused import NASFENet
from engine.runtime.base import CropEnhancer, GraphInputs, to_uint8_nhwc
from engine.runtime.cache import ArtifactCache, network_digest
from engine.runtime.graph import GRAPH_VERSION

__all__ = ["OnnxRuntimeEnhancer", "onnx_cache_key", "cached_onnx"]


def onnx_cache_key(net: NASFENet) -> dict[str, str]:
    """What an exported graph depends on: the network, the graph signature and the exporter."""
    return {
        "artifact": "onnx-export",
        "graph": GRAPH_VERSION,
        "network": network_digest(net),
        "torch": torch.__version__,
    }


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's chatter (progress logs, deprecation and torchvision warnings), which
    says nothing to someone starting the camera; errors still raise."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _export(net: NASFENet, path: Path) -> None:
    # No onnxruntime check inside the export (verify=False): the OpenVINO backend shares this file
    # without needing onnxruntime, and tests hold every backend to torch instead.
    with _quiet_exporter():
        export_onnx(net, path, verify=False)


def cached_onnx(net: NASFENet, cache_dir: str | Path) -> Path:
    """Path of the ONNX export of ``net`` in ``cache_dir``, exporting it on the first call."""
    cache = ArtifactCache(cache_dir, "onnx", ".onnx")
    path, _ = cache.get_or_build(onnx_cache_key(net), lambda p: _export(net, p), lambda p: p)
    return path


class OnnxRuntimeEnhancer(CropEnhancer):
    """The network in an onnxruntime CPU session.

    Args:
        net: the fused network.
        threads: ``intra_op_num_threads`` (>= 1).
        cache_dir: where the exported graph is kept (:func:`engine.runtime.paths.user_cache_dir`).
        max_batch: most crops per session run (larger calls are split).
    """

    def __init__(self, net: NASFENet, *, threads: int, cache_dir: str | Path, max_batch: int = 4) -> None:
        import onnxruntime as ort

        super().__init__(net.config, "onnxruntime-cpu", max_batch=max_batch)
        self.model_path = cached_onnx(net, cache_dir)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(self.model_path), options, providers=["CPUExecutionProvider"])
        self.threads = threads

    def _run(self, inputs: GraphInputs) -> np.ndarray:
        (restored,) = self.session.run(["restored"], inputs.arrays())
        return to_uint8_nhwc(restored)
