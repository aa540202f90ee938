"""``openvino`` backend: the exported :class:`~engine.runtime.graph.InferenceGraph` in OpenVINO (CPU).

It reads the same cached ONNX export as the ``onnxruntime`` backend. On CPUs with bfloat16
arithmetic (OpenVINO lists ``BF16`` among the CPU's optimisation capabilities: AVX512-BF16 or AMX,
e.g. AMD Zen 4 and later, Intel Xeon from Cooper Lake) it runs in bfloat16, which OpenVINO picks by
default there and which measured about 1.5x faster than float32 for the rt network; the result stays
within about 59 dB PSNR of float32 torch (bfloat16 keeps float32's range, so the Wiener step's large
DFT sums do not overflow). Elsewhere it runs float32. Compiled models are cached by OpenVINO itself
in ``<cache>/openvino/`` (``CACHE_DIR``), so later starts skip the compilation.

Shapes are static, one compiled model per batch bucket (1, 2 and 4 crops; 3 runs padded to 4):
with a dynamic batch OpenVINO re-plans whenever the batch changes, which measured about 3.5 ms per
change, and the face count of a video call changes often.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.fused import NASFENet
from engine.runtime.base import CropEnhancer, GraphInputs, to_uint8_nhwc
from engine.runtime.onnx_backend import cached_onnx

__all__ = ["OpenVinoEnhancer"]


class OpenVinoEnhancer(CropEnhancer):
    """The network compiled by OpenVINO for the CPU.

    Args:
        net: the fused network.
        threads: ``INFERENCE_NUM_THREADS`` (>= 1).
        cache_dir: the user's cache folder (ONNX export and OpenVINO's compiled-model cache).
        precision: ``"auto"`` (bfloat16 where the CPU has it, else float32), ``"fp32"`` or ``"bf16"``.
        buckets: batch sizes to compile (a call of n crops runs the smallest >= n; the largest is
            the most crops per inference, larger calls are split).
    """

    def __init__(
        self,
        net: NASFENet,
        *,
        threads: int,
        cache_dir: str | Path,
        precision: str = "auto",
        buckets: tuple[int, ...] = (1, 2, 4),
    ) -> None:
        import openvino as ov

        if precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {precision!r}")
        self.buckets = tuple(sorted(set(buckets)))
        if not self.buckets or self.buckets[0] < 1:
            raise ValueError(f"buckets must be positive batch sizes, got {tuple(buckets)}")
        core = ov.Core()
        if precision == "auto":
            precision = "bf16" if "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES") else "fp32"
        super().__init__(net.config, f"openvino-cpu-{precision}", max_batch=self.buckets[-1])
        model_path = cached_onnx(net, cache_dir)
        ov_cache = Path(cache_dir) / "openvino"
        ov_cache.mkdir(parents=True, exist_ok=True)
        config = {
            "INFERENCE_NUM_THREADS": threads,
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
            "CACHE_DIR": str(ov_cache),
        }
        cfg, s = net.config, net.config.crop_size
        self.requests = {}
        for b in self.buckets:
            model = core.read_model(str(model_path))
            model.reshape(
                {
                    "image": [b, 3, s, s],
                    "prior": [b, 3],
                    "has_prior": [b],
                    "identity": [b, cfg.id_channels, cfg.id_size, cfg.id_size],
                    "has_identity": [b],
                }
            )
            self.requests[b] = core.compile_model(model, "CPU", config).create_infer_request()
        self.precision = precision
        self.threads = threads

    def _run(self, inputs: GraphInputs) -> np.ndarray:
        n = len(inputs)
        bucket = next(b for b in self.buckets if b >= n)
        restored = self.requests[bucket].infer(inputs.padded(bucket).arrays())[0]
        return to_uint8_nhwc(restored[:n])
