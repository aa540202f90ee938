"""``nasfe-train info``: parameters, FLOPs (and optionally CPU latency) of a network config."""

from __future__ import annotations

import argparse
import json

import torch

from engine.build import build_fused, build_supernet
from engine.configs import get_config, list_configs
from engine.flops import (
    FLOP_COUNTER,
    Latency,
    count_params,
    example_inputs,
    measure_latency,
    network_flops,
    param_range,
    worst_case,
)
from engine.genotype import Genotype

NAME = "info"
HELP = (
    "Show learnable parameters and FLOPs of a NASFE config at its crop size: the supernet, the "
    "costliest network its search can derive, and (with --genotype) that derived network. "
    "Example: nasfe-train info --config rt --genotype runs/rt/genotype.json --latency"
)

_PARTS = ("classifier", "encoders", "entry", "identity_branch", "fusion", "decoder")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help=f"network config ({', '.join(list_configs())}); default: the genotype's, else rt")
    parser.add_argument("--genotype", help="genotype.json of a derived network to describe")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument(
        "--latency",
        action="store_true",
        help="also time the BN-folded derived network (the genotype's, else the costliest) on 1 and 2 "
        "CPU threads, channels-last, batch 1 (median of 50 runs; needs a quiet machine)",
    )


def _rounded(latency: Latency) -> dict[str, float]:
    return {"median": round(latency.median_ms, 2), "min": round(latency.min_ms, 2)}


def _describe(args: argparse.Namespace) -> dict:
    genotype = Genotype.load(args.genotype) if args.genotype else None
    cfg = get_config(args.config or (genotype.config if genotype else "rt"))
    if genotype is not None:
        Genotype.load(args.genotype, cfg)  # re-validate against the chosen config (UserError names the file)
    supernet = build_supernet(cfg)
    worst = worst_case(cfg)
    low, high = param_range(cfg)
    info: dict = {
        "config": cfg.to_dict(),
        "crop_size": cfg.crop_size,
        "flop_counter": FLOP_COUNTER,
        "flops_include": "classifier (prior=None) and identity branch (identity given), batch 1",
        "supernet": {
            "weight_params": sum(p.numel() for p in supernet.weight_parameters()),
            "arch_params": sum(p.numel() for p in supernet.arch_parameters()),
        },
        "derivable": {
            "params_min": low,
            "params_max": high,
            "flops_max": worst.flops,
            "flops_max_genotype": worst.genotype.to_dict(),
        },
    }
    net = build_fused(genotype if genotype is not None else worst.genotype, cfg)
    if genotype is not None:
        info["network"] = {
            "genotype": args.genotype,
            "params": count_params(net),
            "params_by_part": {part: count_params(getattr(net, part)) for part in _PARTS},
            "flops": network_flops(net, cfg),
        }
    if args.latency:
        net = net.eval().fuse()
        x, identity = example_inputs(cfg)
        info["latency_ms"] = {
            "network": "genotype" if genotype is not None else "flops_max_genotype",
            "torch": torch.__version__,
            **{f"threads_{t}": _rounded(measure_latency(net, x, threads=t, identity=identity)) for t in (1, 2)},
        }
    return info


def _print_text(info: dict) -> None:
    cfg = info["config"]
    print(f"config {cfg['name']}: {cfg['description']}")
    print(f"  crop {info['crop_size']}x{info['crop_size']}, {cfg['layers']} layers x {cfg['blocks']} blocks, "
          f"levels {cfg['fusion_channels']}, ops {', '.join(cfg['ops'])}")
    sn = info["supernet"]
    print(f"supernet: {sn['weight_params']:,} weights + {sn['arch_params']:,} architecture parameters")
    d = info["derivable"]
    print(f"any derived network: {d['params_min']:,} - {d['params_max']:,} parameters, "
          f"at most {d['flops_max'] / 1e9:.3f} GFLOPs")
    if "network" in info:
        n = info["network"]
        print(f"{n['genotype']}: {n['params']:,} parameters, {n['flops'] / 1e9:.3f} GFLOPs")
        for part, count in n["params_by_part"].items():
            print(f"  {part:16s} {count:>12,}")
    if "latency_ms" in info:
        lat = info["latency_ms"]
        print(f"latency ({lat['network']}, BN folded, channels-last, median/fastest of 50): "
              f"{lat['threads_1']['median']}/{lat['threads_1']['min']} ms on 1 thread, "
              f"{lat['threads_2']['median']}/{lat['threads_2']['min']} ms on 2 threads")
    print(f"FLOPs: {info['flop_counter']}; {info['flops_include']}")


def run(args: argparse.Namespace) -> int:
    info = _describe(args)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print_text(info)
    return 0
