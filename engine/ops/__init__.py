"""Operators of the NASFE fusion search space, one registry (see :mod:`engine.ops.registry`).

Importing this package registers every operator; use :func:`create_op` and :func:`list_ops`.
"""

from engine.ops import search_ops as _search_ops  # noqa: F401  (registers the operators)
from engine.ops.dft import irdft2, rdft2, wiener_deconvolution
from engine.ops.layers import ConvBN, FiLM, fuse_conv_bn, fuse_modules
from engine.ops.registry import create_op, has_op, list_ops, register_op

__all__ = [
    "create_op",
    "has_op",
    "list_ops",
    "register_op",
    "ConvBN",
    "FiLM",
    "fuse_conv_bn",
    "fuse_modules",
    "rdft2",
    "irdft2",
    "wiener_deconvolution",
]
