"""A bounded hand-off queue between the filter's threads.

Live video wants the newest frame, not every frame: with ``drop_stale=True`` a put into a full
queue throws the oldest item away (and counts it) instead of blocking the producer. Offline work
(a video file to a video file) wants every frame: with ``drop_stale=False`` a put waits for room,
giving back-pressure, but still wakes up when the stop event is set.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["FrameQueue", "Empty", "END_OF_STREAM"]

T = TypeVar("T")

#: Put by a producer after its last item; consumers pass it on and finish.
END_OF_STREAM = object()


class Empty(Exception):
    """No item arrived before the timeout."""


class FrameQueue(Generic[T]):
    """Bounded FIFO with a drop-oldest (live) or blocking (lossless) put.

    Args:
        maxsize: capacity (>= 1); 1 = always the latest frame only.
        drop_stale: True drops the oldest item when full; False makes ``put`` wait for room.
        on_drop: called with the number of items just discarded (e.g. to count dropped frames).
    """

    def __init__(
        self, maxsize: int = 1, *, drop_stale: bool = True, on_drop: Callable[[int], None] | None = None
    ) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self.drop_stale = drop_stale
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._on_drop = on_drop
        self.dropped = 0

    def _drop(self, n: int) -> None:
        if n:
            self.dropped += n
            if self._on_drop is not None:
                self._on_drop(n)

    def put(self, item: T, *, stop: threading.Event | None = None) -> bool:
        """Add ``item``; returns False only if ``stop`` was set while waiting for room (item not added)."""
        with self._cond:
            if self.drop_stale:
                while len(self._items) >= self.maxsize:
                    self._items.popleft()
                    self._drop(1)
            else:
                while len(self._items) >= self.maxsize:
                    if stop is not None and stop.is_set():
                        return False
                    self._cond.wait(0.05)
            self._items.append(item)
            self._cond.notify_all()
            return True

    def get(self, timeout_s: float) -> T:
        """Oldest item, waiting up to ``timeout_s`` seconds; raises :class:`Empty` on timeout."""
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self._items), timeout_s):
                raise Empty
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def get_latest(self) -> T | None:
        """Newest item without waiting, discarding older ones (counted as dropped); ``None`` if empty.

        An :data:`END_OF_STREAM` marker is never discarded: it is returned once everything before it
        is gone.
        """
        with self._cond:
            if not self._items:
                return None
            if any(it is END_OF_STREAM for it in self._items):
                self._items.clear()
                self._cond.notify_all()
                return END_OF_STREAM  # type: ignore[return-value]
            item = self._items.pop()
            self._drop(len(self._items))
            self._items.clear()
            self._cond.notify_all()
            return item

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
