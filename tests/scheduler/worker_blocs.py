"""Bloc types for the tests of runs in worker processes, in a module of their own: a worker
imports each bloc's class from its module (a class defined in a test could not be)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from th2etl.blocs import ConfigField, TransformerBloc, register_bloc
from th2etl.pipelines import RunContext
from th2etl.types import Rows


def _write_whole(path: Path, text: str) -> None:
    """Written, then renamed: a test waiting for the file never reads it half-written."""
    partial = path.with_name(f"{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


@register_bloc
class WhereAndWhen(TransformerBloc):
    """Writes ``<folder>/<run id>.started`` when it starts, waits until the file ``wait_for``
    exists (when given), then after ``seconds`` (cut short by a cancel unless ``stubborn``)
    writes ``<folder>/<run id>.json``: the pid of its process and when it started and ended
    (``time.monotonic()``, one clock for every process)."""

    bloc_type = "scheduler_test_where_and_when"
    summary = "Records its process and its time span in a folder."
    config_fields = (
        ConfigField("folder", "str", required=True, help="where to write"),
        ConfigField("seconds", "number", default=0, help="how long to take"),
        ConfigField("stubborn", "bool", default=False, help="ignore cancellation"),
        ConfigField("wait_for", "str", help="a file to wait for first"),
    )

    def run(self, context: RunContext, rows: Rows) -> Rows:
        folder = Path(self.config["folder"])
        started = time.monotonic()
        _write_whole(folder / f"{context.run_id}.started", str(os.getpid()))
        gate = self.config.get("wait_for")
        while gate and not Path(gate).exists() and not context.cancel_requested:
            time.sleep(0.01)
        deadline = time.monotonic() + float(self.config["seconds"])
        while time.monotonic() < deadline:
            if context.cancel_requested and not self.config["stubborn"]:
                break
            time.sleep(0.01)
        span = {"pid": os.getpid(), "started": started, "ended": time.monotonic()}
        _write_whole(folder / f"{context.run_id}.json", json.dumps(span))
        return [span]
