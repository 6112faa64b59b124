"""Bloc types for the executor tests, in a module of their own: a worker process imports them
from here (a class defined in a test function or in ``__main__`` could not be)."""

from __future__ import annotations

import os
import resource
import signal
import time
from pathlib import Path

from th2etl import ConfigField, RunContext, TransformerBloc, register_bloc
from th2etl.types import Rows


@register_bloc
class WhereAmI(TransformerBloc):
    """Passes its rows on, each with the pid of the process that ran it."""

    bloc_type = "test_where_am_i"

    def run(self, context: RunContext, rows: Rows) -> Rows:
        context.logger.info("bloc %s runs in process %d", self.name, os.getpid())
        return [{**row, "pid": os.getpid()} for row in rows] or [{"pid": os.getpid()}]


@register_bloc
class Sleeper(TransformerBloc):
    """Sleeps ``seconds``; gives up early when the run is cancelled, unless ``stubborn``."""

    bloc_type = "test_sleeper"
    config_fields = (
        ConfigField("seconds", "number", default=60.0, help="how long to sleep"),
        ConfigField("stubborn", "bool", default=False, help="ignore cancellation"),
        ConfigField("started_file", "str", help="a file to create when it starts"),
    )

    def run(self, context: RunContext, rows: Rows) -> Rows:
        if "started_file" in self.config:
            Path(self.config["started_file"]).touch()
        end = time.monotonic() + self.config["seconds"]
        while time.monotonic() < end:
            if context.cancel_requested and not self.config["stubborn"]:
                return []
            time.sleep(0.02)
        return rows


@register_bloc
class SelfKiller(TransformerBloc):
    """Kills its own process with SIGKILL, as the kernel's out-of-memory killer would."""

    bloc_type = "test_self_killer"

    def run(self, context: RunContext, rows: Rows) -> Rows:
        os.kill(os.getpid(), signal.SIGKILL)
        return rows


@register_bloc
class MemoryHog(TransformerBloc):
    """Limits its process's address space to ``limit_mb`` MB, then allocates past it."""

    bloc_type = "test_memory_hog"
    config_fields = (ConfigField("limit_mb", "int", default=1024, help="RLIMIT_AS in MB"),)

    def run(self, context: RunContext, rows: Rows) -> Rows:
        limit = self.config["limit_mb"] * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        hoard = [bytearray(64 * 1024 * 1024) for _ in range(10_000)]
        return [{"kept": len(hoard)}]
