"""The frame pipeline and the running filter, end to end on real frames with test-double engines."""

from __future__ import annotations

import csv
import json
import logging
import re
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.align import crop_matrix, warp_to_crop
from engine.enhancer import Enhancer
from facecam.blend import face_mask
from facecam.capture import Capture
from facecam.controls import PipelineControls
from facecam.detect import MediaPipeDetector
from facecam.pipeline import FramePipeline
from facecam.runner import CameraFilter
from facecam.simulate import FrameDegrader, linear_to_srgb, srgb_to_linear

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "assets" / "sample" / "webcam_sample.mkv"
SHARED = ROOT.parent / "shared"
S = 128


# -- test doubles -------------------------------------------------------------------------------


class InverseLowLight:
    """A classical restorer told the simulator's light factor: undo it in linear light, then smooth.

    It stands in for the network where the test needs an engine that can actually help.
    """

    crop_size = S
    name = "test-inverse-lowlight"

    def __init__(self, light: float) -> None:
        self.light = light
        self.calls: list[tuple[int, np.ndarray | None, np.ndarray | None]] = []

    def enhance(self, crops, prior=None, identity=None):
        self.calls.append((len(crops), prior, identity))
        lin = srgb_to_linear(crops / 255.0) / self.light
        lin = np.stack([cv2.GaussianBlur(c, (0, 0), 1.2) for c in lin])
        return np.round(linear_to_srgb(lin) * 255.0).astype(np.uint8)


class Flaky(InverseLowLight):
    """Raises on every second call."""

    def enhance(self, crops, prior=None, identity=None):
        if len(self.calls) % 2 == 1:
            self.calls.append((len(crops), prior, identity))
            raise RuntimeError("engine hiccup")
        return super().enhance(crops, prior, identity)


class ReturnsNaN(InverseLowLight):
    def enhance(self, crops, prior=None, identity=None):
        return np.full(crops.shape, np.nan, np.float32)


class WrongShape(InverseLowLight):
    def enhance(self, crops, prior=None, identity=None):
        return crops[:, :64, :64]


class BrokenDetector:
    name = "broken"

    def detect(self, frame_bgr, timestamp_ms):
        raise MemoryError("detector out of memory")

    def close(self):
        pass


class RecordingSink:
    """Keeps every frame pair it is sent."""

    def __init__(self, live: bool = False) -> None:
        self.live = live
        self.frames: list[np.ndarray] = []
        self.sources: list[np.ndarray] = []

    def send(self, frame_bgr, source_bgr):
        self.frames.append(frame_bgr)
        self.sources.append(source_bgr)

    def close(self):
        pass


# -- fixtures -----------------------------------------------------------------------------------


def sample_frames() -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(SAMPLE))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


@pytest.fixture(scope="module")
def detector():
    with MediaPipeDetector() as det:
        yield det


@pytest.fixture(scope="module")
def bnl_run(detector):
    """The sample clip through ``--simulate bnl`` and the filter (file in, lossless)."""
    degrader = FrameDegrader(kinds="bnl", seed=0)
    enhancer = InverseLowLight(degrader.light)
    pipeline = FramePipeline(enhancer, detector=detector)
    capture = Capture(str(SAMPLE), transform=degrader, stats=pipeline.stats)
    sink = RecordingSink()
    with capture, CameraFilter(capture, pipeline, [sink]) as running:
        assert running.wait(120)
    return {"clean": sample_frames(), "sink": sink, "stats": pipeline.stats.snapshot(), "enhancer": enhancer}


def lfw_pair_frame() -> np.ndarray:
    """Two LFW faces side by side on a 480x640 canvas (BGR)."""
    with open(SHARED / "faces" / "index.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["source"] == "lfw" and r["split"] == "test"][:2]
    canvas = np.full((480, 640, 3), 120, np.uint8)
    a, b = (cv2.imread(str(SHARED / "faces" / r["path"])) for r in rows)
    canvas[100:325, 20:245] = cv2.resize(a, (225, 225))
    canvas[90:390, 300:600] = cv2.resize(b, (300, 300))
    return canvas


needs_shared = pytest.mark.skipif(not (SHARED / "faces" / "index.csv").is_file(), reason="../shared/faces missing")


# -- the sample clip under --simulate bnl -------------------------------------------------------


def test_every_input_frame_yields_one_output_frame_of_the_right_size(bnl_run):
    sink = bnl_run["sink"]
    assert len(sink.frames) == len(bnl_run["clean"]) == 77
    assert all(f.shape == (480, 640, 3) and f.dtype == np.uint8 for f in sink.frames)
    assert bnl_run["stats"]["frames_processed"] == 77 and bnl_run["stats"]["dropped_frames"] == 0


def test_faces_are_restored_towards_the_clean_clip(bnl_run, detector):
    """On the aligned face crop: output closer to the clean frame than the degraded input is."""
    sink, clean = bnl_run["sink"], bnl_run["clean"]
    weight = face_mask(S)[..., None] > 0.5
    err_in, err_out, changed = [], [], []
    for i in range(0, 77, 4):
        faces = [f for f in detector.detect(clean[i], 10_000_000 + 33 * i) if f.box_px[1] < 200]
        if not faces:
            continue
        m = crop_matrix(faces[0].landmarks4_px, S)
        c, d, o = (warp_to_crop(im, m, S).astype(float) for im in (clean[i], sink.sources[i], sink.frames[i]))
        err_in.append(np.abs(d - c)[weight.repeat(3, 2)].mean())
        err_out.append(np.abs(o - c)[weight.repeat(3, 2)].mean())
        changed.append(np.abs(o - d)[weight.repeat(3, 2)].mean())
    assert len(err_in) >= 15
    assert min(changed) > 5  # the face region changed in every checked frame
    assert np.mean(err_out) < 0.25 * np.mean(err_in), (np.mean(err_out), np.mean(err_in))


def test_the_scene_is_lit_like_the_face_not_left_dark(bnl_run):
    """Away from faces the output follows the light the engine gave the face (a lit room)."""
    sink, clean = bnl_run["sink"], bnl_run["clean"]
    region = (slice(0, 480), slice(500, 640))  # the wall and window at the right, no face there
    late = range(30, 77)  # after the exposure has settled
    err_in = np.mean([np.abs(sink.sources[i][region].astype(float) - clean[i][region]).mean() for i in late])
    err_out = np.mean([np.abs(sink.frames[i][region].astype(float) - clean[i][region]).mean() for i in late])
    assert err_out < 0.4 * err_in, (err_out, err_in)


def test_stats_are_json_serialisable_with_stage_latencies(bnl_run):
    snap = json.loads(json.dumps(bnl_run["stats"]))
    assert snap["frames_enhanced"] > 60 and snap["enhance_errors"] == 0
    for stage in ("detect", "track", "align", "enhance", "exposure", "paste", "total"):
        assert 0 < snap["latency_ms"][stage]["p50"] <= snap["latency_ms"][stage]["p95"]
    assert snap["fps"] > 0


# -- passthrough --------------------------------------------------------------------------------


def test_strength_zero_is_bit_exact_passthrough(detector):
    frames = sample_frames()[:10]
    enhancer = InverseLowLight(0.5)
    controls = PipelineControls(strength=0.0)
    with FramePipeline(enhancer, detector=detector, controls=controls) as pipeline:
        for i, frame in enumerate(frames):
            result = pipeline.process(frame, i / 30)
            assert result.image_bgr is frame and not result.enhanced
        controls.strength = 0.5  # and it does act once strength is raised
        half = pipeline.process(frames[0], 11 / 30).image_bgr
        controls.strength = 1.0
        full = pipeline.process(frames[0], 12 / 30).image_bgr
    assert enhancer.calls and len(enhancer.calls) == 2
    assert 0 < np.abs(half.astype(int) - frames[0]).mean() < np.abs(full.astype(int) - frames[0]).mean()


def test_strength_zero_through_the_running_filter(detector):
    pipeline = FramePipeline(InverseLowLight(0.5), detector=detector, controls=PipelineControls(strength=0.0))
    capture = Capture(str(SAMPLE), stats=pipeline.stats)
    sink = RecordingSink()
    with capture, CameraFilter(capture, pipeline, [sink], max_frames=20) as running:
        assert running.wait(60)
    assert len(sink.frames) == 20
    for out, src, clean in zip(sink.frames, sink.sources, sample_frames()):
        assert np.array_equal(out, src) and np.array_equal(src, clean)


def test_bypass_passes_through(detector):
    frame = sample_frames()[0]
    with FramePipeline(InverseLowLight(0.5), detector=detector, controls=PipelineControls(enabled=False)) as p:
        assert p.process(frame, 0.0).image_bgr is frame


def test_frames_without_faces_pass_through_unchanged(detector):
    rng = np.random.default_rng(0)
    room = cv2.resize(sample_frames()[0][:, 440:], (640, 480))  # the wall and window, nobody there
    enhancer = InverseLowLight(0.5)
    with FramePipeline(enhancer, detector=detector) as pipeline:
        for i in range(5):
            frame = np.clip(room + rng.normal(0, 4, room.shape), 0, 255).astype(np.uint8)
            result = pipeline.process(frame, i / 30)
            assert result.image_bgr is frame and result.faces == () and not result.enhanced
    assert enhancer.calls == []


def test_after_the_face_leaves_the_scene_exposure_fades_back_to_passthrough(detector):
    frame = sample_frames()[0]
    blank = np.full_like(frame, 100)
    with FramePipeline(InverseLowLight(0.5), detector=detector) as pipeline:
        assert pipeline.process(frame, 0.0).enhanced
        first_blank = pipeline.process(blank, 1 / 30)  # tracker still holds the face for a few frames
        t, out = 1 / 30, first_blank.image_bgr
        while out is not blank and t < 30:
            t += 1 / 30
            out = pipeline.process(blank, t).image_bgr
    assert first_blank.image_bgr is not blank  # no sudden drop to dark
    assert out is blank and t < 15  # then exactly the input again


# -- several faces ------------------------------------------------------------------------------


@needs_shared
def test_all_faces_of_a_frame_are_enhanced_in_one_batch(detector):
    frame = lfw_pair_frame()
    enhancer = InverseLowLight(0.5)  # brightens 2x in linear light
    with FramePipeline(enhancer, detector=detector) as pipeline:
        result = pipeline.process(frame, 0.0)
    assert enhancer.calls[0][0] == 2 and len(enhancer.calls) == 1
    assert len(result.faces) == 2
    for face in result.faces:
        m = crop_matrix(face.landmarks4_px, S)
        before = warp_to_crop(frame, m, S)[40:100, 40:90].astype(float).mean()
        after = warp_to_crop(result.image_bgr, m, S)[40:100, 40:90].astype(float).mean()
        assert after > before + 20


# -- a bad engine or detector never stops the camera --------------------------------------------


def test_raising_engine_passes_frames_through_and_keeps_going(detector, caplog):
    frames = sample_frames()[:10]
    with caplog.at_level(logging.WARNING, logger="facecam"), FramePipeline(Flaky(0.5), detector=detector) as p:
        results = [p.process(f, i / 30) for i, f in enumerate(frames)]
        stats = p.stats.snapshot()
    assert len(results) == 10
    failed = [r for r in results if r.error]
    assert len(failed) == 5 and all("RuntimeError: engine hiccup" in r.error for r in failed)
    assert all(r.image_bgr is f for r, f in zip(results, frames) if r.error)
    assert all(r.enhanced for r in results if not r.error)
    assert stats["enhance_errors"] == 5 and stats["frames_processed"] == 10
    warnings = [r for r in caplog.records if "passed through unenhanced" in r.getMessage()]
    assert len(warnings) == 1  # rate-limited, not once per frame


@pytest.mark.parametrize(
    ("enhancer", "message"),
    [
        (ReturnsNaN(0.5), "NaN or inf"),
        (WrongShape(0.5), r"unexpected enhancer output: \(1, 64, 64, 3\) uint8 != \(1, 128, 128, 3\) uint8"),
    ],
)
def test_bad_engine_output_passes_the_frame_through(detector, enhancer, message):
    frame = sample_frames()[0]
    with FramePipeline(enhancer, detector=detector) as pipeline:
        result = pipeline.process(frame, 0.0)
    assert result.image_bgr is frame and not result.enhanced
    assert re.search(message, result.error)


def test_failing_detector_passes_the_frame_through():
    frame = sample_frames()[0]
    with FramePipeline(InverseLowLight(0.5), detector=BrokenDetector()) as pipeline:
        result = pipeline.process(frame, 0.0)
    assert result.image_bgr is frame and "MemoryError" in result.error


# -- modes and identity -------------------------------------------------------------------------


def test_mode_fixes_the_class_prior_and_identity_is_forwarded(detector):
    frame = sample_frames()[0]
    enhancer = InverseLowLight(0.5)
    identity = np.random.default_rng(0).normal(size=(128, 9, 9)).astype(np.float32)
    controls = PipelineControls(mode="auto")
    with FramePipeline(enhancer, detector=detector, controls=controls) as pipeline:
        pipeline.process(frame, 0.0)
        controls.mode = "lowlight"
        controls.identity = identity
        pipeline.process(frame, 1 / 30)
        controls.mode = "deblur"
        pipeline.process(frame, 2 / 30)
    (n0, p0, id0), (n1, p1, id1), (n2, p2, _) = enhancer.calls
    assert p0 is None and id0 is None
    assert p1.dtype == np.float32 and p1.shape == (n1, 3) and np.all(p1 == [0, 0, 1])
    assert np.array_equal(id1, identity)
    assert np.all(p2 == [1, 0, 0])


def test_controls_validate_and_name_the_values():
    controls = PipelineControls()
    with pytest.raises(ValueError, match=r"strength must be in \[0, 1\], got 1.5"):
        controls.strength = 1.5
    with pytest.raises(ValueError, match="unknown mode 'sharpen'"):
        controls.mode = "sharpen"
    with pytest.raises(ValueError, match=r"identity prior must be \(C, h, w\), got shape \(128,\)"):
        controls.identity = np.zeros(128)
    before = controls.snapshot()
    controls.strength = 0.25
    assert before.strength == 1.0 and controls.snapshot().strength == 0.25  # snapshots are immutable


def test_frame_validation_names_the_shape(detector):
    with FramePipeline(InverseLowLight(0.5), detector=detector) as pipeline, pytest.raises(
        ValueError, match=r"unexpected frame: \(480, 640\) uint8 != \(H, W, 3\) uint8"
    ):
        pipeline.process(np.zeros((480, 640), np.uint8), 0.0)


def test_the_enhancer_double_satisfies_the_protocol():
    assert isinstance(InverseLowLight(0.5), Enhancer)


# -- the running filter: a camera that disappears ------------------------------------------------


class FlakyCamera:
    """Serves sample-clip frames: ``frames`` of them, then every read fails (unplugged)."""

    def __init__(self, clip: list[np.ndarray], frames: int, opened: bool = True) -> None:
        self.clip, self.left, self.opened, self.i = clip, frames, opened, 0

    def isOpened(self) -> bool:  # noqa: N802
        return self.opened

    def read(self):
        if self.left <= 0:
            return False, None
        self.left -= 1
        self.i += 1
        time.sleep(1 / 60)
        return True, self.clip[self.i % len(self.clip)]

    def get(self, prop_id: int) -> float:
        return 30.0

    def release(self) -> None:
        self.left = 0


def test_camera_disappearing_mid_stream_keeps_output_flowing_and_reconnects(detector):
    clip = sample_frames()
    devices = [FlakyCamera(clip, 15)] + [FlakyCamera(clip, 0, opened=False)] * 3 + [FlakyCamera(clip, 10**6)]
    pipeline = FramePipeline(InverseLowLight(0.5), detector=detector)
    capture = Capture(0, opener=lambda source: devices.pop(0), backoff_s=(0.1, 0.2), stats=pipeline.stats)
    sink = RecordingSink(live=True)
    with capture, CameraFilter(capture, pipeline, [sink]) as running:
        assert running.paced
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            snap = running.stats.snapshot()
            if snap["reconnects"] == 1 and snap["frames_processed"] > 25:
                break
            time.sleep(0.05)
    assert snap["reconnects"] == 1 and snap["frames_processed"] > 25
    assert snap["frames_repeated"] > 0  # the outage was bridged by repeating the last frame
    assert len(sink.frames) == snap["frames_sent"] + snap["frames_repeated"]
    assert all(f.shape == (480, 640, 3) for f in sink.frames)
    assert not running.running


def test_max_frames_stops_a_looping_input(detector):
    pipeline = FramePipeline(InverseLowLight(0.5), detector=detector)
    capture = Capture(str(SAMPLE), loop=True, stats=pipeline.stats)
    sink = RecordingSink()
    with capture, CameraFilter(capture, pipeline, [sink], max_frames=90) as running:
        assert running.wait(120)
    assert len(sink.frames) == 90  # more than the clip holds: it looped, then stopped on count


def test_filter_requires_one_shared_stats_object(detector):
    pipeline = FramePipeline(InverseLowLight(0.5), detector=detector)
    with Capture(str(SAMPLE)) as capture, pytest.raises(ValueError, match="share one PipelineStats"):
        CameraFilter(capture, pipeline, [])
