"""Retention: old runs are deleted, with their bloc records, logs and output folders.

* **What goes.** A run that has ended (succeeded, failed, cancelled, skipped, abandoned) and
  *started* before the cut-off (now minus the age): its row, its bloc runs, its log (stored
  with the row), and its output folder ``<pipelines_logs_dir>/<scheduler>/<YYYYmmdd_HHMMSS>``
  when the scheduled time is before the cut-off. Queued and running runs are never deleted,
  nor the folder of a tick that has one.
* **What stays.** Which scheduler ticks ran: (scheduler, scheduled time, attempt, final
  status) in the compact ``th2etl_ticks`` table. A pruned tick stays taken, so neither the
  scheduler's catch-up nor a backfill runs it again.
* **How.** Batches of ``batch_size`` runs (default 500), each one short transaction with a
  pause (``pause``, 20 ms) after it, so the run tables are never locked for long and new runs
  are recorded meanwhile.
* **When.** ``th2etl prune --older-than 30d`` (``--dry-run`` counts only), and the service
  (``th2etl``, ``th2etl --serve-api``) once a day when ``TH2ETL_RUN_RETENTION_DAYS`` is set.
  Time is an input: :func:`prune` takes ``now``; :class:`DailyRetention` takes a clock.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from th2etl.clock import Clock, SystemClock
from th2etl.exceptions import Th2etlError, ValidationError

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_PAUSE",
    "DailyRetention",
    "PruneResult",
    "parse_age",
    "prune",
]

logger = logging.getLogger("th2etl.retention")

DEFAULT_BATCH_SIZE = 500
DEFAULT_PAUSE = 0.02
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_AGE = re.compile(r"\s*(\d+)\s*([smhdw])\s*")
_STAMP = re.compile(r"(\d{8}_\d{6})(?:_\d+)?")


def parse_age(text: str, what: str = "--older-than") -> timedelta:
    """``30d``, ``12h``, ``2w``, ``90m`` or ``45s`` as a timedelta; a clear error otherwise."""
    match = _AGE.fullmatch(text or "")
    if match is None or int(match[1]) == 0:
        raise ValidationError(
            f"{what} {text!r} is not an age; write a whole number above 0 and a unit "
            "(s, m, h, d or w), e.g. 30d, 12h, 2w or 90m"
        )
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


@dataclass(frozen=True)
class PruneResult:
    """What :func:`prune` deleted (or, in a dry run, would delete)."""

    cutoff: datetime
    runs: int
    ticks: int
    """Of the runs, the scheduler ticks kept in ``th2etl_ticks``."""
    folders: list[Path] = field(default_factory=list)
    dry_run: bool = False

    def describe(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        return (
            f"{verb} {self.runs} run(s) that ended and started before "
            f"{self.cutoff.astimezone(UTC):%Y-%m-%d %H:%M:%SZ} (with their bloc records and "
            f"logs) and {len(self.folders)} output folder(s); {self.ticks} scheduler tick(s) "
            "are kept as taken"
        )


def prune(
    storage: Any,
    older_than: timedelta,
    *,
    now: datetime,
    logs_dir: Path | None = None,
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    pause: float = DEFAULT_PAUSE,
) -> PruneResult:
    """Delete what is older than ``older_than`` at ``now``, as the module docstring says."""
    if older_than <= timedelta(0):
        raise ValidationError(f"older_than must be positive, got {older_than}")
    cutoff = now - older_than
    folders = _old_folders(storage, logs_dir, cutoff)
    if dry_run:
        runs, ticks = storage.count_prunable_runs(cutoff)
        return PruneResult(cutoff, runs, ticks, folders, dry_run=True)
    runs = ticks = 0
    while True:
        deleted, kept = storage.prune_runs_batch(cutoff, batch_size)
        runs, ticks = runs + deleted, ticks + kept
        if deleted < batch_size:
            break
        time.sleep(pause)  # room for the writes of running pipelines between two batches
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    return PruneResult(cutoff, runs, ticks, folders)


def _old_folders(storage: Any, logs_dir: Path | None, cutoff: datetime) -> list[Path]:
    """Run folders whose scheduled time is before ``cutoff`` and whose tick is not active."""
    if logs_dir is None or not logs_dir.is_dir():
        return []
    active = {
        (run.scheduler_name, run.scheduled_time.astimezone(UTC).strftime("%Y%m%d_%H%M%S"))
        for run in storage.active_runs()
        if run.scheduler_name and run.scheduled_time
    }
    limit = cutoff.astimezone(UTC).strftime("%Y%m%d_%H%M%S")
    found = []
    for scheduler in sorted(p for p in logs_dir.iterdir() if p.is_dir()):
        for folder in sorted(p for p in scheduler.iterdir() if p.is_dir()):
            match = _STAMP.fullmatch(folder.name)
            if match and match[1] < limit and (scheduler.name, match[1]) not in active:
                found.append(folder)
    return found


class DailyRetention:
    """Prunes runs older than ``days`` once a day in a daemon thread, with a storage of its
    own (``open_storage()``, closed after each pass); a failed pass is logged and retried the
    next day. ``stop()`` ends the thread."""

    def __init__(
        self,
        open_storage: Callable[[], Any],
        days: int,
        *,
        logs_dir: Path | None = None,
        clock: Clock | None = None,
        interval: timedelta = timedelta(days=1),
    ) -> None:
        self.open_storage = open_storage
        self.age = timedelta(days=days)
        self.logs_dir = logs_dir
        self.clock = clock or SystemClock()
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> PruneResult | None:
        """One pass now; ``None`` when it failed (logged)."""
        try:
            with self.open_storage() as storage:
                result = prune(storage, self.age, now=self.clock.now(), logs_dir=self.logs_dir)
        except Th2etlError as exc:
            logger.warning("retention: pruning runs failed (%s); retrying in a day", exc)
            return None
        logger.info("retention: %s", result.describe())
        return result

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.run_once()
            self._stop.wait(self.interval.total_seconds())

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="th2etl-retention", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
