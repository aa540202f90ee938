"""``nasfe-eval run`` end to end on a mini test-set built from real faces by ``training.testsets``."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from engine.build import build_supernet, derive_fused, load_fused, save_fused
from engine.identity import enroll
from training.eval.baselines import BASELINES
from training.eval.methods import Method, baseline_method
from training.eval.run import EvalConfig, evaluate
from training.eval.report import parse_tables
from training.eval_cli import main
from training.faces import FaceRecord, by_identity, read_index, read_rgb, select
from training.testsets import build_testsets

FACES = Path(__file__).resolve().parents[1] / ".." / "shared" / "faces"
SETS = ("Test-B", "Test-N", "Test-L", "Test-BN", "Test-BNL")
#: Every baseline but BM3D (seconds a crop; tested in test_eval_baselines and below as "slow").
FAST_BASELINES = [b for b in BASELINES if not BASELINES[b].slow]


def _write_index(root: Path, records: list[FaceRecord]) -> Path:
    """A faces folder whose index.csv lists ``records`` (absolute paths, all ``split == test``)."""
    root.mkdir(parents=True)
    with (root / "index.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "identity", "source", "split"] + [f"{a}{i}" for i in range(5) for a in "xy"])
        for r in records:
            w.writerow([r.path, r.identity, r.source, "test", *r.landmarks5.ravel().tolist()])
    return root


def _people(source: str, count: int, photos: int, skip: int = 0) -> list[FaceRecord]:
    """``photos`` test photos each of ``count`` people of ``source`` with at least that many."""
    groups = by_identity(select(read_index(FACES), split="test", sources=source))
    names = sorted(n for n, rs in groups.items() if len(rs) >= photos)[skip:skip + count]
    return [r for n in names for r in groups[n][:photos]]


def _mini_faces() -> list[FaceRecord]:
    """Three CelebA people with three photos each, two LFW people with two photos and one LFW
    person with one photo."""
    lfw = by_identity(select(read_index(FACES), split="test", sources="lfw"))
    solo = lfw[min(n for n, rs in lfw.items() if len(rs) == 1)]
    return _people("celeba", 3, 3) + _people("lfw", 2, 2) + solo


@pytest.fixture(scope="module")
def testsets(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("eval")
    out = tmp / "testsets"
    build_testsets(_write_index(tmp / "faces", _mini_faces()), out, limit=None, per_image=1, progress=False)
    return out


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> tuple[Path, Path]:
    """An untrained smoke-sized network saved as genotype.json + weights.safetensors."""
    tmp = tmp_path_factory.mktemp("model")
    supernet = build_supernet("smoke", seed=0)
    genotype = supernet.derive()
    genotype.save(tmp / "genotype.json")
    save_fused(derive_fused(supernet, genotype), tmp / "weights.safetensors")
    return tmp / "genotype.json", tmp / "weights.safetensors"


@pytest.fixture(scope="module")
def report(testsets, model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    g, w = model
    rc = main(["run", "--testsets", str(testsets), "--out", str(out), "--grid-rows", "4",
               "--gallery", "testset", "--baselines", *FAST_BASELINES, "--model", f"tiny={g}:{w}"])
    assert rc == 0
    return out


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def test_report_lists_every_set_and_method(report):
    res = _results(report)
    md = (report / "report.md").read_text()
    labels = [m["label"] for m in res["methods"]]
    assert [m["name"] for m in res["methods"]] == [*FAST_BASELINES, "tiny"]
    assert list(res["quality"]) == list(SETS)
    for set_name in SETS:
        assert f"## {set_name} — PSNR" in md
        assert set(res["quality"][set_name]) == {"celeba", "lfw"}
        table = next(t for t in parse_tables(md) if t.title == f"Ours, {set_name}:")
        assert table.header[2:] == labels
        assert (report / f"grid_{set_name}.png").is_file()
    assert list(res["recognition"]) == ["Test-BNL"]
    assert "paper Table 5" in md and "not directly comparable" in md


def _cell(value: float | str | None, digits: int) -> str:
    if value is None:
        return "—"
    if value == "inf":
        return "inf"
    return f"{value:.{digits}f}"


def test_markdown_tables_agree_with_json(report):
    res = _results(report)
    tables = {t.title: t for t in parse_tables((report / "report.md").read_text())}
    names = [m["name"] for m in res["methods"]]
    checked = 0
    for set_name, per_source in res["quality"].items():
        table = tables[f"Ours, {set_name}:"]
        for row in table.rows:
            source, n, cells = row[0], int(row[1]), row[2:]
            assert n == max(c["n"] for c in per_source[source].values())
            for name, text in zip(names, cells):
                c = per_source[source][name]
                want = "—" if not c["n"] else f"{_cell(c['psnr'], 2)} | {_cell(c['ssim'], 3)}"
                assert text == want, (set_name, source, name)
                checked += 1
    rec = res["recognition"]["Test-BNL"]
    table = tables["Ours, Test-BNL, identification:"]
    for row in table.rows:
        r = rec[row[0]]
        assert [int(v) for v in row[1:4]] == [r["gallery_images"], r["gallery_identities"], r["probes"]]
        for name, text in zip([*names, "clean"], row[4:]):
            c = r["methods"][name]
            assert text == (f"{c['top1']:.1f} | {c['top5']:.1f}" if c["probes"] else "—")
            checked += 1
    assert checked == len(SETS) * 2 * len(names) + 2 * (len(names) + 1)


def test_numbers_behave(report):
    q = _results(report)["quality"]
    for set_name in SETS:
        for source, cells in q[set_name].items():
            assert cells["degraded"]["n"] == cells["nlm"]["n"] > 1
            has_blur = set_name in ("Test-B", "Test-BN", "Test-BNL")
            assert (cells["rl"]["n"] > 0) == has_blur  # the oracle needs a kernel
            for c in cells.values():
                if c["n"]:
                    assert 0 < c["psnr"] < 60 and -1 <= c["ssim"] <= 1
    # The oracle deblurs Test-B; contrast curves brighten Test-L.
    for source in ("celeba", "lfw"):
        assert q["Test-B"][source]["rl"]["psnr"] > q["Test-B"][source]["degraded"]["psnr"] + 1
        assert q["Test-L"][source]["gamma"]["psnr"] > q["Test-L"][source]["degraded"]["psnr"] + 3


def test_identification_protocol_on_real_faces(report):
    rec = _results(report)["recognition"]["Test-BNL"]
    celeba, lfw = rec["celeba"], rec["lfw"]
    assert (celeba["gallery_images"], celeba["gallery_identities"]) == (9, 3)
    assert celeba["probes"] == 9 and celeba["skipped"] == 0
    assert celeba["methods"]["clean"]["top1"] == 100.0
    # LFW: the single-photo person is a distractor, never a probe.
    assert (lfw["gallery_images"], lfw["gallery_identities"]) == (5, 3)
    assert lfw["probes"] == 4 and lfw["skipped"] == 1
    assert lfw["methods"]["clean"]["probes"] == 4


def test_faces_gallery_adds_photos_and_people(testsets, tmp_path):
    # The test set's people plus a fourth photo of one of them and a new person with two photos.
    extra = _people("celeba", 1, 4)[3:] + _people("celeba", 1, 2, skip=3)
    faces = _write_index(tmp_path / "faces", _mini_faces() + extra)
    assert main(["run", "--testsets", str(testsets), "--out", str(tmp_path / "out"), "--sets", "BNL",
                 "--sources", "celeba", "--baselines", "degraded", "--faces", str(faces)]) == 0
    rec = _results(tmp_path / "out")["recognition"]["Test-BNL"]["celeba"]
    assert (rec["gallery_images"], rec["gallery_identities"], rec["probes"]) == (12, 4, 9)
    assert rec["methods"]["clean"]["top1"] == 100.0


def test_grid_has_a_labelled_column_per_method(report):
    res = _results(report)
    columns = len(res["methods"]) + 1  # + ground truth
    grid = cv2.imread(str(report / "grid_Test-BNL.png"))
    assert grid.shape == (22 + 4 * 130, columns * 130, 3)
    header = grid[:22, :128]
    assert header.min() < 100 and header.max() == 255  # dark text on white
    # No blur in Test-N: the oracle deconvolution has nothing to show and its column is dropped.
    assert cv2.imread(str(report / "grid_Test-N.png")).shape[1] == (columns - 1) * 130


def test_same_inputs_give_same_numbers(report, testsets, tmp_path):
    rc = main(["run", "--testsets", str(testsets), "--out", str(tmp_path), "--sets", "bnl", "n",
               "--baselines", "degraded", "nlm", "--no-recognition"])
    assert rc == 0
    again, first = _results(tmp_path)["quality"], _results(report)["quality"]
    assert list(again) == ["Test-N", "Test-BNL"]  # canonical order whatever the command line
    for set_name in again:
        for source, cells in again[set_name].items():
            for name in ("degraded", "nlm"):
                assert cells[name] == first[set_name][source][name]


def test_limit_takes_whole_identities(testsets, tmp_path):
    assert main(["run", "--testsets", str(testsets), "--out", str(tmp_path), "--sets", "N",
                 "--sources", "celeba", "--limit", "4", "--baselines", "degraded",
                 "--no-recognition"]) == 0
    res = _results(tmp_path)
    assert res["quality"]["Test-N"]["celeba"]["degraded"]["n"] == 4
    assert "celeba 4 photos of 2 people" in res["meta"]["notes"][0]


def test_real_photos_give_a_grid(tmp_path, model):
    photos = tmp_path / "photos"
    photos.mkdir()
    for r in select(read_index(FACES), split="test", sources="celeba")[:2]:
        shutil.copy(r.path, photos / r.path.name)
    cv2.imwrite(str(photos / "blank.png"), np.full((200, 200, 3), 128, np.uint8))
    g, w = model
    out = tmp_path / "out"
    assert main(["run", "--real", str(photos), "--out", str(out), "--genotype", str(g),
                 "--weights", str(w), "--baselines", "degraded", "histeq", "rl"]) == 0
    grid = cv2.imread(str(out / "grid_real.png"))
    assert grid.shape == (22 + 2 * 130, 3 * 130, 3)  # Input | Histeq | NASFE (oracle dropped)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--testsets", "{tmp}/missing"], "test-set directory not found"),
        (["--testsets", "{tmp}"], "no test-set manifest"),
        (["--testsets", "{sets}", "--sets", "Test-X"], "unknown test set 'Test-X'"),
        (["--testsets", "{sets}", "--sources", "vggface2"], "source 'vggface2' is not in"),
        (["--testsets", "{sets}", "--limit", "0"], "--limit must be at least 1"),
        (["--testsets", "{sets}", "--model", "broken"], "NAME=GENOTYPE:WEIGHTS"),
        (["--testsets", "{sets}", "--weights", "w.safetensors"], "pair up"),
        (["--testsets", "{sets}", "--genotype", "{tmp}/g.json", "--weights", "{tmp}/w.st"],
         "not found"),
        (["--real", "{tmp}"], "no images"),
        (["--testsets", "{sets}", "--device", "gpu0"], "--device"),
        (["--testsets", "{sets}", "--seed", "-1"], "--seed must be at least 0"),
    ],
)
def test_bad_input_is_one_line_exit_2(argv, message, testsets, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path, sets=testsets) for a in argv]
    rc = main(["run", *argv, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("nasfe-eval: error:")
    assert message in err


def test_slow_methods_run_on_a_prefix_and_are_reported(testsets, tmp_path):
    calls = []

    def restore(crops, kernels):
        calls.append(len(crops))
        return [c[::-1].copy() for c in crops]  # upside down: clearly worse than the input

    slow = Method("flip", "Flip", "baseline", restore, slow=True)
    config = EvalConfig(testsets=testsets, out=tmp_path, sets=("Test-N",), sources=("celeba",),
                        slow_limit=2, chunk=1)
    res = evaluate(config, [baseline_method(BASELINES["degraded"]), slow], None)
    cells = res["quality"]["Test-N"]["celeba"]
    assert calls == [1, 1] and cells["flip"]["n"] == 2 and cells["degraded"]["n"] == 9
    assert cells["flip"]["psnr"] < cells["degraded"]["psnr"]
    md = (tmp_path / "report.md").read_text()
    assert "Flip: n = 2" in md and "Flip (slow) ran on the first 2 images" in md


def test_identity_prior_comes_from_the_persons_other_photos(testsets, tmp_path):
    seen: dict[bytes, np.ndarray | None] = {}

    def restore(crops, hints):
        seen.update((c.tobytes(), h.identity) for c, h in zip(crops, hints))
        return list(crops)

    probe = Method("probe", "Probe", "model", restore, uses_identity=True)
    config = EvalConfig(testsets=testsets, out=tmp_path, sets=("Test-N",), sources=("celeba", "lfw"))
    evaluate(config, [probe], None)
    rows = [r for r in csv.DictReader((testsets / "manifest.csv").open()) if r["set"] == "Test-N"]
    by_person: dict[str, list[dict]] = {}
    for r in rows:
        by_person.setdefault(r["identity"], []).append(r)
    for person, photos in by_person.items():
        degraded = [read_rgb(testsets / r["degraded"]) for r in photos]
        clean = [read_rgb(testsets / r["clean"]) for r in photos]
        for i, d in enumerate(degraded):
            prior = seen[d.tobytes()]
            if len(photos) == 1:
                assert prior is None  # nobody else to learn the person from
                continue
            others = np.stack([c for j, c in enumerate(clean) if j != i])
            np.testing.assert_allclose(prior, enroll(others), atol=2e-2)  # float16 table
            assert not np.allclose(prior, enroll(np.stack(clean)), atol=2e-2)  # own photo left out


def test_identity_rows_use_the_prior(testsets, model, tmp_path):
    g, w = model
    net = load_fused(g, w)
    torch.nn.init.normal_(net.identity_branch.proj.weight, std=0.5)  # untrained: projection is 0
    save_fused(net, tmp_path / "w.safetensors")
    assert main(["run", "--testsets", str(testsets), "--out", str(tmp_path / "out"), "--sets", "N",
                 "--baselines", "degraded", "--identity", "both", "--no-recognition", "--gallery", "testset",
                 "--genotype", str(g), "--weights", str(tmp_path / "w.safetensors")]) == 0
    q = _results(tmp_path / "out")["quality"]["Test-N"]
    names = [m["name"] for m in _results(tmp_path / "out")["methods"]]
    assert names == ["degraded", "NASFE", "NASFE w/o Iiden"]
    assert q["celeba"]["NASFE"]["psnr"] != q["celeba"]["NASFE w/o Iiden"]["psnr"]
