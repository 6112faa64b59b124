"""The connection every storage role shares: where the data lives, health, version, close.

The guarantees common to every role are stated once in :mod:`th2etl.storage.base`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

__all__ = ["StorageConnection"]


class StorageConnection(ABC):
    """What every storage role can do with its database connection(s)."""

    @abstractmethod
    def describe(self) -> str:
        """Where the data lives, for people and error messages (never the password)."""

    @abstractmethod
    def check_connection(self) -> None:
        """Run a trivial query; raise :class:`DatabaseUnavailableError` when it fails. A
        connection that died while idle is replaced once before failure is reported, so a
        health check right after a server restart says the truth."""

    @abstractmethod
    def schema_version(self) -> int:
        """The migration version the database is at (migrations run when storage opens)."""

    @abstractmethod
    def reopen(self) -> Self:
        """Another storage object on the same database, with a connection of its own (and
        the same clock): what a heartbeat thread uses so that no other work delays it."""

    @abstractmethod
    def close(self) -> None:
        """Close the connection, or the pool (a connection still borrowed is closed when it is
        given back); idempotent. A later call would connect again."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
