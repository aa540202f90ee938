"""The paper's published numbers (Tables 1, 2, 3, 5, 6), shown next to ours for orientation only.

The paper's faces, degradation samples, competitors and recogniser (ArcFace) differ from ours, so
the numbers are not directly comparable. Its "VGGFace2" column is matched to our ``lfw`` source,
which plays VGGFace2's role here (see ``../shared/README.md``).
"""

from __future__ import annotations

__all__ = ["PAPER_SOURCE", "PAPER_QUALITY", "PAPER_RECOGNITION", "PAPER_ABLATION"]

#: Our source -> the paper's dataset name.
PAPER_SOURCE: dict[str, str] = {"celeba": "CelebA", "lfw": "VGGFace2"}


def _pairs(text: str) -> list[tuple[float, float]]:
    return [tuple(float(v) for v in cell.split("|")) for cell in text.split()]  # type: ignore[misc]


def _table(methods: list[str], **rows: str) -> dict[str, dict[str, tuple[float, float]]]:
    out = {}
    for source, text in rows.items():
        values = _pairs(text)
        assert len(values) == len(methods), (source, len(values), len(methods))
        out[source] = dict(zip(methods, values))
    return out


_T5_METHODS = [
    "B+N+L", "Histeq", "Shen et al.", "Super-FAN", "UMSN", "DeblurGANv2", "DFDNet", "HiFaceGAN",
    "NASFE w/o Iiden", "NASFE",
]

#: set -> {source: {method: (PSNR, SSIM)}}, our source names as keys.
PAPER_QUALITY: dict[str, dict[str, dict[str, tuple[float, float]]]] = {
    "Test-N": _table(  # Table 1
        ["Noisy", "BM3D", "EPLL", "TNRD", "DnCNN", "CBDNet", "NASFE"],
        celeba="17.63|0.50 24.50|0.75 23.59|0.71 26.36|0.79 27.54|0.87 28.74|0.88 29.23|0.90",
        lfw="18.52|0.46 24.45|0.73 23.87|0.73 26.91|0.81 27.71|0.88 28.88|0.89 29.56|0.91",
    ),
    "Test-B": _table(  # Table 2
        ["Blurry", "Pan et al.", "Super-FAN", "Shen et al.", "UMSN", "DeblurGAN-v2", "HiFaceGAN",
         "NASFE"],
        celeba="19.64|0.61 19.98|0.74 22.98|0.80 24.45|0.83 25.53|0.87 26.06|0.88 26.38|0.88 27.90|0.92",
        lfw="20.30|0.67 20.74|0.77 22.83|0.80 24.63|0.84 25.65|0.87 25.92|0.87 26.30|0.88 27.94|0.91",
    ),
    "Test-L": _table(  # Table 3
        ["Low-light", "Fu et al.+DnCNN", "LIME+DnCNN", "Li et al.+DnCNN", "Zero-DCE+DnCNN",
         "Zero-DCE+ELD", "NASFE"],
        celeba="8.25|0.14 16.28|0.44 17.18|0.49 18.44|0.57 19.85|0.67 20.15|0.71 23.04|0.80",
        lfw="8.09|0.12 15.83|0.40 16.72|0.47 17.79|0.54 19.29|0.64 19.83|0.67 22.94|0.79",
    ),
    "Test-BN": _table(  # Table 6, final row (the paper reports no competitors on Test-BN)
        ["NASFE"], celeba="25.57|0.87", lfw="25.49|0.87",
    ),
    "Test-BNL": _table(  # Table 5
        _T5_METHODS,
        celeba="8.17|0.22 12.28|0.39 19.98|0.66 19.45|0.60 21.10|0.72 21.37|0.74 21.68|0.77 "
        "21.75|0.77 22.53|0.81 23.80|0.85",
        lfw="8.39|0.25 12.84|0.41 20.46|0.68 19.83|0.64 21.28|0.72 21.94|0.78 21.96|0.78 "
        "22.08|0.79 22.84|0.83 24.15|0.86",
    ),
}

#: Table 5 identification with ArcFace on Test-BNL: {source: {method: (Top-1 %, Top-5 %)}}.
PAPER_RECOGNITION: dict[str, dict[str, tuple[float, float]]] = _table(
    _T5_METHODS,
    celeba="38.5|45.2 41.3|47.5 51.2|57.8 48.8|55.9 59.7|67.7 61.2|68.6 63.4|69.7 62.9|69.1 "
    "69.6|77.3 73.4|81.8",
    lfw="42.8|49.2 43.2|50.8 56.9|62.7 53.8|59.2 62.8|69.9 65.3|72.4 67.8|73.7 67.2|72.9 "
    "72.1|80.4 75.9|84.2",
)

#: Table 6 ablation: {row: {(set, source): (PSNR, SSIM)}}.
PAPER_ABLATION: dict[str, dict[tuple[str, str], tuple[float, float]]] = {
    row: dict(zip(
        [("Test-BN", "celeba"), ("Test-BN", "lfw"), ("Test-BNL", "celeba"), ("Test-BNL", "lfw")],
        _pairs(text),
    ))
    for row, text in {
        "baseline network (BN)": "19.72|0.70 19.88|0.72 19.95|0.65 20.42|0.69",
        "BN-NAS": "22.51|0.74 22.62|0.75 21.17|0.70 21.47|0.74",
        "+ classification network": "23.28|0.76 23.04|0.76 21.56|0.72 21.95|0.76",
        "+ identity information Iiden": "24.88|0.81 24.60|0.82 23.06|0.80 23.47|0.80",
        "NASFE (Lmse + Lper)": "25.10|0.84 24.92|0.84 23.35|0.83 23.76|0.83",
        "NASFE (Lfinal)": "25.57|0.87 25.49|0.87 23.80|0.85 24.15|0.86",
    }.items()
}
