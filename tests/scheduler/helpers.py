"""Blocs and pipelines for scheduler tests (also imported by the subprocess scripts)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

from th2etl.blocs import ConfigField, TransformerBloc, register_bloc
from th2etl.blocs.registry import unregister_bloc
from th2etl.pipelines import Pipeline, RunContext
from th2etl.types import Rows

START = datetime(2026, 5, 15, 10, 0, tzinfo=UTC)
"""Where the fake clocks of the database scheduler tests start."""

GATES: dict[str, threading.Event] = {}
"""Events a ``gate`` bloc waits for, by name (in-process tests only)."""


class Noop(TransformerBloc):
    bloc_type = "scheduler_test_noop"
    summary = "Does nothing."

    def run(self, context: RunContext, rows: Rows) -> Rows:
        return []


class Gate(TransformerBloc):
    """Waits until ``GATES[gate]`` is set, or returns early when the run is cancelled."""

    bloc_type = "scheduler_test_gate"
    summary = "Waits for a test's event."
    config_fields = (ConfigField("gate", "str", required=True, help="GATES key"),)

    def run(self, context: RunContext, rows: Rows) -> Rows:
        event = GATES[self.config["gate"]]
        while not event.wait(0.01):
            if context.cancel_requested:
                return [{"cancelled": True}]
        return [{"released": True}]


class WriteOutput(TransformerBloc):
    """Logs a line and writes a file into the run's output folder."""

    bloc_type = "scheduler_test_write"
    summary = "Writes marker.txt in the run's output folder."

    def run(self, context: RunContext, rows: Rows) -> Rows:
        context.logger.warning("bloc of run %s writes its marker", context.run_id)
        assert context.output_dir is not None
        (context.output_dir / "marker.txt").write_text(context.run_id, encoding="utf-8")
        return [{"output_dir": str(context.output_dir)}]


class SleepBloc(TransformerBloc):
    """Sleeps for real (a run that is still going when its process is killed)."""

    bloc_type = "scheduler_test_sleep"
    summary = "Sleeps for real."
    config_fields = (ConfigField("seconds", "number", default=0, help="How long"),)

    def run(self, context: RunContext, rows: Rows) -> Rows:
        deadline = time.monotonic() + float(self.config["seconds"])
        while time.monotonic() < deadline and not context.cancel_requested:
            time.sleep(0.02)
        return [{"slept": self.config["seconds"]}]


STORED_BLOC_TYPES = (Noop, SleepBloc)
"""Registered while a database test runs (stored blocs are validated through the registry)."""


def register_stored_bloc_types() -> None:
    for klass in STORED_BLOC_TYPES:
        register_bloc(klass, replace=True)  # type: ignore[call-overload]


def unregister_stored_bloc_types() -> None:
    for klass in STORED_BLOC_TYPES:
        unregister_bloc(klass.bloc_type)


def noop_pipeline(name: str = "noop") -> Pipeline:
    return Pipeline(name, [[Noop("noop")]])


def gate_pipeline(gate: str, name: str = "gated") -> Pipeline:
    GATES.setdefault(gate, threading.Event())
    return Pipeline(name, [[Gate("gate", {"gate": gate})]])


def write_pipeline(name: str = "writer") -> Pipeline:
    return Pipeline(name, [[WriteOutput("write")]])


def statuses(results: list[Any]) -> list[str]:
    return [
        f"{r.scheduled_time.astimezone(UTC):%H:%M} {r.action.value}"
        + (f"({r.reason.value})" if r.reason else "")
        for r in results
    ]
