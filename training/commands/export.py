"""``nasfe-train export``: a derived network (genotype + weights) to ONNX, checked in onnxruntime."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.errors import UserError
from engine.build import load_fused
from engine.configs import list_configs

NAME = "export"
HELP = (
    "Export genotype.json + weights.safetensors to ONNX (dynamo exporter, BN folded, no FFT nodes, "
    "explicit prior/identity inputs with has_prior/has_identity flags) and check it against PyTorch "
    "in onnxruntime. Example: nasfe-train export --genotype G.json --weights W.safetensors --format onnx -o rt.onnx"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--genotype", required=True, help="genotype.json of the derived network")
    parser.add_argument("--weights", required=True, help="weights.safetensors saved for that genotype")
    parser.add_argument("--config", help=f"network config ({', '.join(list_configs())}); default: the genotype's")
    parser.add_argument("--format", choices=("onnx",), default="onnx", help="output format (default: onnx)")
    parser.add_argument("-o", "--output", required=True, help="output file, e.g. model.onnx")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (default: 18)")
    parser.add_argument("--no-verify", action="store_true", help="skip the onnxruntime comparison")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="max |onnxruntime - torch| (default: 1e-4)")


def run(args: argparse.Namespace) -> int:
    from engine.export import export_onnx  # imports onnx/onnxscript only when exporting

    if Path(args.output).resolve() in {Path(args.weights).resolve(), Path(args.genotype).resolve()}:
        raise UserError(f"-o {args.output} would overwrite the network's own files")
    net = load_fused(args.genotype, args.weights, args.config)
    report = export_onnx(net, args.output, opset=args.opset, verify=not args.no_verify, tolerance=args.tolerance)
    check = "not verified" if args.no_verify else f"onnxruntime max |diff| {report.max_abs_diff:.2e}"
    print(f"wrote {report.path} ({net.config.name}, {len(report.op_types)} op types, no DFT/FFT; {check})")
    return 0
