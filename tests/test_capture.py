"""Capture and the frame hand-off queue: latest-frame policy, files, looping, lost cameras."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from facecam.capture import Capture, CaptureError, is_live, parse_source
from facecam.framequeue import END_OF_STREAM, Empty, FrameQueue
from facecam.stats import PipelineStats

SAMPLE = Path(__file__).resolve().parent.parent / "assets" / "sample" / "webcam_sample.mkv"
SAMPLE_FRAMES = 77


# -- FrameQueue ---------------------------------------------------------------------------------


def test_drop_stale_queue_keeps_newest_and_counts_drops():
    drops = []
    q = FrameQueue(2, drop_stale=True, on_drop=drops.append)
    for i in range(5):
        assert q.put(i)
    assert [q.get(0.1), q.get(0.1)] == [3, 4]
    assert q.dropped == 3 and sum(drops) == 3
    with pytest.raises(Empty):
        q.get(0.01)


def test_lossless_queue_waits_for_room_and_gives_up_on_stop():
    q = FrameQueue(1, drop_stale=False)
    q.put("a")
    stop = threading.Event()
    threading.Timer(0.05, stop.set).start()
    assert q.put("b", stop=stop) is False  # full, and stopped while waiting
    assert q.get(0.1) == "a" and q.dropped == 0


def test_lossless_queue_unblocks_when_consumer_takes():
    q = FrameQueue(1, drop_stale=False)
    q.put(1)
    threading.Timer(0.05, lambda: q.get(1.0)).start()
    assert q.put(2, stop=threading.Event()) is True
    assert q.get(1.0) == 2


def test_get_latest_discards_older_but_never_end_of_stream():
    q = FrameQueue(3, drop_stale=True)
    q.put(1), q.put(2), q.put(3)
    assert q.get_latest() == 3 and q.dropped == 2
    assert q.get_latest() is None
    q.put(4), q.put(END_OF_STREAM)
    assert q.get_latest() is END_OF_STREAM


def test_queue_rejects_zero_size():
    with pytest.raises(ValueError, match="maxsize must be >= 1, got 0"):
        FrameQueue(0)


# -- source parsing -----------------------------------------------------------------------------


def test_parse_source_and_liveness():
    assert parse_source("0") == 0 and parse_source("/dev/video2") == "/dev/video2"
    assert is_live(0) and is_live("/dev/video2") and is_live("rtsp://cam/1")
    assert not is_live("clip.mp4")


# -- files --------------------------------------------------------------------------------------


def _drain(cap: Capture, limit: int = 1000) -> list:
    frames = []
    while len(frames) < limit:
        item = cap.get(5.0)
        if item is END_OF_STREAM:
            break
        frames.append(item)
    return frames


def test_file_is_read_lossless_to_the_end():
    with Capture(str(SAMPLE)) as cap:
        assert (cap.width, cap.height, cap.fps) == (640, 480, 30.0)
        assert not cap.live and not cap.realtime
        frames = _drain(cap.start())
    assert len(frames) == SAMPLE_FRAMES
    assert [f.index for f in frames] == list(range(SAMPLE_FRAMES))
    assert frames[10].t_s == pytest.approx(10 / 30)
    assert all(f.image_bgr.shape == (480, 640, 3) and f.image_bgr.dtype == np.uint8 for f in frames)
    assert cap.stats.value("frames_captured") == SAMPLE_FRAMES and cap.stats.value("dropped_frames") == 0


def test_file_loops_when_asked_and_transform_is_applied():
    with Capture(str(SAMPLE), loop=True, transform=lambda im: 255 - im) as cap:
        frames = _drain(cap.start(), limit=SAMPLE_FRAMES + 10)
    assert len(frames) == SAMPLE_FRAMES + 10
    assert frames[-1].index == SAMPLE_FRAMES + 9
    with Capture(str(SAMPLE)) as plain:
        first = plain.start().get(5.0).image_bgr
    np.testing.assert_array_equal(frames[0].image_bgr, 255 - first)
    np.testing.assert_array_equal(frames[SAMPLE_FRAMES].image_bgr, 255 - first)  # back at the start


def test_missing_file_names_the_path():
    with pytest.raises(CaptureError, match="video file not found: nowhere.mp4"):
        Capture("nowhere.mp4")


# -- live sources (fake devices) ----------------------------------------------------------------


class FakeCamera:
    """A device that delivers ``frames`` frames filled with ``value``, then fails every read."""

    def __init__(self, value: int, frames: int, size: tuple[int, int] = (48, 64), opened: bool = True):
        self.value, self.frames, self.size, self.opened = value, frames, size, opened
        self.released = False

    def isOpened(self) -> bool:  # noqa: N802
        return self.opened

    def read(self):
        if self.frames <= 0 or self.released:
            return False, None
        self.frames -= 1
        time.sleep(0.002)  # a device delivers at some rate
        return True, np.full((*self.size, 3), self.value, np.uint8)

    def get(self, prop_id: int) -> float:
        return 0.0  # unknown frame rate

    def release(self) -> None:
        self.released = True


class FakeOpener:
    """Hands out the given devices in order, then devices that do not open."""

    def __init__(self, *devices: FakeCamera):
        self.devices = list(devices)
        self.calls = 0

    def __call__(self, source):
        self.calls += 1
        return self.devices.pop(0) if self.devices else FakeCamera(0, 0, opened=False)


def test_live_source_hands_over_the_latest_frame():
    counter = iter(range(10**6))

    class Counting(FakeCamera):
        def read(self):
            time.sleep(0.002)
            return True, np.full((8, 8, 3), next(counter) % 256, np.uint8)

    with Capture(0, opener=lambda s: Counting(0, 0)) as cap:
        assert cap.live and cap.realtime and cap.fps == 30.0
        cap.start()
        time.sleep(0.2)  # a slow consumer
        frame = cap.get(1.0)
    assert frame.index > 1  # not the first frame: the backlog was dropped
    assert cap.stats.value("dropped_frames") > 0


def test_camera_that_disappears_is_reopened_with_backoff():
    stats = PipelineStats()
    # first device: 5 frames then gone; two failed reopen attempts; then a new device (other size)
    opener = FakeOpener(
        FakeCamera(10, 5), FakeCamera(0, 0, opened=False), FakeCamera(0, 0, opened=False),
        FakeCamera(200, 10**6, size=(96, 128)),
    )
    with Capture(0, opener=opener, backoff_s=(0.01, 0.04), queue_size=1, stats=stats) as cap:
        cap.start()
        deadline = time.monotonic() + 10.0
        frame = cap.get(5.0)
        while frame.image_bgr[0, 0, 0] != 200 and time.monotonic() < deadline:
            frame = cap.get(5.0)
    assert frame.image_bgr[0, 0, 0] == 200  # frames from the reconnected device
    assert frame.image_bgr.shape == (48, 64, 3)  # resized to the size the stream started with
    assert stats.value("reconnects") == 1
    assert opener.calls == 4  # initial open + two failures + success
    assert stats.snapshot()["source_connected"] is False  # closed now


def test_camera_that_does_not_open_raises():
    with pytest.raises(CaptureError, match="cannot read from camera 3"):
        Capture(3, opener=lambda s: FakeCamera(0, 0, opened=False))


def test_a_driver_that_raises_on_read_is_treated_as_unplugged():
    class Raising(FakeCamera):
        def read(self):
            if self.frames <= 0:
                raise cv2.error("VIDIOC_DQBUF: No such device")
            return super().read()

    stats = PipelineStats()
    opener = FakeOpener(Raising(10, 3), FakeCamera(200, 10**6))
    with Capture(0, opener=opener, backoff_s=(0.01, 0.02), stats=stats) as cap:
        cap.start()
        deadline = time.monotonic() + 10.0
        frame = cap.get(5.0)
        while frame.image_bgr[0, 0, 0] != 200 and time.monotonic() < deadline:
            frame = cap.get(5.0)
    assert frame.image_bgr[0, 0, 0] == 200 and stats.value("reconnects") == 1
