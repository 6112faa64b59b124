"""Batches in flight: the bounded pipe between two blocs that run together, the spill a bloc
that starts later reads from, and the two ends a bloc's attempt sees (its input, its output).

The rules these parts implement are stated once, in :mod:`th2etl.pipelines.engine`.
"""

from __future__ import annotations

import collections
import pickle
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from th2etl.exceptions import BlocError
from th2etl.types import Rows

if TYPE_CHECKING:
    from th2etl.pipelines.context import RunContext

__all__ = ["Input", "Output", "Pipe", "Spill", "SpillFolder", "Stopped"]


class Stopped(BaseException):
    """Raised in a bloc's thread when its attempt must end: the run was cancelled, the attempt
    timed out, a bloc it streams with failed, or an earlier stage failed.

    A BaseException, so that a bloc's ``except Exception`` does not swallow it; files and
    transactions opened with ``with`` are still closed and rolled back on the way out.
    """


class Pipe:
    """A bounded queue of batches from one producing attempt to one consuming attempt.

    ``put`` blocks while ``depth`` batches wait (back-pressure); ``get`` blocks while none does.
    ``stop`` makes both ends raise :class:`Stopped`; ``abandon`` (the consumer stopped on its
    own) lets the producer carry on, its batches dropped.
    """

    __slots__ = ("_abandoned", "_closed", "_cond", "_depth", "_failed", "_items", "_stopped")

    def __init__(self, depth: int) -> None:
        self._items: collections.deque[Rows] = collections.deque()
        self._cond = threading.Condition(threading.Lock())
        self._depth = depth
        self._closed = self._failed = self._stopped = self._abandoned = False

    def put(self, batch: Rows) -> None:
        with self._cond:
            while len(self._items) >= self._depth and not (self._stopped or self._abandoned):
                self._cond.wait()
            if self._stopped:
                raise Stopped
            if not self._abandoned:
                self._items.append(batch)
                self._cond.notify_all()

    def close(self, *, failed: bool = False) -> None:
        with self._cond:
            self._closed = True
            self._failed = failed
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._items.clear()
            self._cond.notify_all()

    def abandon(self) -> None:
        with self._cond:
            self._abandoned = True
            self._items.clear()
            self._cond.notify_all()

    def __iter__(self) -> Iterator[Rows]:
        while True:
            with self._cond:
                while not self._items and not (self._closed or self._stopped or self._abandoned):
                    self._cond.wait()
                if self._stopped or self._abandoned or (self._failed and not self._items):
                    raise Stopped
                if not self._items:
                    return
                batch = self._items.popleft()
                self._cond.notify_all()
            yield batch


class SpillFolder:
    """The run's temporary folder for spills, made on first use, removed by :meth:`cleanup`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._folder: tempfile.TemporaryDirectory[str] | None = None

    def new_file(self, name: str) -> IO[bytes]:
        with self._lock:
            if self._folder is None:
                self._folder = tempfile.TemporaryDirectory(prefix="th2etl-spill-")
            path = self._folder.name
        return tempfile.NamedTemporaryFile(
            dir=path, prefix=f"{name}.", suffix=".spill", delete=False
        )

    def cleanup(self) -> None:
        with self._lock:
            if self._folder is not None:
                self._folder.cleanup()
                self._folder = None


class Spill:
    """One bloc's output batches, kept for the blocs that read them after it finished.

    The first ``memory_rows`` rows stay in memory (small outputs never touch the disk); past
    that, every batch is pickled to a file in the run's :class:`SpillFolder`. Written by one
    attempt; read, once complete, by any number of readers, each from the start.
    """

    def __init__(self, name: str, folder: SpillFolder, memory_rows: int) -> None:
        self.name = name
        self._folder = folder
        self._memory_rows = memory_rows
        self._held: list[Rows] = []
        self._rows = 0
        self._file: IO[bytes] | None = None
        self._path: Path | None = None
        self.complete = False

    def write(self, batch: Rows) -> None:
        if self.complete:
            return  # a retry of its stream runs this bloc again: the first output stands
        if self._file is None and self._rows + len(batch) <= self._memory_rows:
            self._held.append(batch)
            self._rows += len(batch)
            return
        if self._file is None:
            self._file = self._folder.new_file(self.name)
            self._path = Path(self._file.name)
            for held in self._held:
                pickle.dump(held, self._file, protocol=pickle.HIGHEST_PROTOCOL)
            self._held = []
        pickle.dump(batch, self._file, protocol=pickle.HIGHEST_PROTOCOL)

    def finish(self) -> None:
        if self._file is not None:
            self._file.close()
        self.complete = True

    def reset(self) -> None:
        """Forget an incomplete output (its attempt failed), ready to be written again."""
        if self.complete:
            return
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._path is not None:
            self._path.unlink(missing_ok=True)
            self._path = None
        self._held = []
        self._rows = 0

    def read(self) -> Iterator[Rows]:
        if self._path is None:
            return iter(self._held)
        return self._read(self._path)

    @staticmethod
    def _read(path: Path) -> Iterator[Rows]:
        with path.open("rb") as handle:
            while True:
                try:
                    batch: Rows = pickle.load(handle)
                except EOFError:
                    return
                yield batch


class Input:
    """What a bloc's ``stream`` iterates: its sources' batches in order, then the end, which
    waits until every earlier stage has finished and raises :class:`Stopped` unless all
    succeeded (``at_end``); counts rows and batches as the bloc takes them, and raises
    :class:`Stopped` once the attempt's context says to stop."""

    def __init__(
        self,
        sources: list[Callable[[], Iterator[Rows]]],
        at_end: Callable[[RunContext], None],
        context: RunContext,
    ) -> None:
        self._sources = sources
        self._at_end = at_end
        self._context = context
        self.rows = 0
        self.batches = 0
        self.fused: Any = None  # the source bloc, when the engine fused it into this one

    def skip(self, rows: int) -> None:
        """The bloc read its fused source itself (``rows`` of them): end the input here, as
        iterating it to the end would (waiting for the earlier stages, raising if one failed)."""
        self.rows += rows
        self.batches += 1
        self._at_end(self._context)

    def __iter__(self) -> Iterator[Rows]:
        context = self._context
        for source in self._sources:
            for batch in source():
                if context.cancel_requested:
                    raise Stopped
                self.rows += len(batch)
                self.batches += 1
                yield batch
        self._at_end(context)


class Output:
    """Where a bloc's output batches go: each checked, cut to ``batch_size``, counted, then
    handed to the consumers' pipes, the spill and the kept rows."""

    def __init__(
        self,
        where: str,
        batch_size: int,
        pipes: list[Pipe],
        spill: Spill | None,
        keep: int | None,
        per_batch: bool,
    ) -> None:
        self._where = where
        self._size = batch_size
        self._per_batch = per_batch
        self.pipes = pipes
        self.spill = spill
        self._keep = keep  # rows to keep at most (None: every row)
        self.kept: Rows | None = [] if keep is None or keep > 0 else None
        self.rows = 0
        self.batches = 0
        self._calls = 0

    def emit(self, batch: Any) -> None:
        self._calls += 1
        self._check(batch)
        size = self._size
        if len(batch) <= size:
            self._send(batch)
        else:
            for start in range(0, len(batch), size):
                self._send(batch[start : start + size])

    def _check(self, batch: Any) -> None:
        shown = f" for batch {self._calls}" if self._per_batch else ""
        if not isinstance(batch, list):
            raise BlocError(
                f"{self._where} returned {type(batch).__name__}{shown}; run() must return a "
                "list of dicts (return [] for no rows)"
            )
        if batch and not isinstance(batch[0], dict):
            raise BlocError(
                f"{self._where} returned a list of {type(batch[0]).__name__}{shown}; run() must "
                "return a list of dicts"
            )

    def _send(self, batch: Rows) -> None:
        if not batch:
            return
        self.rows += len(batch)
        self.batches += 1
        if self.kept is not None:
            if self._keep is not None and self.rows > self._keep:
                self.kept = None  # too many rows to keep: result.outputs will say so
            else:
                self.kept.extend(batch)
        if self.spill is not None:
            self.spill.write(batch)
        for pipe in self.pipes:
            pipe.put(batch)

    def close(self, *, failed: bool) -> None:
        if self.spill is not None:
            if failed:
                self.spill.reset()
            else:
                self.spill.finish()
        for pipe in self.pipes:
            pipe.close(failed=failed)
