"""Training curves as PNG: one panel per logged metric, plus validation PSNR, from a stage's CSVs.

People look at pictures, not CSVs: every stage folder gets a ``curves.png`` refreshed at each
checkpoint, drawn from ``log.csv`` (training metrics, raw and smoothed) and ``val.csv``.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

__all__ = ["read_csv_columns", "plot_stage_curves"]


def read_csv_columns(path: Path) -> dict[str, list[float]]:
    """Numeric columns of a CSV (blank cells become NaN); empty dict when the file is missing."""
    path = Path(path)
    if not path.is_file():
        return {}
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k: [float(r[k]) if r.get(k) not in (None, "") else math.nan for r in rows] for k in rows[0]}


def _smooth(values: list[float], weight: float = 0.9) -> list[float]:
    out, acc = [], math.nan
    for v in values:
        if math.isfinite(v):
            acc = v if math.isnan(acc) else weight * acc + (1 - weight) * v
        out.append(acc)
    return out


def plot_stage_curves(folder: Path, title: str = "", out_name: str = "curves.png") -> Path | None:
    """Draw ``folder/log.csv`` (and ``folder/val.csv``) into ``folder/out_name``; ``None`` if no log."""
    folder = Path(folder)
    train = read_csv_columns(folder / "log.csv")
    val = read_csv_columns(folder / "val.csv")
    skip = {"step", "elapsed_s", "it_s"}
    panels = [k for k in train if k not in skip and any(math.isfinite(v) for v in train[k])]
    panels += [f"val:{k}" for k in val if k != "step"]
    if not panels:
        return None
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, key in zip(axes.flat, panels):
        if key.startswith("val:"):
            name = key[4:]
            ax.plot(val["step"], val[name], "o-", color="tab:green", markersize=3)
            ax.set_title(f"validation {name}")
        else:
            ax.plot(train["step"], train[key], color="tab:blue", alpha=0.3, linewidth=0.8)
            ax.plot(train["step"], _smooth(train[key]), color="tab:blue")
            ax.set_title(key)
            positive = [v for v in train[key] if math.isfinite(v)]
            if positive and min(positive) > 0 and max(positive) / min(positive) > 50:
                ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = folder / out_name
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
