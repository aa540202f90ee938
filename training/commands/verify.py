"""``nasfe-eval verify``: LFW 10-fold face-verification accuracy of a shipped recogniser."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from engine.errors import UserError
from engine.recognition import RECOGNIZERS, load_recognizer
from training.verify import verify

NAME = "verify"
HELP = "LFW 10-fold face verification accuracy of a recogniser (dlib ResNet or MobileFaceNet)"

_DEFAULT_FACES = Path(__file__).resolve().parents[3] / "shared" / "faces"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recognizer", choices=sorted(RECOGNIZERS), default="mobilefacenet",
                        help="which recogniser to score (default: mobilefacenet, the evaluation one)")
    parser.add_argument("--faces", type=Path, default=_DEFAULT_FACES,
                        help=f"shared faces folder with index.csv and lfw_pairs.csv (default: {_DEFAULT_FACES})")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default: 64)")
    parser.add_argument("--pairs-per-fold", type=int, default=None, metavar="N",
                        help="use only the first N pairs of each fold, for a quick check (default: all)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--plot", type=Path, default=None, metavar="PNG",
                        help="also save a histogram of same/different pair similarities to this PNG")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _plot(path: Path, scores: np.ndarray, same: np.ndarray, threshold: float, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    bins = np.linspace(scores.min(), scores.max(), 60)
    ax.hist(scores[same], bins, alpha=0.6, label="same person")
    ax.hist(scores[~same], bins, alpha=0.6, label="different people")
    ax.axvline(threshold, color="k", ls="--", lw=1, label=f"mean threshold {threshold:.3f}")
    ax.set_xlabel("cosine similarity")
    ax.set_ylabel("pairs")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1 or (args.pairs_per_fold is not None and args.pairs_per_fold < 1):
        raise UserError("--batch-size and --pairs-per-fold must be positive")
    try:
        device = torch.device(args.device)
    except RuntimeError as exc:
        raise UserError(f"bad --device {args.device!r}: {exc}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {args.device}: no CUDA GPU is available")
    net = load_recognizer(args.recognizer, device)
    result, scores, same = verify(net, args.faces, args.recognizer, args.batch_size, args.pairs_per_fold)
    headline = f"{result.recognizer}: LFW accuracy {100 * result.accuracy:.2f}% ± {100 * result.std:.2f}"
    detail = (f"10 folds, {result.pairs_used} of {result.pairs_total} pairs "
              f"({result.pairs_missing} skipped for missing images)")
    summary = f"{headline} ({detail})"
    if args.plot is not None:
        _plot(args.plot, scores, same, float(np.mean(result.thresholds)), f"{headline}\n{detail}")
    if args.json:
        print(json.dumps(asdict(result), indent=2))
    else:
        print(summary)
        if args.plot is not None:
            print(f"histogram: {args.plot}")
    return 0
