"""How a caller stops a run from another thread."""

from __future__ import annotations

import queue
import threading

__all__ = ["CancelToken"]


class CancelToken:
    """Cancels a run from another thread: ``token.cancel()``."""

    def __init__(self) -> None:
        self._cancelled = False  # set once, under _lock
        self._lock = threading.Lock()
        self._wakeups: list[queue.SimpleQueue[object]] = []

    def cancel(self) -> None:
        """Ask the run to stop; idempotent."""
        with self._lock:
            self._cancelled = True
            for wakeup in self._wakeups:
                wakeup.put(self)

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def _subscribe(self, wakeup: queue.SimpleQueue[object]) -> None:
        with self._lock:
            self._wakeups.append(wakeup)
            if self._cancelled:
                wakeup.put(self)

    def _unsubscribe(self, wakeup: queue.SimpleQueue[object]) -> None:
        with self._lock:
            self._wakeups.remove(wakeup)
