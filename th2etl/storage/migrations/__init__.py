"""Find the versioned SQL migrations of a backend.

A migration is ``th2etl/storage/migrations/<backend>/NNNN_name.sql``; both backends have the
same versions. Files are applied in version order, each in the transaction that records its
version in ``th2etl_migrations``. On PostgreSQL they run with ``search_path`` set to th2etl's
schema, so they name tables without a schema. On SQLite each statement must end with ``;``
(triggers included); :func:`sqlite_statements` splits them.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from functools import cache
from importlib import resources

__all__ = ["LATEST_VERSION", "Migration", "load_migrations", "sqlite_statements"]

_FILE = re.compile(r"(\d{4})_(\w+)\.sql")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


@cache
def load_migrations(backend: str) -> tuple[Migration, ...]:
    """The migrations of ``backend`` ("postgresql" or "sqlite"), oldest first."""
    folder = resources.files("th2etl.storage.migrations") / backend
    found = []
    for entry in folder.iterdir():
        match = _FILE.fullmatch(entry.name)
        if match is not None:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    return tuple(sorted(found, key=lambda migration: migration.version))


def sqlite_statements(script: str) -> list[str]:
    """Split a SQLite script into complete statements (a trigger body stays whole)."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        if not pending and (not line.strip() or line.lstrip().startswith("--")):
            continue
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip():
        statements.append(pending.strip())
    return statements


LATEST_VERSION = load_migrations("postgresql")[-1].version
"""The schema version this th2etl writes."""
