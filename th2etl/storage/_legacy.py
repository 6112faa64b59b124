"""Reading th2etl 0.0.x's tables (``etl_blocs``, ...) in the same schema: the storage side of
:mod:`th2etl.legacy`. Read only: nothing here writes to them."""

from __future__ import annotations

import logging
import threading

from th2etl.storage._core import SqlCore
from th2etl.types import JSON

__all__ = ["LEGACY_TABLES", "Legacy"]

logger = logging.getLogger("th2etl.storage")

LEGACY_TABLES = (
    "blocs",
    "pipelines",
    "triggers",
    "schedulers",
    "pipeline_runs",
    "pipeline_run_logs",
)
"""th2etl 0.0.8-0.0.15's tables, without their ``etl_`` prefix."""

_hinted: set[str] = set()
_hint_lock = threading.Lock()


class Legacy(SqlCore):
    """The old tables, on PostgreSQL (th2etl 0.0.x stored nothing elsewhere)."""

    def _legacy_name(self, table: str) -> str:
        # The schema name is checked at start-up (letters, digits, '_'); the table is ours.
        schema = getattr(self, "schema", "public")
        return f'"{schema}"."etl_{table}"'

    def legacy_tables(self) -> list[str]:
        """The old tables this database has (``[]`` on SQLite)."""
        if self.backend != "postgresql":
            return []
        found = []
        for table in LEGACY_TABLES:
            row = self._one("SELECT to_regclass(%s)", (self._legacy_name(table),))
            if row[0] is not None:
                found.append(table)
        return found

    def legacy_rows(self, table: str) -> list[JSON]:
        """Every row of ``etl_<table>`` as a dict, by id."""
        assert table in LEGACY_TABLES
        rows = self._all(
            f"SELECT row_to_json(t) FROM {self._legacy_name(table)} AS t ORDER BY t.id"
        )
        return [self._json_out(row[0]) for row in rows]

    def log_legacy_hint(self) -> None:
        """Log once per database, when it has th2etl 0.0.x's definitions and none of ours, the
        command that imports them."""
        if self.backend != "postgresql":
            return
        with _hint_lock:
            if self.describe() in _hinted:
                return
            _hinted.add(self.describe())
        if "pipelines" not in self.legacy_tables():
            return
        ours = self._one(
            "SELECT (SELECT COUNT(*) FROM {pipelines}) + (SELECT COUNT(*) FROM {blocs})"
        )
        if int(ours[0]) == 0:
            logger.warning(
                "%s has th2etl 0.0.x definitions (etl_pipelines, etl_blocs, ...) and none of "
                "this th2etl's: import them with 'th2etl import-legacy --dry-run', then "
                "'th2etl import-legacy'",
                self.describe(),
            )
