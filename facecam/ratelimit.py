"""Rate-limited warnings: a camera filter that hits the same problem 30 times a second must say so
once, then now and again with a count, not flood the log."""

from __future__ import annotations

import logging
import threading
import time

__all__ = ["WarningThrottle"]


class WarningThrottle:
    """Logs a warning the first time a key is seen, then at most once per ``interval_s`` per key.

    Args:
        logger: where the warnings go.
        interval_s: minimum seconds between two warnings with the same key.
    """

    def __init__(self, logger: logging.Logger, *, interval_s: float = 30.0) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warn(self, key: str, message: str) -> bool:
        """Log ``message`` unless ``key`` was logged under ``interval_s`` ago; returns whether it logged."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            self._last[key] = now
            skipped = self._suppressed.pop(key, 0)
        suffix = f" ({skipped} more since the last report)" if skipped else ""
        self._logger.warning("%s%s", message, suffix)
        return True
