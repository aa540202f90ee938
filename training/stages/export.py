"""Stage 5: package the best retrained network in ``runs/NAME/export/``.

Copies ``best/genotype.json`` and ``best/weights.safetensors`` (checked by loading them into the
fused network with :func:`engine.build.load_fused`), and writes ``model.onnx`` through
:mod:`engine.export` when that module is available and ``export.onnx`` is on.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from engine.build import load_fused
from engine.errors import UserError
from training.stages import retrain
from training.stages.context import RunContext

__all__ = ["run", "export_dir"]


def export_dir(ctx: RunContext) -> Path:
    return ctx.out / "export"


def run(ctx: RunContext) -> Path:
    """Write the export folder (rank 0) and return it."""
    best = retrain.best_dir(ctx)
    genotype, weights = best / "genotype.json", best / "weights.safetensors"
    if not weights.is_file() or not genotype.is_file():
        raise UserError(f"{best} has no genotype.json + weights.safetensors: run the retrain stage first")
    out = export_dir(ctx)
    if ctx.runtime.is_main:
        net = load_fused(genotype, weights, ctx.net)  # refuses a mismatched pair before copying
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(genotype, out / "genotype.json")
        shutil.copyfile(weights, out / "weights.safetensors")
        if ctx.cfg.export.onnx and importlib.util.find_spec("engine.export") is not None:
            from engine.export import export_onnx

            export_onnx(net, out / "model.onnx")
        print(f"[export] {out}: " + ", ".join(sorted(p.name for p in out.iterdir())))
    ctx.runtime.barrier()
    return out
