"""Slow work off the Qt thread: a one-thread job queue whose results come back as a Qt signal.

Opening a camera, loading an engine, detecting faces for enrolment or computing the identity prior
take from milliseconds to seconds; the UI submits them here and gets ``on_done(result, error)``
called on the Qt thread. Jobs run one at a time, in order, so "open camera B" never races "open
camera A". Jobs come from user actions (and enrolment submits only while idle), so the queue stays
short.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from PyQt6.QtCore import QObject, pyqtSignal, pyqtSlot

__all__ = ["JobRunner"]

log = logging.getLogger(__name__)

Callback = Callable[[Any, BaseException | None], None]
_STOP = object()


class JobRunner(QObject):
    """Runs callables on one background thread; each outcome is delivered on the Qt thread.

    Args:
        name: the thread's name (shows in thread dumps).
        parent: Qt parent.
    """

    _finished = pyqtSignal(object, object, object)  # callback, result, error

    def __init__(self, name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._pending = 0
        self._finished.connect(self._deliver)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        """Whether a submitted job has not reported back yet."""
        return self._pending > 0

    def submit(self, fn: Callable[[], Any], on_done: Callback | None = None) -> None:
        """Queue ``fn``; ``on_done(result, None)`` or ``on_done(None, exception)`` follows on the Qt thread."""
        self._pending += 1
        self._jobs.put((fn, on_done))

    def _run(self) -> None:
        while (item := self._jobs.get()) is not _STOP:
            fn, on_done = item
            try:
                result, error = fn(), None
            except Exception as exc:  # handed to on_done (or logged), never lost, never kills the thread
                result, error = None, exc
            self._finished.emit(on_done, result, error)

    @pyqtSlot(object, object, object)
    def _deliver(self, on_done: Callback | None, result: Any, error: BaseException | None) -> None:
        self._pending -= 1
        if on_done is not None:
            on_done(result, error)
        elif error is not None:
            log.warning("background job failed: %s: %s", type(error).__name__, error)

    def shutdown(self, timeout_s: float = 10.0) -> bool:
        """Finish the queued jobs, then stop the thread; False if it is still busy after ``timeout_s``."""
        self._jobs.put(_STOP)
        self._thread.join(timeout_s)
        return not self._thread.is_alive()
