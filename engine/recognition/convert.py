"""One-off conversion of the shared recogniser files into the safetensors the project ships.

    python -m engine.recognition.convert [--models ../shared/models] [--out assets/recognition]

- dlib ResNet: parsed from dlib's own serialisation (:mod:`engine.recognition.dlib_format`), each
  batch-norm ``affine`` folded into the convolution before it (``W * gamma``, ``b * gamma + beta``),
  the ``fc`` matrix transposed to PyTorch's ``(out, in)``.
- MobileFaceNet: read from the TFLite flatbuffer with the ``tflite`` schema package (a dev/test
  dependency; the shipped model needs only safetensors). Convolutions are taken in graph order and
  matched one-to-one to :class:`~engine.recognition.mobilefacenet.ConvUnit` in module order, checking
  kernel shape, stride and padding; each PReLU, which TOCO decomposed into
  ``relu(x) + c * (x - |x|)``, gives ``alpha = 2 c``.

The model files stay in the shared folder; only the converted weights are committed.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from engine.recognition.dlib_format import DlibLayer, read_dlib_net
from engine.recognition.dlib_resnet import DLIB_MEAN_RGB, DLIB_WEIGHTS, DlibResNet
from engine.recognition.mobilefacenet import MOBILEFACENET_WEIGHTS, ConvUnit, MobileFaceNet

__all__ = ["dlib_state_dict", "mobilefacenet_state_dict", "main"]

DLIB_FILE = "dlib_face_recognition_resnet_model_v1.dat"
MOBILEFACENET_FILE = "mobilefacenet.tflite"


def _fold(conv: DlibLayer, affine: DlibLayer) -> tuple[np.ndarray, np.ndarray]:
    g, b = affine.arrays["gamma"], affine.arrays["beta"]
    return conv.arrays["filters"] * g[:, None, None, None], conv.arrays["bias"] * g + b


def _expect(layers: Iterator[DlibLayer], kind: str, config: tuple[int, ...] | None = None) -> DlibLayer:
    layer = next(layers)
    if layer.kind != kind or (config is not None and layer.config != config):
        raise ValueError(f"dlib layer mismatch: expected {kind} {config or ''}, found {layer.kind} {layer.config}")
    return layer


def dlib_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Parse dlib's file and return a :class:`DlibResNet` state dict (affine layers folded)."""
    net = read_dlib_net(path)
    if net.input_size != (150, 150) or not np.allclose(net.input_mean_rgb, DLIB_MEAN_RGB, atol=1e-3):
        raise ValueError(f"unexpected dlib input layer: {net.input_size}, means {net.input_mean_rgb}")
    model = DlibResNet()
    layers = iter(net.layers)
    state: dict[str, np.ndarray] = {}

    def conv(prefix: str, stride: int, pad: int) -> None:
        c = _expect(layers, "con")
        if c.config[3:] != (stride, stride, pad, pad):
            raise ValueError(f"{prefix}: dlib conv {c.config} is not stride {stride} / pad {pad}")
        state[f"{prefix}.weight"], state[f"{prefix}.bias"] = _fold(c, _expect(layers, "affine"))

    conv("stem", 2, 0)
    _expect(layers, "relu")
    _expect(layers, "max_pool", (3, 3, 2, 2, 0, 0))
    for level in ("level4", "level3", "level2", "level1", "level0"):
        for j, block in enumerate(getattr(model, level)):
            conv(f"{level}.{j}.conv1", 2 if block.downsample else 1, 0 if block.downsample else 1)
            _expect(layers, "relu")
            conv(f"{level}.{j}.conv2", 1, 1)
            if block.downsample:
                _expect(layers, "avg_pool", (2, 2, 2, 2, 0, 0))
            _expect(layers, "add_prev")
            _expect(layers, "relu")
    _expect(layers, "avg_pool", (0, 0, 1, 1, 0, 0))
    state["fc.weight"] = _expect(layers, "fc").arrays["weights"].T
    if next(layers, None) is not None:
        raise ValueError("dlib file has more layers than DlibResNet")
    out = {k: torch.from_numpy(np.array(v, np.float32)) for k, v in state.items()}
    model.load_state_dict(out)  # strict: every parameter covered, shapes match
    return out


def _tflite_graph(path: str | Path):
    import tflite  # dev dependency (pyproject extra "test"), needed only to convert

    model = tflite.Model.GetRootAsModel(Path(path).read_bytes(), 0)
    graph = model.Subgraphs(0)
    names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}

    def op_name(op) -> str:
        code = model.OperatorCodes(op.OpcodeIndex())
        return names[max(code.BuiltinCode(), code.DeprecatedBuiltinCode())]

    def const(index: int) -> np.ndarray | None:
        t = graph.Tensors(index)
        data = model.Buffers(t.Buffer()).DataAsNumpy()
        if isinstance(data, int) or data.size == 0:
            return None
        if t.Type() != tflite.TensorType.FLOAT32:
            raise ValueError(f"tensor {t.Name()!r} is not float32")
        return data.view("<f4").reshape(t.ShapeAsNumpy())

    def conv_options(op, name: str) -> tuple[int, int]:
        opts = tflite.DepthwiseConv2DOptions() if name == "DEPTHWISE_CONV_2D" else tflite.Conv2DOptions()
        table = op.BuiltinOptions()
        opts.Init(table.Bytes, table.Pos)
        if opts.FusedActivationFunction() != 0 or opts.StrideH() != opts.StrideW():
            raise ValueError("unsupported TFLite conv options")
        return opts.StrideH(), opts.Padding()

    ops = [graph.Operators(i) for i in range(graph.OperatorsLength())]
    return ops, op_name, const, conv_options, tflite.Padding.SAME


def mobilefacenet_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read ``mobilefacenet.tflite`` and return a :class:`MobileFaceNet` state dict."""
    ops, op_name, const, conv_options, same = _tflite_graph(path)
    kinds = [op_name(op) for op in ops]
    model = MobileFaceNet()
    units = [(name, m) for name, m in model.named_modules() if isinstance(m, ConvUnit)]
    conv_ops = [i for i, k in enumerate(kinds) if k in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    if len(conv_ops) != len(units):
        raise ValueError(f"TFLite graph has {len(conv_ops)} convolutions, MobileFaceNet {len(units)}")
    state: dict[str, np.ndarray] = {}
    for i, (name, unit) in zip(conv_ops, units):
        op = ops[i]
        inputs = op.InputsAsNumpy()
        weight, bias = const(inputs[1]), const(inputs[2])
        stride, padding = conv_options(op, kinds[i])
        if kinds[i] == "DEPTHWISE_CONV_2D":  # (1, kh, kw, C) -> (C, 1, kh, kw)
            weight = weight.transpose(3, 0, 1, 2)
        else:  # (O, kh, kw, I) -> (O, I, kh, kw)
            weight = weight.transpose(0, 3, 1, 2)
        pad_differs = unit.kernel > 1 and (padding == same) != unit.same  # 1x1: padding is moot
        if weight.shape != unit.conv.weight.shape or stride != unit.stride or pad_differs:
            raise ValueError(f"{name}: TFLite conv {weight.shape}/s{stride} does not fit {tuple(unit.conv.weight.shape)}")
        state[f"{name}.conv.weight"], state[f"{name}.conv.bias"] = weight, bias
        has_prelu = kinds[i + 1 : i + 6] == ["RELU", "ABS", "SUB", "MUL", "ADD"]
        if has_prelu != isinstance(unit.act, torch.nn.PReLU):
            raise ValueError(f"{name}: PReLU in TFLite graph: {has_prelu}")
        if has_prelu:
            c = next(a for a in (const(j) for j in ops[i + 4].InputsAsNumpy()) if a is not None)
            state[f"{name}.act.weight"] = 2.0 * c.reshape(-1)
    out = {k: torch.from_numpy(np.array(v, np.float32)) for k, v in state.items()}
    model.load_state_dict(out)
    return out


def main(argv: list[str] | None = None) -> int:
    root = Path(__file__).resolve().parents[2]
    parser = argparse.ArgumentParser(description="Convert the shared recogniser files to safetensors.")
    parser.add_argument("--models", type=Path, default=root.parent / "shared" / "models",
                        help="folder holding the dlib .dat and the MobileFaceNet .tflite")
    parser.add_argument("--out", type=Path, default=DLIB_WEIGHTS.parent, help="output folder")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [
        (dlib_state_dict, DLIB_FILE, DLIB_WEIGHTS.name, "dlib_face_recognition_resnet_model_v1.dat (CC0)"),
        (mobilefacenet_state_dict, MOBILEFACENET_FILE, MOBILEFACENET_WEIGHTS.name, "mobilefacenet.tflite (MIT)"),
    ]
    for convert, src, dst, source in jobs:
        state = convert(args.models / src)
        save_file(state, str(args.out / dst), metadata={"source": source})
        print(f"{args.out / dst}: {sum(t.numel() for t in state.values()):,} parameters")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
