"""Stage 5: package the best retrained network in ``runs/NAME/export/``.

Copies ``best/genotype.json`` and ``best/weights.safetensors`` (checked by loading them into the
fused network with :func:`engine.build.load_fused`), and writes ``model.onnx`` through
:func:`engine.export.export_onnx` when ``export.onnx`` is on; an ONNX failure is written to
``export/onnx_error.txt`` and does not fail the run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from engine.build import load_fused
from engine.errors import UserError
from engine.export import export_onnx
from training.stages import retrain
from training.stages.context import RunContext

__all__ = ["run", "export_dir"]


def export_dir(ctx: RunContext) -> Path:
    return ctx.out / "export"


def _export_onnx(net, out: Path) -> None:
    """ONNX is a convenience copy: a failed export or parity check is reported, not fatal, because
    genotype + weights (what the app loads) are already in place."""
    failure = out / "onnx_error.txt"
    failure.unlink(missing_ok=True)
    try:
        report = export_onnx(net, out / "model.onnx")
    except UserError as exc:
        (out / "model.onnx").unlink(missing_ok=True)
        failure.write_text(f"{exc}\n")
        print(f"[export] warning: no ONNX model ({exc}); see {failure}")
        return
    print(f"[export] {report.path}: onnxruntime matches PyTorch within {report.max_abs_diff:.2g}")


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
        if ctx.cfg.export.onnx:
            _export_onnx(net, out)
        print(f"[export] {out}: " + ", ".join(sorted(p.name for p in out.iterdir())))
    ctx.runtime.barrier()
    return out
