"""``nasfe-cam bench`` and its parts: frame preparation, the pipeline timing, the soak's leak slope."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from engine.errors import UserError
from engine.runtime import load as load_module
from facecam.bench import cycle_frames, fit_frame, parse_size, plot_soak, soak
from facecam.cli import main

torch.set_num_threads(1)


def test_bench_json_has_the_expected_keys(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(
        ["bench", "--random", "smoke", "--backend", "torch", "--frames", "10", "--runs", "3",
         "--sizes", "320x240", "--threads", "1", "--json", str(out)]
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert set(report) == {"machine", "network", "settings", "goals", "backends"}
    assert report["machine"]["usable_cores"] >= 1 and report["machine"]["versions"]["torch"] == torch.__version__
    assert report["network"]["config"] == "smoke" and report["network"]["gflops_per_face"] > 0
    entry = report["backends"]["torch"]
    assert entry["enhancer"] == "torch-cpu-fp32"
    assert set(entry["engine"]) == {"batch_1", "batch_4"}
    for timing in entry["engine"].values():
        assert timing["runs"] == 3 and 0 < timing["median_ms_per_face"] <= timing["p95_ms_per_face"]
    pipeline = entry["pipeline"]["320x240"]
    assert pipeline["frames"] == 10 and pipeline["fps"] > 0
    assert pipeline["latency_ms"]["p50"] <= pipeline["latency_ms"]["p95"] <= pipeline["latency_ms"]["max"]
    assert pipeline["mean_faces"] > 0 and pipeline["enhanced_frames"] > 0  # the engine really ran
    assert "enhance" in pipeline["stages_ms"]
    printed = capsys.readouterr().out
    assert "torch-cpu-fp32" in printed and "pipeline 320x240" in printed and str(out) in printed


def test_bench_without_the_shipped_engine_says_what_to_do(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(load_module, "SHIPPED_WEIGHTS", tmp_path / "weights.safetensors")
    monkeypatch.setattr(load_module, "SHIPPED_GENOTYPE", tmp_path / "genotype.json")
    assert main(["bench", "--backend", "torch", "--frames", "0"]) == 2
    err = capsys.readouterr().err
    assert "the shipped engine is missing" in err and "--random rt" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--backend", "vulkan"], "unknown backend 'vulkan'"),
        (["--sizes", "640by480"], "frame size must look like 1280x720"),
        (["--random", "huge"], "unknown network config 'huge'"),
        (["--threads", "0"], "--threads must be >= 1"),
    ],
)
def test_bench_bad_options_are_one_line_errors(argv, message, capsys):
    assert main(["bench", "--random", "smoke", "--frames", "0", "--runs", "1", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_bench_frames_zero_times_only_the_engine(tmp_path):
    out = tmp_path / "engine.json"
    assert main(["bench", "--random", "smoke", "--backend", "torch", "--frames", "0", "--runs", "2", "--json", str(out)]) == 0
    entry = json.loads(out.read_text())["backends"]["torch"]
    assert entry["pipeline"] == {} and set(entry["engine"]) == {"batch_1", "batch_4"}


def test_parse_size():
    assert parse_size("1280x720") == (1280, 720)
    with pytest.raises(UserError, match="too small"):
        parse_size("8x8")


def test_fit_frame_keeps_the_aspect_ratio():
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[:, :320] = 200  # left half bright
    wide = fit_frame(frame, (1280, 720))
    assert wide.shape == (720, 1280, 3) and wide.dtype == np.uint8
    # 640x480 -> 960x720 in the middle, 160 replicated columns each side
    assert (wide[:, :160] == 200).all() and (wide[:, -160:] == 0).all()
    assert (wide[:, 160:638] == 200).all() and (wide[:, 642:1120] == 0).all()  # one blended edge
    narrow = fit_frame(frame, (320, 480))  # narrower target: centre crop
    assert narrow.shape == (480, 320, 3) and (narrow[:, :160] == 200).all() and (narrow[:, 160:] == 0).all()


def test_cycle_frames_plays_forwards_then_backwards():
    frames = [np.full((1, 1, 3), i, np.uint8) for i in range(4)]
    order = [int(f[0, 0, 0]) for f in cycle_frames(frames, 10)]
    assert order == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3]
    assert [int(f[0, 0, 0]) for f in cycle_frames(frames[:1], 3)] == [0, 0, 0]


class FakePipeline:
    """A pipeline that takes 2 ms per frame and, if ``leak``, keeps 100 kB of every frame forever."""

    def __init__(self, enhancer, leak: bool) -> None:
        self.leak = leak
        self.kept: list[np.ndarray] = []

    def process(self, frame, t_s):
        time.sleep(0.002)
        if self.leak:
            self.kept.append(np.ones(12_500))  # 100 kB, written so it is resident

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


@pytest.mark.parametrize("leak", [False, True])
def test_soak_reports_the_rss_slope(leak, tmp_path):
    frames = [np.zeros((8, 8, 3), np.uint8)] * 3
    result = soak(None, frames, minutes=0.02, samples=6, pipeline_factory=lambda e: FakePipeline(e, leak))
    samples = result["samples"]
    assert len(samples) == 6 and result["frames"] >= samples[-1]["frames"] > 100
    assert all(a["t_min"] < b["t_min"] for a, b in zip(samples, samples[1:]))
    assert all(s["rss_mb"] > 0 and s["latency_p50_ms"] >= 2.0 for s in samples)
    # ~400 frames x 100 kB in 1.2 s is over a GB/min; a still process stays near zero.
    if leak:
        assert result["rss_slope_mb_per_min"] > 500
    else:
        assert abs(result["rss_slope_mb_per_min"]) < 100
    plot_soak(result, tmp_path / "soak.png")
    assert (tmp_path / "soak.png").stat().st_size > 1000
