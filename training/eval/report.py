"""Write an evaluation's numbers as ``results.json`` and as ``report.md`` in the paper's layout.

``results`` is the plain dict built by :func:`training.eval.run.evaluate`::

    {"meta": {...},                       # inputs, counts, protocol notes, wall times
     "methods": [{"name", "label", "kind", "subset"}, ...],     # report columns, in order
     "quality": {set: {source: {method: {"psnr", "ssim", "n"}}}},
     "recognition": {set: {source: {"gallery_images", "gallery_identities", "probes", "skipped",
                                    "methods": {method: {"top1", "top5", "probes"}}}}}}

PSNR/SSIM cells read ``PSNR | SSIM`` like the paper's tables (2 and 3 decimals), identification
cells ``Top-1 | Top-5`` in percent (1 decimal). :func:`parse_tables` reads the tables back.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.eval.paper_numbers import (
    PAPER_ABLATION,
    PAPER_QUALITY,
    PAPER_RECOGNITION,
    PAPER_SOURCE,
)

__all__ = ["MarkdownTable", "render_markdown", "write_report", "parse_tables", "format_pair"]

_PAPER_TABLE = {"Test-N": "Table 1", "Test-B": "Table 2", "Test-L": "Table 3", "Test-BN": "Table 6",
                "Test-BNL": "Table 5"}
_CAVEAT = (
    "The paper's numbers are shown alongside for orientation only: its faces (CelebA and VGGFace2 "
    "test photos), degradation samples, competing methods and recogniser (ArcFace) differ from ours "
    "(CelebA and LFW test photos, classical baselines, MobileFaceNet), so the numbers are not "
    "directly comparable. The paper's VGGFace2 column is set against our LFW source."
)


def _num(v: float | None, digits: int) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if math.isinf(v):
        return "inf"
    return f"{v:.{digits}f}"


def format_pair(a: float | None, b: float | None, digits: tuple[int, int]) -> str:
    """``"a \\| b"`` for a Markdown cell (pipe escaped), ``—`` for a missing value."""
    if a is None and b is None:
        return "—"
    return f"{_num(a, digits[0])} \\| {_num(b, digits[1])}"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows), ""]


def _quality_section(results: dict[str, Any], set_name: str) -> list[str]:
    methods = results["methods"]
    per_source = results["quality"][set_name]
    table_ref = _PAPER_TABLE.get(set_name, "")
    lines = [f"## {set_name} — PSNR \\| SSIM" + (f" (paper {table_ref})" if table_ref else ""), ""]
    header = ["Source", "n"] + [m["label"] for m in methods]
    rows = []
    for source, cells in per_source.items():
        n = max((c["n"] for c in cells.values()), default=0)
        row = [source, str(n)]
        for m in methods:
            c = cells.get(m["name"])
            row.append(format_pair(c["psnr"], c["ssim"], (2, 3)) if c and c["n"] else "—")
        rows.append(row)
    lines += [f"Ours, {set_name}:", "", *_table(header, rows)]
    counts = {m["name"]: ", ".join(str(c.get(m["name"], {}).get("n", 0)) for c in per_source.values())
              for m in methods}
    subsets = [f"{m['label']}: n = {counts[m['name']]}" for m in methods if m.get("subset")]
    if subsets:
        lines += ["Run on a subset (per source, in order): " + "; ".join(subsets) + ".", ""]
    paper = PAPER_QUALITY.get(set_name)
    if paper:
        pmethods = list(next(iter(paper.values())))
        prows = [[PAPER_SOURCE[s]] + [format_pair(*paper[s][m], (2, 2)) for m in pmethods]
                 for s in per_source if s in paper]
        if prows:
            lines += [f"Paper {table_ref}, {set_name} (different faces and methods):", "",
                      *_table(["Dataset"] + pmethods, prows)]
    return lines


def _recognition_section(results: dict[str, Any], set_name: str) -> list[str]:
    rec = results["recognition"][set_name]
    labels = {m["name"]: m["label"] for m in results["methods"]}
    labels["clean"] = "Clean (ceiling)"
    names = [m["name"] for m in results["methods"] if any(m["name"] in r["methods"] for r in rec.values())]
    names.append("clean")
    recogniser = results["meta"].get("recogniser", "the evaluation recogniser")
    lines = [f"## {set_name} — face identification Top-1 \\| Top-5 (%) (paper Table 5)", "",
             f"Recogniser: {recogniser}. Gallery: clean photos of the source's test people (see "
             "Setup); each probe's own photo is left out of its gallery; identities are ranked by "
             "their best photo. People without another photo stay in the gallery as distractors "
             "and are not probes.", ""]
    rows = []
    for source, r in rec.items():
        row = [source, str(r["gallery_images"]), str(r["gallery_identities"]), str(r["probes"])]
        for name in names:
            c = r["methods"].get(name)
            row.append(format_pair(c["top1"], c["top5"], (1, 1)) if c and c["probes"] else "—")
        rows.append(row)
    header = ["Source", "gallery photos", "identities", "probes"] + [labels[n] for n in names]
    lines += [f"Ours, {set_name}, identification:", "", *_table(header, rows)]
    prows = [[PAPER_SOURCE[s]] + [format_pair(*PAPER_RECOGNITION[s][m], (1, 1))
                                  for m in PAPER_RECOGNITION[s]]
             for s in rec if s in PAPER_RECOGNITION]
    if prows:
        lines += ["Paper Table 5, Test-BNL, ArcFace (different faces, methods and recogniser):", "",
                  *_table(["Dataset"] + list(PAPER_RECOGNITION["celeba"]), prows)]
    return lines


def _models_section(results: dict[str, Any]) -> list[str]:
    models = [m for m in results["methods"] if m["kind"] == "model"]
    if not models:
        return []
    cols = [(s, src) for s, per in results["quality"].items() for src in per]
    header = ["Model"] + [f"{s} {src}" for s, src in cols]
    rows = [[m["label"]] + [
        format_pair(c["psnr"], c["ssim"], (2, 3)) if (c := results["quality"][s][src].get(m["name"]))
        and c["n"] else "—" for s, src in cols] for m in models]
    lines = ["## Models — PSNR \\| SSIM (paper Table 6 layout)", "", "Ours, every model:", "",
             *_table(header, rows)]
    pcols = [(s, src) for s, src in cols if (s, src) in next(iter(PAPER_ABLATION.values()))]
    if pcols:
        prows = [[row] + [format_pair(*vals[c], (2, 2)) for c in pcols]
                 for row, vals in PAPER_ABLATION.items()]
        lines += ["Paper Table 6 (different faces):", "",
                  *_table(["Method"] + [f"{s} {PAPER_SOURCE[src]}" for s, src in pcols], prows)]
    return lines


def render_markdown(results: dict[str, Any]) -> str:
    """The whole ``report.md`` text for ``results`` (schema in the module docstring)."""
    meta = results["meta"]
    lines = ["# NASFE evaluation", "", _CAVEAT, "", "## Setup", ""]
    lines += [f"- {note}" for note in meta.get("notes", [])]
    lines += [""]
    for set_name in results["quality"]:
        lines += _quality_section(results, set_name)
        if set_name in results.get("recognition", {}):
            lines += _recognition_section(results, set_name)
    lines += _models_section(results)
    timing = meta.get("wall_time_s", {})
    if timing:
        lines += ["## Wall time", "", *_table(["Step", "seconds"],
                                               [[k, f"{v:.1f}"] for k, v in timing.items()])]
    grids = meta.get("grids", [])
    if grids:
        lines += ["## Comparison grids", ""] + [f"![{g}]({g})" for g in grids] + [""]
    return "\n".join(lines)


def _jsonable(obj: Any) -> Any:
    """NaN/inf are not JSON: write them as null / the strings "inf" and "-inf"."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float):
        if math.isnan(obj):
            return None
        if math.isinf(obj):
            return "inf" if obj > 0 else "-inf"
    return obj


def write_report(results: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write ``out_dir/report.md`` and ``out_dir/results.json``; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md, js = out_dir / "report.md", out_dir / "results.json"
    md.write_text(render_markdown(results), encoding="utf-8")
    js.write_text(json.dumps(_jsonable(results), indent=2) + "\n", encoding="utf-8")
    return md, js


@dataclass(frozen=True)
class MarkdownTable:
    """A table read back from Markdown: the text line above it, its header and body cells."""

    title: str
    header: list[str]
    rows: list[list[str]]


_CELL_SPLIT = re.compile(r"(?<!\\)\|")


def parse_tables(markdown: str) -> list[MarkdownTable]:
    """Every pipe table in ``markdown``, cells stripped, ``\\|`` unescaped to ``|``."""
    tables: list[MarkdownTable] = []
    title, block = "", []
    for line in [*markdown.splitlines(), ""]:
        if line.startswith("|"):
            block.append([c.strip().replace("\\|", "|") for c in _CELL_SPLIT.split(line)[1:-1]])
            continue
        if block:
            tables.append(MarkdownTable(title, block[0], block[2:]))
            block = []
        if line.strip():
            title = line.strip()
    return tables
