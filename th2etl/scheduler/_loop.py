"""The loop under ``CronScheduler.start()`` and ``SchedulerManager.start()``: tick, then sleep
until the next due time, until ``stop()``, SIGINT or SIGTERM."""

from __future__ import annotations

import contextlib
import logging
import select
import signal
import socket
import threading
from collections.abc import Callable
from datetime import datetime
from types import FrameType
from typing import Any

from th2etl.clock import Clock

logger = logging.getLogger("th2etl.scheduler")

MAX_SLEEP = 60.0
"""The loop re-reads the clock at least this often (seconds), so a clock jump is noticed."""
BACKOFF_START, BACKOFF_MAX = 1.0, 30.0
"""Retry delays after a failure: 1 s, doubling, at most 30 s."""


def backoff(failures: int) -> float:
    """Seconds to wait after ``failures`` consecutive failures (``failures`` >= 1)."""
    return float(min(BACKOFF_START * 2.0 ** (failures - 1), BACKOFF_MAX))


class Waker:
    """What the loop sleeps on: a socket pair, woken by ``stop()`` from any thread and, through
    ``signal.set_wakeup_fd``, by a signal delivered to any thread. (Waiting on a lock instead
    would leave a SIGTERM that the OS hands to another thread unhandled until the wait ends.)"""

    def __init__(self) -> None:
        self._read, self._write = socket.socketpair()
        self._read.setblocking(False)
        self._write.setblocking(False)

    @property
    def fileno(self) -> int:
        return self._write.fileno()

    def wait(self, timeout: float) -> None:
        readable, _, _ = select.select([self._read], [], [], timeout)
        if readable:
            with contextlib.suppress(OSError):
                while self._read.recv(4096):
                    pass

    def wake(self) -> None:
        with contextlib.suppress(OSError):  # full (already woken) or closed (already stopped)
            self._write.send(b"\0")

    def close(self) -> None:
        self._read.close()
        self._write.close()


class Loop:
    """``start()``/``stop()`` around ``tick(now)`` and ``next_due_time()``."""

    clock: Clock
    stop_grace: float

    def __init__(self) -> None:
        self._stop_requested = False
        self._waker: Waker | None = None
        self._started = False
        self._attached_to: Any = None
        self._signal: int | None = None

    def tick(self, now: datetime) -> list[Any]:
        raise NotImplementedError

    def next_due_time(self) -> datetime | None:
        raise NotImplementedError

    def _on_start(self, now: datetime) -> None:
        """Prepare (e.g. read the database) before the first tick."""

    def _on_stop(self, grace: float) -> None:
        """Wait up to ``grace`` seconds for running pipelines, then cancel the rest."""

    @property
    def running(self) -> bool:
        """True between ``start()`` and the end of ``stop()``."""
        return self._started

    def start(self, *, handle_signals: bool = True) -> None:
        """Run until :meth:`stop`, SIGINT or SIGTERM (handled when called in the main thread).

        On a fake clock (one with ``runs_inline``), attach to it and return at once.
        """
        if getattr(self.clock, "runs_inline", False) and hasattr(self.clock, "attach"):
            self._on_start(self.clock.now())
            self._started = True
            self.clock.attach(self)
            self._attached_to = self.clock
            return
        # A stop() that came before start() is honoured; the request is reset on the way out.
        self._waker = waker = Waker()
        self._started = True
        self._signal = None
        restore = self._install_signals(waker) if handle_signals else None
        try:
            self._on_start(self.clock.now())
            due = self.next_due_time()
            logger.info(
                "%s started; next run due %s",
                type(self).__name__,
                "never (nothing scheduled)" if due is None else due.isoformat(),
            )
            self._loop(waker)
            if self._signal is not None:
                name = signal.Signals(self._signal).name
                logger.info("received %s: stopping (grace %.0fs)", name, self.stop_grace)
        finally:
            if restore is not None:
                restore()
            self._on_stop(self.stop_grace)
            self._waker = None
            waker.close()
            self._started = False
            self._stop_requested = False

    def _loop(self, waker: Waker) -> None:
        failures = 0
        while not self._stop_requested:
            try:
                self.tick(self.clock.now())
                failures = 0
            except Exception:  # never let one bad tick end the scheduler
                failures += 1
                delay = backoff(failures)
                logger.exception("scheduler tick failed; trying again in %.0fs", delay)
                waker.wait(delay)
                continue
            if self._stop_requested:
                break
            due = self.next_due_time()
            delay = MAX_SLEEP if due is None else (due - self.clock.now()).total_seconds()
            waker.wait(min(max(delay, 0.0005), MAX_SLEEP))

    def stop(self, grace: float | None = None) -> None:
        """Ask ``start()`` to return; running pipelines get ``grace`` seconds (default
        ``stop_grace``) to finish before they are cancelled. Safe from any thread."""
        if grace is not None:
            self.stop_grace = grace
        self._stop_requested = True
        waker = self._waker
        if waker is not None:
            waker.wake()
        if self._attached_to is not None:
            self._attached_to.detach(self)
            self._attached_to = None
            self._on_stop(self.stop_grace)
            self._started = False
            self._stop_requested = False

    def _install_signals(self, waker: Waker) -> Callable[[], None] | None:
        if threading.current_thread() is not threading.main_thread():
            return None

        def handler(signum: int, frame: FrameType | None) -> None:
            # Only plain assignments here: no locks (the signal may interrupt this thread
            # while it holds one) and no logging (which takes locks).
            self._signal = signum
            self._stop_requested = True

        previous = {signum: signal.signal(signum, handler) for signum in _SIGNALS}
        previous_fd = signal.set_wakeup_fd(waker.fileno, warn_on_full_buffer=False)

        def restore() -> None:
            signal.set_wakeup_fd(previous_fd)
            for signum, old in previous.items():
                signal.signal(signum, old)

        return restore


_SIGNALS = (signal.SIGINT, signal.SIGTERM)
