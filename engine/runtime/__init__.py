"""Inference runtime: load the engine and run it on the best backend this machine has.

Backends (:data:`BACKENDS`, ``auto`` order): ``tensorrt`` > ``cuda`` > ``openvino`` > ``onnxruntime`` >
``torch``.
Every backend implements :class:`engine.enhancer.Enhancer` (uint8 RGB crops in and out)::

    from engine.runtime import load_enhancer
    enhancer = load_enhancer()                       # shipped engine, best backend
    enhancer = load_enhancer("onnxruntime", "runs/rt/export/weights.safetensors", threads=2)
    restored = enhancer.enhance(crops_rgb, prior=None, identity=None)
"""

from engine.runtime.load import load_enhancer, load_network
from engine.runtime.paths import SHIPPED_GENOTYPE, SHIPPED_WEIGHTS, user_cache_dir
from engine.runtime.select import AUTO_ORDER, BACKENDS, backend_status, create_enhancer, default_threads

__all__ = [
    "load_enhancer",
    "load_network",
    "create_enhancer",
    "backend_status",
    "default_threads",
    "user_cache_dir",
    "BACKENDS",
    "AUTO_ORDER",
    "SHIPPED_GENOTYPE",
    "SHIPPED_WEIGHTS",
]
