"""The storage fixtures (SQLite, then PostgreSQL) of tests/storage, for the notification tests."""

from __future__ import annotations

from tests.storage.conftest import backend, open_storage

__all__ = ["backend", "open_storage"]
