"""LFW face-verification accuracy of a recogniser (standard 10-fold protocol).

For each of the 10 folds of ``lfw_pairs.csv`` the cosine-similarity threshold that maximises
accuracy on the other nine folds is applied to the held-out fold; the result is the mean (and
standard deviation) of the ten held-out accuracies. Faces are aligned from the dataset's YuNet
landmarks with :mod:`engine.align` onto the recogniser's own template. Pairs naming an image that is
not in the shared folder are skipped and counted.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from engine.align import crop_matrix, landmarks4_from_yunet5, warp_to_crop
from engine.errors import UserError
from engine.recognition import DlibResNet, MobileFaceNet

__all__ = [
    "Pair",
    "VerificationResult",
    "load_pairs",
    "load_landmarks",
    "aligned_chip",
    "embed_images",
    "best_threshold",
    "ten_fold_accuracy",
    "verify",
]


@dataclass(frozen=True)
class Pair:
    """One LFW pair: fold 0..9, image paths relative to the faces folder, same identity or not."""

    fold: int
    a: str
    b: str
    same: bool


@dataclass
class VerificationResult:
    """Outcome of :func:`verify`; accuracies are fractions in [0, 1]."""

    recognizer: str
    pairs_total: int
    pairs_missing: int
    pairs_used: int
    accuracy: float
    std: float
    fold_accuracies: list[float] = field(default_factory=list)
    thresholds: list[float] = field(default_factory=list)


def load_landmarks(faces: Path) -> dict[str, np.ndarray]:
    """``index.csv`` -> {relative path: ``(5, 2)`` float64 YuNet landmarks in pixels}."""
    index = faces / "index.csv"
    if not index.is_file():
        raise UserError(f"no index.csv in {faces}: expected the shared faces folder")
    with index.open(newline="") as f:
        return {
            row["path"]: np.array([[float(row[f"x{i}"]), float(row[f"y{i}"])] for i in range(5)])
            for row in csv.DictReader(f)
        }


def load_pairs(faces: Path) -> list[Pair]:
    """All pairs of ``lfw_pairs.csv`` (columns ``fold,a,b,same``)."""
    path = faces / "lfw_pairs.csv"
    if not path.is_file():
        raise UserError(f"no lfw_pairs.csv in {faces}: expected the shared faces folder")
    with path.open(newline="") as f:
        return [Pair(int(r["fold"]), r["a"], r["b"], r["same"] == "1") for r in csv.DictReader(f)]


def aligned_chip(image_rgb: np.ndarray, landmarks5: np.ndarray, size: int, template: np.ndarray) -> np.ndarray:
    """Cut a recogniser chip: ``(H, W, 3)`` uint8 RGB image + YuNet ``(5, 2)`` -> ``(size, size, 3)`` uint8 RGB."""
    m = crop_matrix(landmarks4_from_yunet5(landmarks5), size, template)
    return warp_to_crop(image_rgb, m, size)


def embed_images(
    net: DlibResNet | MobileFaceNet,
    faces: Path,
    paths: list[str],
    landmarks: dict[str, np.ndarray],
    batch_size: int = 64,
) -> dict[str, np.ndarray]:
    """Embed images (paths relative to ``faces``) -> {path: ``(D,)`` float32 unit vector}, with a progress bar."""
    device = next(net.parameters()).device
    out: dict[str, np.ndarray] = {}
    bar = tqdm(total=len(paths), desc="embedding", unit="img")
    for start in range(0, len(paths), batch_size):
        batch = paths[start : start + batch_size]
        chips = []
        for p in batch:
            bgr = cv2.imread(str(faces / p), cv2.IMREAD_COLOR)
            if bgr is None:
                raise UserError(f"cannot read image {faces / p}")
            chips.append(aligned_chip(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), landmarks[p], net.chip_size, net.template))
        x = torch.from_numpy(np.stack(chips)).to(device).permute(0, 3, 1, 2).float() / 255.0
        with torch.no_grad():
            emb = net.embed(x).cpu().numpy()
        out.update(zip(batch, emb))
        bar.update(len(batch))
    bar.close()
    return out


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """Threshold on similarity (``score > t`` means same person) maximising accuracy on these pairs."""
    values = np.unique(scores)
    candidates = np.concatenate([[values[0] - 1e-6], (values[:-1] + values[1:]) / 2, [values[-1] + 1e-6]])
    pos, neg = np.sort(scores[same]), np.sort(scores[~same])
    correct = (len(pos) - np.searchsorted(pos, candidates, "right")) + np.searchsorted(neg, candidates, "right")
    return float(candidates[int(np.argmax(correct))])


def ten_fold_accuracy(scores: np.ndarray, same: np.ndarray, folds: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-fold held-out accuracy and the threshold chosen on the other folds."""
    accuracies, thresholds = [], []
    for k in np.unique(folds):
        test = folds == k
        t = best_threshold(scores[~test], same[~test])
        accuracies.append(float(np.mean((scores[test] > t) == same[test])))
        thresholds.append(t)
    return accuracies, thresholds


def verify(
    net: DlibResNet | MobileFaceNet,
    faces: Path,
    name: str,
    batch_size: int = 64,
    pairs_per_fold: int | None = None,
) -> tuple[VerificationResult, np.ndarray, np.ndarray]:
    """Run the LFW protocol.

    Args:
        net: recogniser (frozen, eval mode).
        faces: the shared faces folder (``index.csv``, ``lfw_pairs.csv``, ``lfw/``).
        name: recogniser name for the report.
        batch_size: images per forward pass.
        pairs_per_fold: use only the first N usable pairs of each fold (quick checks); None = all.

    Returns:
        The result, and the used pairs' similarity scores ``(P,)`` and same-identity labels ``(P,)``.
    """
    landmarks = load_landmarks(faces)
    pairs = load_pairs(faces)
    usable = [p for p in pairs if p.a in landmarks and p.b in landmarks]
    missing = len(pairs) - len(usable)
    if pairs_per_fold is not None:
        by_fold = {k: [p for p in usable if p.fold == k] for k in sorted({p.fold for p in usable})}
        usable = [p for fold in by_fold.values() for p in fold[:pairs_per_fold]]
    if not usable or len({p.fold for p in usable}) < 2:
        raise UserError(f"too few LFW pairs with images in {faces} ({len(usable)} usable)")
    paths = sorted({p.a for p in usable} | {p.b for p in usable})
    emb = embed_images(net, faces, paths, landmarks, batch_size)
    scores = np.array([float(emb[p.a] @ emb[p.b]) for p in usable])
    same = np.array([p.same for p in usable])
    folds = np.array([p.fold for p in usable])
    accs, thresholds = ten_fold_accuracy(scores, same, folds)
    result = VerificationResult(
        name, len(pairs), missing, len(usable), float(np.mean(accs)), float(np.std(accs)), accs, thresholds
    )
    return result, scores, same
