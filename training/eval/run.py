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
import torch
from tqdm import tqdm

from engine.errors import UserError
from engine.identity import ReferenceTable
from training.eval.grid import comparison_grid
from training.eval.methods import Hints, Method
from training.eval.metrics import psnr, ssim
from training.eval.recognition_eval import Embedder, Gallery, identify
from training.eval.report import write_report
from training.eval.testset import Kernels, Sample, read_samples, select_samples
from training.faces import load_aligned, read_index, read_rgb, select, write_rgb

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
    slow_limit: int = 4
    grid_rows: int = 6
    seed: int = 0
    chunk: int = 8
    #: faces folder (index.csv) whose ``split == test`` photos join the gallery and references.
    gallery_faces: Path | None = None
    #: torch device for the identity encoder (models and recogniser get theirs from the caller).
    device: str = "cpu"
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


def _grid(rows: list[list[np.ndarray | None]], labels: list[str]) -> np.ndarray:
    """Comparison grid without the columns of methods that gave nothing here (the oracle on a set
    without blur); a missing cell in a kept column (beyond a slow method's subset) is grey."""
    keep = [j for j in range(len(labels)) if any(r[j] is not None for r in rows)]
    return comparison_grid([[_placeholder(r[-1]) if r[j] is None else r[j] for j in keep] for r in rows],
                           [labels[j] for j in keep])


def _embed(embedder: Embedder, crops: Sequence[np.ndarray]) -> np.ndarray:
    return np.asarray(embedder(np.stack(crops)), np.float64)


@dataclass(frozen=True)
class _Photos:
    """Clean photos of one source that serve as gallery and as identity references: ``crops``
    ``(N, S, S, 3)`` uint8 RGB with one photo key (``source:stem``) and identity each."""

    keys: tuple[str, ...]
    identities: tuple[str, ...]
    crops: np.ndarray

    def others(self, identity: str, photo: str) -> list[int]:
        """Indices of ``identity``'s photos other than ``photo``."""
        return [j for j, (k, i) in enumerate(zip(self.keys, self.identities)) if i == identity and k != photo]


def _photos(groups: dict[tuple[str, str], list[Sample]], source: str, faces_dir: Path | None) -> _Photos:
    """Every selected clean photo of ``source`` (over all sets), plus, with ``faces_dir``, every
    other ``split == test`` photo of the source in that faces index."""
    clean = {s.photo: s for (_, src), g in groups.items() if src == source for s in g}
    keys = sorted(clean)
    identities = [clean[k].identity for k in keys]
    crops = [read_rgb(clean[k].clean) for k in keys]
    if faces_dir is not None:
        extra = [r for r in select(read_index(faces_dir), split="test", sources=source)
                 if f"{source}:{r.name}" not in clean]
        for r in tqdm(extra, desc=f"gallery {source}", unit="photo", dynamic_ncols=True):
            keys.append(f"{source}:{r.name}")
            identities.append(r.identity)
            crops.append(load_aligned(r, crops[0].shape[0]))
    return _Photos(tuple(keys), tuple(identities), np.stack(crops))


class _References:
    """Identity-prior maps (:class:`engine.identity.ReferenceTable`) of the photos of the people
    being evaluated; other gallery photos are never a reference and are not encoded."""

    def __init__(self, photos: _Photos, people: set[str], device: str) -> None:
        self.rows = [j for j, i in enumerate(photos.identities) if i in people]
        self.photos = photos
        self.table = ReferenceTable.build(photos.crops[self.rows], device=device)

    def priors(self, group: Sequence[Sample]) -> list[np.ndarray | None]:
        """Each sample's identity prior: the mean map of the person's *other* photos (never its
        own photo, which is the ground truth); ``None`` when the person has no other photo."""
        where = {j: r for r, j in enumerate(self.rows)}
        out: list[np.ndarray | None] = []
        for s in group:
            refs = [where[j] for j in self.photos.others(s.identity, s.photo)]
            out.append(self.table.prior(np.array([refs]), torch.device("cpu"))[0].numpy() if refs else None)
        return out


@dataclass
class _GroupResult:
    """Scores of one (set, source) and the restored crops kept for identification and grids."""

    cells: dict[str, dict[str, Any]]
    outputs: dict[str, list[tuple[int, np.ndarray]]]
    clean: np.ndarray


def _run_group(
    group: Sequence[Sample], hints: Sequence[Hints], methods: Sequence[Method], config: EvalConfig,
    keep: Callable[[int], bool], timing: dict[str, float], bar: tqdm,
) -> _GroupResult:
    """Restore one (set, source) with every method and score PSNR/SSIM; keep crop ``i`` if ``keep(i)``."""
    t0 = time.perf_counter()
    degraded, clean = _load_pairs(group)
    timing["load images"] += time.perf_counter() - t0
    cells: dict[str, dict[str, Any]] = {}
    outputs: dict[str, list[tuple[int, np.ndarray]]] = {}
    for m in methods:
        scores, kept = _Scores(), []
        n = min(len(group), config.slow_limit) if m.slow else len(group)
        for a in range(0, n, config.chunk):
            b = min(n, a + config.chunk)
            t0 = time.perf_counter()
            outs = m.restore(degraded[a:b], hints[a:b])
            timing[m.label] += time.perf_counter() - t0
            for i, out in zip(range(a, b), outs):
                if out is None:
                    continue
                out = _check_output(m, out, clean[i])
                scores.psnr.append(psnr(out, clean[i]))
                scores.ssim.append(ssim(out, clean[i]))
                if keep(i):
                    kept.append((i, out))
            bar.update(b - a)
        cells[m.name] = scores.summary()
        outputs[m.name] = kept
    return _GroupResult(cells, outputs, clean)


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
    groups = select_samples(read_samples(config.testsets), config.sets, config.sources,
                            config.limit, config.per_image, config.seed)
    if not groups:
        raise UserError(f"no images of set(s) {', '.join(config.sets)} and source(s) "
                        f"{', '.join(config.sources)} in {config.testsets / 'manifest.csv'}")
    kernels = Kernels(config.testsets / "kernels.npz")
    timing: dict[str, float] = defaultdict(float)
    quality: dict[str, dict[str, Any]] = defaultdict(dict)
    recognition: dict[str, dict[str, Any]] = defaultdict(dict)
    grid_rows: dict[str, list[list[np.ndarray | None]]] = defaultdict(list)
    photos: dict[str, _Photos] = {}
    galleries: dict[str, Gallery] = {}
    references: dict[str, _References] = {}
    embedder: Embedder | None = None
    wants_identity = any(m.uses_identity for m in methods)

    def pool(source: str) -> _Photos:
        if source not in photos:
            t0 = time.perf_counter()
            photos[source] = _photos(groups, source, config.gallery_faces)
            timing["load images"] += time.perf_counter() - t0
        return photos[source]

    total = sum(min(len(g), config.slow_limit) if m.slow else len(g)
                for g in groups.values() for m in methods)
    bar = tqdm(total=total, desc="evaluating", unit="img", dynamic_ncols=True)
    for (set_name, source), group in groups.items():
        priors: list[np.ndarray | None] = [None] * len(group)
        if wants_identity:
            t0 = time.perf_counter()
            if source not in references:
                people = {s.identity for (_, src), g in groups.items() if src == source for s in g}
                references[source] = _References(pool(source), people, config.device)
            priors = references[source].priors(group)
            timing["identity priors"] += time.perf_counter() - t0
        hints = [Hints(kernels.get(s.kernel), p) for s, p in zip(group, priors)]
        identify_here = set_name in RECOGNITION_SETS and embedder_factory is not None
        n_grid = math.ceil(config.grid_rows / sum(k[0] == set_name for k in groups))
        res = _run_group(group, hints, methods, config, lambda i: identify_here or i < n_grid, timing, bar)
        quality[set_name][source] = res.cells
        kept = {m.name: dict(res.outputs[m.name]) for m in methods}
        for i in range(min(n_grid, len(group))):
            grid_rows[set_name].append([kept[m.name].get(i) for m in methods] + [res.clean[i]])
        if identify_here:
            t0 = time.perf_counter()
            embedder = embedder or embedder_factory()
            if source not in galleries:
                p = pool(source)
                galleries[source] = Gallery.build(embedder(p.crops), p.identities, p.keys)
            recognition[set_name][source] = _identification(
                galleries[source], embedder, group, res, methods)
            timing["identification"] += time.perf_counter() - t0
    bar.close()

    grids = []
    labels = [m.label for m in methods] + ["Ground truth"]
    for set_name, rows in grid_rows.items():
        name = f"grid_{set_name}.png"
        write_rgb(config.out / name, _grid(rows[: config.grid_rows], labels))
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


def _identification(
    gallery: Gallery, embedder: Embedder, group: Sequence[Sample], res: _GroupResult,
    methods: Sequence[Method],
) -> dict[str, Any]:
    """Top-1/Top-5 of every method's restored crops and of the clean photos (the ceiling row)."""
    rows: dict[str, dict[str, Any]] = {}
    probes = [(m.name, res.outputs[m.name]) for m in methods]
    first: dict[str, int] = {}
    for i, s in enumerate(group):
        first.setdefault(s.photo, i)
    probes.append(("clean", [(i, res.clean[i]) for i in first.values()]))
    for name, kept in probes:
        if not kept:
            continue
        idx = [i for i, _ in kept]
        r = identify(gallery, _embed(embedder, [o for _, o in kept]),
                     [group[i].identity for i in idx], [group[i].photo for i in idx])
        rows[name] = {"top1": r.top[1], "top5": r.top[5], "probes": r.probes}
    usable = sum(gallery.can_identify(s.identity, s.photo) for s in group)
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
    photos: dict[str, set[str]] = defaultdict(set)
    people: dict[str, set[str]] = defaultdict(set)
    for (_, source), g in groups.items():
        photos[source].update(s.photo for s in g)
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
    with_id = [m.label for m in methods if m.uses_identity]
    without_id = [m.label for m in methods if m.kind == "model" and not m.uses_identity]
    if with_id:
        notes.append(f"{', '.join(with_id)}: the identity prior (engine.identity, dlib level-2 maps) "
                     "is the mean over the person's *other* clean photos (those identification "
                     "uses as gallery), never the probe's own photo; without another photo the "
                     "network's neutral embedding is used. Degradation prior: the network's own "
                     "classifier.")
    if without_id:
        notes.append(f"{', '.join(without_id)}: no identity prior (learned neutral embedding); "
                     "degradation prior from the network's own classifier.")
    if recognition:
        gallery = "the selected clean photos of the source" + (
            f" plus every other `split == test` photo of it in `{config.gallery_faces}`"
            if config.gallery_faces else "")
        notes.append(f"Identification on {', '.join(RECOGNITION_SETS)} with "
                     f"{recogniser_name or 'the evaluation recogniser'}; gallery: {gallery}.")
    else:
        notes.append("Identification: skipped (`--no-recognition`).")
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
        methods: columns; they get no kernel and no identity prior (oracles show as blank cells).
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
        outs = m.restore(stack, [Hints()] * len(stack))
        columns.append([_placeholder(c) if o is None else _check_output(m, o, c)
                        for o, c in zip(outs, stack)])
    labels = [m.label for m in methods]
    paths = []
    for g, a in enumerate(range(0, len(stack), rows_per_grid)):
        rows = [[col[i] for col in columns] for i in range(a, min(a + rows_per_grid, len(stack)))]
        name = "grid_real.png" if g == 0 else f"grid_real_{g + 1}.png"
        write_rgb(out / name, comparison_grid(rows, labels))
        paths.append(out / name)
    return paths
