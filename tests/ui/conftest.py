"""The dashboard's tests use the API tests' storage fixture: real SQLite, then PostgreSQL."""

from __future__ import annotations

from tests.api.conftest import storage

__all__ = ["storage"]
