"""Reader for dlib's own serialisation of a DNN (``dlib::serialize(net, file)``), without dlib.

dlib writes a network from the loss layer down: every wrapper first writes a version number and then
its sub-network, so the file opens with the chain of versions (``add_layer`` = 2, ``add_tag_layer`` /
``add_skip_layer`` = 1, the ``add_layer`` on top of the input layer = 3), followed by the input layer
and then each computational layer's details *from the input upwards*, each followed by the
``add_layer`` bookkeeping (three bools and three tensors, empty in a saved model; the input-level
``add_layer`` adds its sample-expansion factor).

Encodings (dlib/serialize.h, dlib/dnn/tensor.h):

- integers: one byte ``n | 0x80 if negative`` then ``n`` little-endian magnitude bytes;
- floats/doubles (scalars): an integer mantissa and an integer exponent, ``m * 2**e``;
- strings: integer length then the bytes; bools: the characters ``'1'`` / ``'0'``;
- tensors: version 2, ``num_samples, k, nr, nc``, then raw little-endian float32 values in
  ``(n, k, nr, nc)`` row-major order; alias tensors: version 1 and four dimensions (no data).

Only the layer kinds used by dlib's face-recognition ResNet are understood; anything else raises
:class:`ValueError` naming the layer, so a different file fails loudly rather than loading wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["DlibLayer", "DlibNet", "read_dlib_net"]


@dataclass
class DlibLayer:
    """One computational layer as stored by dlib (``kind`` is dlib's class name, e.g. ``"con"``).

    ``config`` holds the integer settings (``num_filters, nr, nc, stride_y, stride_x, padding_y,
    padding_x`` for ``con``; ``nr, nc, stride_y, stride_x, padding_y, padding_x`` for pools, where
    ``nr == nc == 0`` means the whole map). ``arrays`` holds float32 parameters in dlib's own layout:
    ``con``: ``filters (num_filters, k, nr, nc)`` and ``bias (num_filters,)``; ``affine``: ``gamma``,
    ``beta`` ``(k,)``; ``fc``: ``weights (num_inputs, num_outputs)`` (dlib computes ``x @ W``).
    """

    kind: str
    config: tuple[int, ...] = ()
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class DlibNet:
    """A parsed network: the input layer's settings and the layers from input to output."""

    loss: str
    input_kind: str
    input_mean_rgb: tuple[float, float, float]
    input_size: tuple[int, int]
    layers: list[DlibLayer]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _byte(self) -> int:
        if self.pos >= len(self.data):
            raise ValueError("truncated dlib file")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def int(self) -> int:
        head = self._byte()
        n = head & 0x0F
        if n > 8:
            raise ValueError(f"bad integer header byte {head:#x} at offset {self.pos - 1}")
        value = int.from_bytes(self.data[self.pos : self.pos + n], "little")
        self.pos += n
        return -value if head & 0x80 else value

    def real(self) -> float:
        mantissa = self.int()
        return float(mantissa) * 2.0 ** self.int()

    def str(self) -> str:
        n = self.int()
        s = self.data[self.pos : self.pos + n].decode("ascii")
        self.pos += n
        return s

    def bool(self) -> bool:
        c = self._byte()
        if c not in (0x30, 0x31):
            raise ValueError(f"bad bool byte {c:#x} at offset {self.pos - 1}")
        return c == 0x31

    def tensor(self) -> np.ndarray:
        version = self.int()
        if version != 2:
            raise ValueError(f"unsupported dlib tensor version {version}")
        shape = tuple(self.int() for _ in range(4))
        count = int(np.prod(shape))
        end = self.pos + 4 * count
        if end > len(self.data):
            raise ValueError("truncated dlib tensor")
        arr = np.frombuffer(self.data, "<f4", count, self.pos).reshape(shape).astype(np.float32)
        self.pos = end
        return arr

    def alias(self) -> tuple[int, int, int, int]:
        version = self.int()
        if version != 1:
            raise ValueError(f"unsupported dlib alias_tensor version {version}")
        return tuple(self.int() for _ in range(4))  # type: ignore[return-value]


def _read_details(r: _Reader) -> DlibLayer:
    name = r.str()
    if name == "con_4":
        params = r.tensor().reshape(-1)
        config = tuple(r.int() for _ in range(7))
        fshape, bshape = r.alias(), r.alias()
        for _ in range(4):  # learning-rate / weight-decay multipliers
            r.real()
        nf = int(np.prod(fshape))
        if config[0] != fshape[0] or params.size != nf + int(np.prod(bshape)):
            raise ValueError(f"inconsistent con_ layer: config {config}, filters {fshape}")
        return DlibLayer("con", config, {"filters": params[:nf].reshape(fshape), "bias": params[nf:]})
    if name == "affine_":
        params = r.tensor().reshape(-1)
        gshape, _ = r.alias(), r.alias()
        mode = r.int()
        k = int(np.prod(gshape))
        if mode != 0 or params.size != 2 * k:  # 0 == CONV_MODE: one gamma/beta per channel
            raise ValueError(f"unsupported affine_ layer: mode {mode}, {params.size} params")
        return DlibLayer("affine", (k,), {"gamma": params[:k], "beta": params[k:]})
    if name in ("max_pool_2", "avg_pool_2"):
        return DlibLayer(name[:-2], tuple(r.int() for _ in range(6)))
    if name in ("relu_", "add_prev_"):
        return DlibLayer(name[:-1])
    if name == "fc_2":
        n_out, n_in = r.int(), r.int()
        params = r.tensor()
        r.alias(), r.alias()
        bias_mode = r.int()
        for _ in range(4):
            r.real()
        if bias_mode != 1 or params.size != n_in * n_out:  # 1 == FC_NO_BIAS
            raise ValueError(f"unsupported fc_ layer: bias mode {bias_mode}, {params.shape}")
        return DlibLayer("fc", (n_out, n_in), {"weights": params.reshape(n_in, n_out)})
    raise ValueError(f"unsupported dlib layer {name!r}")


def _skip_add_layer_state(r: _Reader, input_layer: bool) -> None:
    for _ in range(3):
        r.bool()
    for _ in range(3):  # x_grad, cached_output, params_grad (grad_final for the input layer)
        if r.tensor().size:
            raise ValueError("dlib file holds training state; expected a clean saved network")
    if input_layer:
        r.int()  # sample expansion factor


def read_dlib_net(path: str | Path) -> DlibNet:
    """Parse a dlib ``loss_metric`` network file saved by ``dlib::serialize``.

    Raises:
        ValueError: the file is not such a network (unknown layer, bad encoding, trailing bytes).
    """
    r = _Reader(Path(path).read_bytes())
    if r.int() != 1:
        raise ValueError("not a dlib add_loss_layer (version 1)")
    loss = r.str()
    if loss != "loss_metric_2":
        raise ValueError(f"unsupported dlib loss {loss!r}")
    r.real(), r.real()  # margin, distance threshold
    n_layers = 0
    while (version := r.int()) != 3:
        if version not in (1, 2):
            raise ValueError(f"unexpected dlib layer version {version}")
        n_layers += version == 2  # tag/skip wrappers (version 1) write nothing after the sub-net
    input_kind = r.str()
    if input_kind != "input_rgb_image_sized":
        raise ValueError(f"unsupported dlib input layer {input_kind!r}")
    mean = (r.real(), r.real(), r.real())
    size = (r.int(), r.int())
    layers = [_read_details(r)]
    _skip_add_layer_state(r, input_layer=True)
    for _ in range(n_layers):
        layers.append(_read_details(r))
        _skip_add_layer_state(r, input_layer=False)
    if r.pos != len(r.data):
        raise ValueError(f"{len(r.data) - r.pos} unexpected trailing bytes in dlib file")
    return DlibNet(loss, input_kind, mean, size, layers)
