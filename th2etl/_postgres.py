"""PostgreSQL connections: check a connection string, describe it, connect fast or fail clearly.

Shared by the PostgreSQL blocs (and usable by the storage layer). Every message names the host,
port, database and user of the connection, never its password.
"""

from __future__ import annotations

import getpass
import os
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from th2etl.exceptions import DatabaseUnavailableError, ValidationError

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "MAX_IDENTIFIER_BYTES",
    "check_conninfo",
    "check_identifier",
    "connect",
    "describe_conninfo",
    "qualified_name",
]

DEFAULT_CONNECT_TIMEOUT = 10
"""Seconds to wait for a server, unless the connection string sets ``connect_timeout``."""

MAX_IDENTIFIER_BYTES = 63
"""PostgreSQL silently cuts longer names (NAMEDATALEN - 1), so th2etl refuses them instead."""

_CONNINFO_FORMS = (
    "write it as a URL, postgresql://user:password@host:5432/dbname, "
    "or as key=value pairs, host=... port=5432 dbname=... user=..."
)


def _params(conninfo: str) -> dict[str, Any]:
    return conninfo_to_dict(conninfo)


def check_conninfo(conninfo: str, where: str) -> None:
    """Refuse a connection string libpq cannot parse (the message never repeats the string)."""
    if not conninfo.strip():
        raise ValidationError(f"{where}: the connection string is empty; {_CONNINFO_FORMS}")
    try:
        _params(conninfo)
    except psycopg.ProgrammingError:
        # libpq's parse error quotes pieces of the string, which may be the password.
        raise ValidationError(
            f"{where}: the connection string is not valid; {_CONNINFO_FORMS}"
        ) from None


def describe_conninfo(conninfo: str) -> str:
    """``host H, port P, database D, user U`` with libpq's defaults filled in; no password."""
    try:
        params = _params(conninfo)
    except psycopg.ProgrammingError:
        return "an unparsable connection string"
    host = params.get("host") or params.get("hostaddr") or os.environ.get("PGHOST") or "localhost"
    port = params.get("port") or os.environ.get("PGPORT") or "5432"
    user = params.get("user") or os.environ.get("PGUSER") or _os_user()
    dbname = params.get("dbname") or os.environ.get("PGDATABASE") or user
    return f"host {host}, port {port}, database {dbname}, user {user}"


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "?"


def _redact(text: str, conninfo: str) -> str:
    """``text`` on one line, with the connection's password (if any) masked."""
    flat = " ".join(part.strip() for part in text.splitlines() if part.strip())
    try:
        password = _params(conninfo).get("password")
    except psycopg.ProgrammingError:
        password = None
    for secret in (password, os.environ.get("PGPASSWORD")):
        if secret:
            flat = flat.replace(str(secret), "***")
    return flat


def connect(
    conninfo: str,
    *,
    where: str,
    application_name: str | None = None,
    connect_timeout: int = DEFAULT_CONNECT_TIMEOUT,
    **kwargs: Any,
) -> psycopg.Connection[Any]:
    """Open a connection, or raise :class:`DatabaseUnavailableError` saying where and why.

    ``connect_timeout`` and ``application_name`` apply only when the string does not set them.
    """
    params = _params(conninfo)
    if "connect_timeout" not in params:
        kwargs["connect_timeout"] = connect_timeout
    if application_name and "application_name" not in params:
        # Visible in pg_stat_activity, so a DBA can tell which bloc holds a connection.
        kwargs["application_name"] = application_name[:63]
    try:
        return psycopg.connect(conninfo, **kwargs)
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailableError(
            f"{where}: cannot connect to PostgreSQL at {describe_conninfo(conninfo)}: "
            f"{_redact(str(exc), conninfo)}; check that the server runs and accepts connections "
            "there, and the connection settings"
        ) from None


def check_identifier(kind: str, name: object, where: str) -> str:
    """Return ``name`` when PostgreSQL can use it as written (it is always quoted), else raise."""
    if not isinstance(name, str) or not name:
        raise ValidationError(f"{where}: {kind} must be a non-empty string, got {name!r}")
    if "\x00" in name:
        raise ValidationError(
            f"{where}: {kind} {name!r} contains a NUL character, which PostgreSQL names "
            "cannot hold; remove it"
        )
    size = len(name.encode("utf-8"))
    if size > MAX_IDENTIFIER_BYTES:
        raise ValidationError(
            f"{where}: {kind} {name!r} is {size} bytes long; PostgreSQL names hold at most "
            f"{MAX_IDENTIFIER_BYTES} bytes (it would cut the rest silently); use a shorter name"
        )
    return name


def qualified_name(schema: str, name: str) -> sql.Identifier:
    """``"schema"."name"``, each part quoted, whatever characters it holds."""
    return sql.Identifier(schema, name)
