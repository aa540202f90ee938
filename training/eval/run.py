"""The whole evaluation behind ``nasfe-eval run``: quality tables, identification, grids, report.

:func:`evaluate` restores every selected test crop with every method, scores PSNR/SSIM against the
ground truth, runs closed-set identification on the recognition sets (Test-BNL, as in the paper's
Table 5), draws one comparison grid per set and writes ``report.md`` / ``results.json``.
:func:`evaluate_real` does the picture part for real photos, which have no ground truth.
"""

from __future__ import annotations

import math
import platform
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from engine.errors import UserError
from training.eval.grid import comparison_grid, save_rgb_png
from training.eval.methods import Method
from training.eval.metrics import psnr, ssim
from training.eval.recognition_eval import Embedder, Gallery, identify
from training.eval.report import write_report
from training.eval.testset import KernelBank, Sample, read_manifest, read_rgb, select_samples

__all__ = ["EvalConfig", "evaluate", "evaluate_real", "RECOGNITION_SETS"]

#: Sets on which identification is scored (the paper's Table 5 uses Test-BNL).
RECOGNITION_SETS: tuple[str, ...] = ("Test-BNL",)


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate and how much of it (see ``nasfe-eval run --help``)."""

    testsets: Path
    out: Path
    sets: tuple[str, ...]
    sources: tuple[str, ...]
    limit: int | None = None
    per_image: int = 2
    slow_limit: int = 8
    grid_rows: int = 6
    seed: int = 0
    chunk: int = 8
    notes: tuple[str, ...] = field(default_factory=tuple)


_PLACEHOLDER_GREY = 200


@dataclass
class _Scores:
    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        n = len(self.psnr)
        return {"psnr": float(np.mean(self.psnr)) if n else None,
                "ssim": float(np.mean(self.ssim)) if n else None, "n": n}


def _load_pairs(samples: Sequence[Sample]) -> tuple[np.ndarray, np.ndarray]:
    """Degraded and clean crops ``(N, S, S, 3)`` uint8 RGB, checked to match in shape."""
    degraded = [read_rgb(s.degraded) for s in samples]
    clean = [read_rgb(s.clean) for s in samples]
    size = clean[0].shape
    for s, d, c in zip(samples, degraded, clean):
        if d.shape != c.shape or c.shape != size or size[0] != size[1]:
            raise UserError(f"{s.degraded}: expected square crops of one size like {size}, "
                            f"got degraded {d.shape} and clean {c.shape}")
    return np.stack(degraded), np.stack(clean)


def _check_output(method: Method, out: np.ndarray, like: np.ndarray) -> np.ndarray:
    if out.shape != like.shape or out.dtype != np.uint8:
        raise RuntimeError(f"{method.name} returned {out.shape} {out.dtype}, expected {like.shape} uint8")
    return out


def _placeholder(like: np.ndarray) -> np.ndarray:
    return np.full_like(like, _PLACEHOLDER_GREY)


def _embed(embedder: Embedder, crops: Sequence[np.ndarray]) -> np.ndarray:
    return np.asarray(embedder(np.stack(crops)), np.float64)


def evaluate(
    config: EvalConfig,
    methods: Sequence[Method],
    embedder_factory: Callable[[], Embedder] | None,
    recogniser_name: str = "",
) -> dict[str, Any]:
    """Run the evaluation and write the report; returns the results dict (schema in
    :mod:`training.eval.report`).

    Args:
        config: inputs and sizes.
        methods: report columns in order (baselines first, then models).
        embedder_factory: builds the evaluation recogniser when identification is due, or ``None``
            to skip identification.
        recogniser_name: how the report names the recogniser.
    """
    t_start = time.perf_counter()
    samples = read_manifest(config.testsets)
    groups = select_samples(samples, config.sets, config.sources, config.limit, config.per_image,
                            config.seed)
    if not groups:
        raise UserError(f"no images of set(s) {', '.join(config.sets)} and source(s) "
                        f"{', '.join(config.sources)} in {config.testsets / 'manifest.csv'}")
    kernels = KernelBank(config.testsets / "kernels.npz")
    timing: dict[str, float] = defaultdict(float)
    quality: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    recognition: dict[str, dict[str, Any]] = defaultdict(dict)
    grid_rows: dict[str, list[list[np.ndarray]]] = defaultdict(list)
    embedder: Embedder | None = None
    galleries: dict[str, Gallery] = {}

    def limit_for(m: Method, n: int) -> int:
        return min(n, config.slow_limit) if m.slow else n

    total = sum(limit_for(m, len(g)) for g in groups.values() for m in methods)
    bar = tqdm(total=total, desc="evaluating", unit="img", dynamic_ncols=True)
    for (set_name, source), group in groups.items():
        t0 = time.perf_counter()
        degraded, clean = _load_pairs(group)
        ks = [kernels.get(s.kernel) for s in group]
        timing["load images"] += time.perf_counter() - t0
        keep_all = set_name in RECOGNITION_SETS and embedder_factory is not None
        n_grid = math.ceil(config.grid_rows / sum(k[0] == set_name for k in groups))
        cells: dict[str, dict[str, Any]] = {}
        outputs: dict[str, list[tuple[int, np.ndarray]]] = {}
        for m in methods:
            scores, kept = _Scores(), []
            n = limit_for(m, len(group))
            for a in range(0, n, config.chunk):
                b = min(n, a + config.chunk)
                t0 = time.perf_counter()
                outs = m.restore(degraded[a:b], ks[a:b])
                timing[m.label] += time.perf_counter() - t0
                for i, out in zip(range(a, b), outs):
                    if out is None:
                        continue
                    out = _check_output(m, out, clean[i])
                    scores.psnr.append(psnr(out, clean[i]))
                    scores.ssim.append(ssim(out, clean[i]))
                    if keep_all or i < n_grid:
                        kept.append((i, out))
                bar.update(b - a)
            cells[m.name] = scores.summary()
            outputs[m.name] = kept
        quality[set_name][source] = cells
        for i in range(min(n_grid, len(group))):
            by_index = {m.name: dict(outputs[m.name]) for m in methods}
            grid_rows[set_name].append(
                [by_index[m.name].get(i, _placeholder(clean[i])) for m in methods] + [clean[i]])
        if keep_all:
            t0 = time.perf_counter()
            if embedder is None:
                embedder = embedder_factory()
            if source not in galleries:
                galleries[source] = _gallery(embedder, groups, source)
            recognition[set_name][source] = _identification(
                galleries[source], embedder, group, clean, outputs, methods)
            timing["identification"] += time.perf_counter() - t0
    bar.close()

    grids = []
    for set_name, rows in grid_rows.items():
        if rows:
            rows = rows[: config.grid_rows]
            labels = [m.label for m in methods] + ["Ground truth"]
            name = f"grid_{set_name}.png"
            save_rgb_png(config.out / name, comparison_grid(rows, labels))
            grids.append(name)
    timing["total"] = time.perf_counter() - t_start
    results = {
        "meta": _meta(config, groups, methods, recogniser_name, embedder_factory is not None,
                      dict(timing), grids),
        "methods": [{"name": m.name, "label": m.label, "kind": m.kind,
                     "subset": config.slow_limit if m.slow else None} for m in methods],
        "quality": dict(quality),
        "recognition": dict(recognition),
    }
    write_report(results, config.out)
    return results


def _gallery(embedder: Embedder, groups: dict[tuple[str, str], list[Sample]], source: str) -> Gallery:
    """Every selected clean photo of ``source`` (over all sets), embedded once."""
    photos = {s.clean: s.identity for (_, src), g in groups.items() if src == source for s in g}
    keys = sorted(photos)
    emb = _embed(embedder, [read_rgb(p) for p in keys])
    return Gallery.build(emb, [photos[k] for k in keys], [str(k) for k in keys])


def _identification(
    gallery: Gallery,
    embedder: Embedder,
    group: Sequence[Sample],
    clean: np.ndarray,
    outputs: dict[str, list[tuple[int, np.ndarray]]],
    methods: Sequence[Method],
) -> dict[str, Any]:
    """Top-1/Top-5 of every method's restored crops and of the clean photos (the ceiling row)."""
    rows: dict[str, dict[str, Any]] = {}
    for m in methods:
        kept = outputs[m.name]
        if not kept:
            continue
        idx = [i for i, _ in kept]
        res = identify(gallery, _embed(embedder, [o for _, o in kept]),
                       [group[i].identity for i in idx], [str(group[i].clean) for i in idx])
        rows[m.name] = {"top1": res.top[1], "top5": res.top[5], "probes": res.probes}
    first = {}
    for i, s in enumerate(group):
        first.setdefault(s.clean, i)
    idx = list(first.values())
    res = identify(gallery, _embed(embedder, [clean[i] for i in idx]),
                   [group[i].identity for i in idx], [str(group[i].clean) for i in idx])
    rows["clean"] = {"top1": res.top[1], "top5": res.top[5], "probes": res.probes}
    usable = sum(gallery.can_identify(s.identity, str(s.clean)) for s in group)
    return {"gallery_images": len(gallery.keys), "gallery_identities": gallery.n_identities,
            "probes": usable, "skipped": len(group) - usable, "methods": rows}


def _meta(
    config: EvalConfig,
    groups: dict[tuple[str, str], list[Sample]],
    methods: Sequence[Method],
    recogniser_name: str,
    recognition: bool,
    timing: dict[str, float],
    grids: list[str],
) -> dict[str, Any]:
    photos: dict[str, set[Path]] = defaultdict(set)
    people: dict[str, set[str]] = defaultdict(set)
    for (_, source), g in groups.items():
        photos[source].update(s.clean for s in g)
        people[source].update(s.identity for s in g)
    counts = ", ".join(f"{s} {len(photos[s])} photos of {len(people[s])} people" for s in photos)
    sizes = ", ".join(f"{k[0]}/{k[1]} {len(g)}" for k, g in groups.items())
    slow = [m.label for m in methods if m.slow]
    notes = [
        f"Test sets: `{config.testsets}`; clean photos: {counts}"
        + (f" (`--limit {config.limit}` per source, whole identities in seeded random order)"
           if config.limit else "") + ".",
        f"Up to {config.per_image} degraded version(s) per clean photo and set (seeded choice, seed "
        f"{config.seed}); images per set/source: {sizes}.",
        "PSNR and SSIM: scikit-image `peak_signal_noise_ratio` / `structural_similarity` on the "
        "aligned crops as uint8 RGB with `data_range=255`; SSIM uses a Gaussian window (sigma 1.5, "
        "population covariance, Wang et al. 2004) on each RGB channel (`channel_axis=-1`) and "
        "averages the three channels. Each cell is the mean over the set's images.",
        "Baselines are blind (they estimate the noise level themselves) except `RL (true k)`, "
        "an oracle given the true blur kernel: an upper reference for deblurring, not a competitor; "
        "it has no value on sets without blur.",
    ]
    if slow:
        notes.append(f"{', '.join(slow)} (slow) ran on the first {config.slow_limit} images of each "
                     "set and source only (they are in seeded random order).")
    models = [m.label for m in methods if m.kind == "model"]
    if models:
        notes.append(f"NASFE rows: {', '.join(models)}; the degradation prior comes from each "
                     "network's own classifier and no identity prior is given.")
    notes.append(f"Identification ({', '.join(RECOGNITION_SETS)}): "
                 + (recogniser_name or "evaluation recogniser") if recognition else
                 "Identification: skipped (no recogniser).")
    notes.append(f"Wall time {timing['total']:.1f} s on {platform.machine()} "
                 f"({platform.processor() or 'cpu'}); per-method times below.")
    notes.extend(config.notes)
    return {
        "testsets": str(config.testsets), "sets": list(config.sets), "sources": list(config.sources),
        "limit": config.limit, "per_image": config.per_image, "slow_limit": config.slow_limit,
        "seed": config.seed, "recogniser": recogniser_name, "notes": notes,
        "wall_time_s": timing, "grids": grids,
    }


def evaluate_real(
    crops: Sequence[np.ndarray], methods: Sequence[Method], out: Path, rows_per_grid: int = 8
) -> list[Path]:
    """Restore aligned crops of real photos (no ground truth) and draw the comparison grid(s).

    Args:
        crops: ``(S, S, 3)`` uint8 RGB aligned crops.
        methods: columns; oracle methods get no kernel and show as blank cells.
        out: output folder; grids go to ``out/grid_real.png`` (``grid_real_2.png``, ... when there
            are more than ``rows_per_grid`` photos).

    Returns:
        The grid paths.
    """
    if not crops:
        raise UserError("no faces found in the real photos")
    stack = np.stack(crops)
    columns = []
    for m in tqdm(methods, desc="restoring", unit="method", dynamic_ncols=True):
        outs = m.restore(stack, [None] * len(stack))
        columns.append([_placeholder(c) if o is None else _check_output(m, o, c)
                        for o, c in zip(outs, stack)])
    labels = [m.label for m in methods]
    paths = []
    for g, a in enumerate(range(0, len(stack), rows_per_grid)):
        rows = [[col[i] for col in columns] for i in range(a, min(a + rows_per_grid, len(stack)))]
        name = "grid_real.png" if g == 0 else f"grid_real_{g + 1}.png"
        paths.append(save_rgb_png(out / name, comparison_grid(rows, labels)))
    return paths
