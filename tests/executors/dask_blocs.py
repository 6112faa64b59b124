"""Bloc types for the Dask tests; Dask workers import them from this module.

``dask_test_export`` writes into the table ``dask_export`` of the workers' schema (one
transaction per run) with its parent's process id, so a test can count how many times each run
exported its rows, and see which process forked the one that did.
``dask_test_hold`` writes its process id to a file, then waits for another file to appear (or,
when ``cooperative``, for the run to be cancelled): a run a test can catch mid-way.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from th2etl.blocs import ConfigField, ExporterBloc, LoaderBloc, TransformerBloc, register_bloc
from th2etl.configs.settings import get_settings
from th2etl.pipelines import RunContext
from th2etl.types import Rows


@register_bloc
class Rows_(LoaderBloc):
    bloc_type = "dask_test_rows"
    summary = "Makes n rows."
    config_fields = (ConfigField("n", "int", default=3, help="how many rows"),)

    def run(self, context: RunContext, rows: Rows) -> Rows:
        return [{"i": i, "name": f"row {i}"} for i in range(self.config["n"])]


@register_bloc
class Export(ExporterBloc):
    bloc_type = "dask_test_export"
    summary = "Appends its input to dask_export (no key: a second export shows)."

    def run(self, context: RunContext, rows: Rows) -> Rows:
        import psycopg

        settings = get_settings()
        with psycopg.connect(
            settings.postgres_conninfo(), options=f"-c search_path={settings.database_schema}"
        ) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS dask_export (run_id text, i int, ppid int)")
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO dask_export VALUES (%s, %s, %s)",
                    [(context.run_id, row["i"], os.getppid()) for row in rows],
                )
        return [{"exported": len(rows)}]


@register_bloc
class Hold(TransformerBloc):
    bloc_type = "dask_test_hold"
    summary = "Writes its pid to pid_file, then waits until release_file exists."
    config_fields = (
        ConfigField("pid_file", "str", required=True, help="where to write the pid"),
        ConfigField("release_file", "str", required=True, help="what to wait for"),
        ConfigField("cooperative", "bool", default=True, help="stop when cancelled"),
    )

    def run(self, context: RunContext, rows: Rows) -> Rows:
        # Written whole, then renamed: a test waiting for the file never reads it half-written.
        pid_file = Path(self.config["pid_file"])
        partial = pid_file.with_name(f"{pid_file.name}.partial")
        partial.write_text(str(os.getpid()), encoding="utf-8")
        partial.replace(pid_file)
        release = Path(self.config["release_file"])
        while not release.exists():
            if self.config["cooperative"] and context.cancel_requested:
                return []
            time.sleep(0.02)
        return rows
