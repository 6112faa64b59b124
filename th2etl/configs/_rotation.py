"""A log file rotated by size that several processes may write at once.

``LOG_DIR``'s files are written by every th2etl process pointed at it (the service, ``th2etl
run``, ...); the process executor's workers send their records to their owner, which writes
them (see :mod:`th2etl.executors`), so a file has one writer per process. Processes agree
through an exclusive ``flock`` on ``<file>.lock`` held while a record is written: the writer
first reopens the file if another process rotated it meanwhile (the path names another inode),
rotates when the record would pass ``max_bytes`` (``file`` -> ``file.1`` -> ... ->
``file.<backup_count>``, the oldest dropped), then appends. No record is lost or torn, and no
file grows past ``max_bytes`` by more than one record. Without ``fcntl`` (Windows) the lock is
per process only.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["RotatingLogFile"]


class RotatingLogFile(logging.FileHandler):
    """Appends to ``path``, rotating it by size; ``max_bytes`` 0 never rotates."""

    def __init__(self, path: Path, max_bytes: int, backup_count: int) -> None:
        super().__init__(path, encoding="utf-8")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backup_count = backup_count
        self._lock_file = open(f"{path}.lock", "a")  # noqa: SIM115 - held for the handler's life

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        if fcntl is None:  # pragma: no cover
            yield
            return
        fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record) + self.terminator
            with self._exclusive():
                stream = self._follow_rotation()
                if self.max_bytes > 0:
                    size = os.fstat(stream.fileno()).st_size
                    if size > 0 and size + len(text.encode("utf-8")) > self.max_bytes:
                        stream = self._rotate(stream)
                stream.write(text)
                stream.flush()
        except Exception:
            self.handleError(record)

    def _follow_rotation(self) -> TextIO:
        """The open file, reopened when another process rotated it away."""
        stream = self.stream
        try:
            current: int | None = os.stat(self.path).st_ino
        except FileNotFoundError:
            current = None
        if stream is None or current != os.fstat(stream.fileno()).st_ino:
            if stream is not None:
                stream.close()
            stream = self.stream = self._open()
        return stream

    def _rotate(self, stream: TextIO) -> TextIO:
        stream.close()
        if self.backup_count > 0:
            for number in range(self.backup_count - 1, 0, -1):
                older = Path(f"{self.path}.{number}")
                if older.exists():
                    older.replace(f"{self.path}.{number + 1}")
            self.path.replace(f"{self.path}.1")
            self.stream = self._open()
        else:
            self.stream = open(self.path, "w", encoding="utf-8")  # noqa: SIM115
        return self.stream

    def close(self) -> None:
        with self.lock or contextlib.nullcontext():
            super().close()
            self._lock_file.close()
