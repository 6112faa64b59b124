"""The threads a run's blocs execute in, and how the engine learns that an attempt ended.

The engine's own pool is leaner than :class:`concurrent.futures.ThreadPoolExecutor`: no
``Future`` per attempt, no semaphore, the outcome written straight into the attempt's
:class:`Ticket`. A run of many small blocs pays this once per bloc, and its cost is measured
against a bare ``ThreadPoolExecutor`` by ``scripts/bench_engine.py``. A run given its own
``executor=`` goes through :func:`submit_to`, with a ``Future`` as usual.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

from th2etl.pipelines.streams import Stopped

__all__ = ["Pool", "Ticket", "submit_to"]


class Ticket:
    """One attempt of one bloc: ``done`` once its call returned or raised (``error``); then
    ``wake()`` is called, from the thread that ran it."""

    __slots__ = ("done", "error", "wake")

    def __init__(self, wake: Callable[[], None]) -> None:
        self.done = False
        self.error: BaseException | None = None
        self.wake = wake

    def run(self, fn: Callable[..., None], args: tuple[Any, ...]) -> None:
        try:
            fn(*args)
        except BaseException as exc:
            self.error = exc
        self.done = True


class Pool:
    """Threads named ``{prefix}_{n}``, started when no idle one can take an attempt, at most
    ``limit`` (later attempts queue); :meth:`shutdown` lets them end once idle. A thread whose
    attempt never returns (Python cannot kill a thread) is left running, as with
    ``ThreadPoolExecutor``; the interpreter waits for it at exit."""

    def __init__(self, limit: int, prefix: str) -> None:
        self._limit = limit
        self._prefix = prefix
        self._work: queue.SimpleQueue[tuple[Ticket, Callable[..., None], tuple[Any, ...]] | None]
        self._work = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads that will take the next item without one started for it
        self._threads = 0

    def submit(self, ticket: Ticket, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` in a thread, recording its outcome in ``ticket``."""
        with self._lock:
            start = not self._idle and self._threads < self._limit
            if self._idle:
                self._idle -= 1
            number = self._threads
            self._threads += start
        self._work.put((ticket, fn, args))
        if start:
            name = f"{self._prefix}_{number}"
            threading.Thread(target=self._serve, name=name, daemon=False).start()

    def _serve(self) -> None:
        work, lock = self._work, self._lock
        while (item := work.get()) is not None:
            ticket, fn, args = item
            try:
                fn(*args)
            except BaseException as exc:
                ticket.error = exc
            ticket.done = True
            del item, fn, args
            with lock:  # idle again before the engine hears of the end, so it reuses this thread
                self._idle += 1
            ticket.wake()
            del ticket

    def shutdown(self) -> None:
        """Forget attempts not started yet, and let every thread end once idle."""
        with self._lock:
            while True:
                try:
                    self._work.get_nowait()
                except queue.Empty:
                    break
            for _ in range(self._threads):
                self._work.put(None)


def submit_to(executor: Executor, ticket: Ticket, fn: Callable[..., None], *args: Any) -> None:
    """Run ``fn(*args)`` on a caller's executor, recording its outcome in ``ticket`` (an
    attempt the executor never ran, e.g. cancelled at its shutdown, ends stopped)."""

    def settle(future: Future[None]) -> None:
        if not ticket.done:
            ticket.error = None if future.cancelled() else future.exception()
            if ticket.error is None:
                ticket.error = Stopped()
            ticket.done = True
        ticket.wake()

    executor.submit(ticket.run, fn, args).add_done_callback(settle)
