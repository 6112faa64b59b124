"""Settings read from environment variables, once, into a frozen :class:`Settings`.

Where th2etl keeps its definitions and run history:

* ``DATABASE_URL`` (``postgresql://user:password@host:5432/dbname?sslmode=require``), or
* ``DATABASE_HOST``, ``DATABASE_PORT``, ``DATABASE_NAME``, ``DATABASE_USER``,
  ``DATABASE_PASSWORD``, ``DATABASE_SSL_MODE``: a PostgreSQL server. ``DATABASE_URL`` wins when
  both are set.
* Nothing set: the embedded default, a SQLite file at ``TH2ETL_SQLITE_PATH`` or ``./th2etl.db``.

``DATABASE_SCHEMA`` (default ``public``) is the PostgreSQL schema of th2etl's own ``th2etl_*``
tables. The password is kept out of ``repr``, :meth:`Settings.describe` and every error message.

``TH2ETL_EXECUTOR`` (``thread`` or ``process``) says where a whole run executes; unset, each
entry point picks its default (see :mod:`th2etl.executors`). ``TH2ETL_CANCEL_GRACE`` (seconds,
default 10) is how long a cancelled run gets to stop before it is stopped for good;
``TH2ETL_DRAIN_GRACE`` (seconds, default 30) how long a service stopped by SIGTERM waits for its
runs before it cancels them. ``TH2ETL_POOL_SIZE`` (1 to 1000, default 10) is how many
connections a PostgreSQL storage may open for concurrent API requests and runs (see
:mod:`th2etl.storage.postgres`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from th2etl.exceptions import ConfigurationError

__all__ = [
    "DEFAULT_SQLITE_PATH",
    "EXECUTORS",
    "SSL_MODES",
    "Settings",
    "check_executor",
    "check_pool_size",
    "check_schema",
    "describe_url",
    "get_settings",
    "mask_password",
]

DEFAULT_SQLITE_PATH = Path("th2etl.db")
DEFAULT_PORT = 5432
DEFAULT_DATABASE_NAME = "th2etl"
EXECUTORS = ("thread", "process")
"""The values of ``TH2ETL_EXECUTOR``."""
DEFAULT_POOL_SIZE = 10
POOL_SIZES = (1, 1000)
"""The smallest and largest ``TH2ETL_POOL_SIZE``."""
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_URL_SCHEMES = ("postgresql", "postgres")
_PART_VARIABLES = (
    "DATABASE_HOST",
    "DATABASE_PORT",
    "DATABASE_NAME",
    "DATABASE_USER",
    "DATABASE_PASSWORD",
    "DATABASE_SSL_MODE",
)
# PostgreSQL identifiers are at most 63 bytes; the schema is quoted anyway, this keeps it sane.
_SCHEMA = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_HOW_TO_POSTGRES = (
    "set DATABASE_URL (postgresql://user:password@host:5432/dbname) or DATABASE_HOST, "
    "DATABASE_PORT, DATABASE_NAME, DATABASE_USER and DATABASE_PASSWORD"
)


@dataclass(frozen=True)
class Settings:
    """th2etl's configuration. Build it with :func:`get_settings`.

    ``database_url`` holds the password and is therefore left out of ``repr``; use
    :meth:`describe` to show where th2etl connects.
    """

    database_url: str | None = field(default=None, repr=False)
    sqlite_path: Path = DEFAULT_SQLITE_PATH
    database_schema: str = "public"
    pipelines_logs_dir: Path | None = None
    embedded_default: bool = False
    """True when no database variable was set and the SQLite default is used."""
    run_retention_days: int | None = None
    """``TH2ETL_RUN_RETENTION_DAYS``: the service deletes runs older than this once a day
    (see :mod:`th2etl.retention`); ``None`` keeps every run."""
    heartbeat_interval: float = 10.0
    """``TH2ETL_HEARTBEAT_INTERVAL`` (seconds, 0.1 to 3600): how often an owner of runs says it
    is alive; its runs are abandoned 1.5 intervals after it stops (see
    :mod:`th2etl.storage.owner`)."""
    max_queued_runs: int = 1000
    """``TH2ETL_MAX_QUEUED_RUNS`` (0 to 1000000): how many runs may wait ``queued`` in the whole
    database; the API answers 429 beyond it."""
    executor: str | None = None
    """``TH2ETL_EXECUTOR``: where whole runs execute; None when unset (each entry point's
    default)."""
    cancel_grace: float = 10.0
    """``TH2ETL_CANCEL_GRACE`` (0.1 to 3600): seconds a cancelled run gets to stop (then a
    terminated worker to exit) before the next step."""
    drain_grace: float = 30.0
    """``TH2ETL_DRAIN_GRACE`` (0 to 3600): seconds a stopping service waits for its runs to end
    before it cancels them."""
    pool_size: int = DEFAULT_POOL_SIZE
    """``TH2ETL_POOL_SIZE`` (1 to 1000): the most connections a PostgreSQL storage opens at
    once for its callers (heartbeats have one more of their own); 1 serialises every call on
    one connection. SQLite ignores it: an embedded file has one connection."""

    @property
    def backend(self) -> Literal["postgresql", "sqlite"]:
        return "sqlite" if self.database_url is None else "postgresql"

    def postgres_conninfo(self) -> str:
        """The PostgreSQL connection URL (with the password), for psycopg."""
        if self.database_url is None:
            raise ConfigurationError(
                f"no PostgreSQL database is configured (th2etl uses SQLite at "
                f"{self.sqlite_path}); to use PostgreSQL, {_HOW_TO_POSTGRES}"
            )
        return self.database_url

    def describe(self) -> str:
        """Where th2etl stores its data, for people: host, port, database; never the password."""
        if self.database_url is None:
            default = " (the embedded default)" if self.embedded_default else ""
            return f"SQLite database at {self.sqlite_path}{default}"
        return f"{describe_url(self.database_url)}, schema {self.database_schema!r}"

    def __repr__(self) -> str:
        return (
            f"Settings(backend={self.backend!r}, database={self.describe()!r}, "
            f"pipelines_logs_dir={self.pipelines_logs_dir!r})"
        )


def get_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read :class:`Settings` from ``environ`` (default ``os.environ``); empty means unset.

    Raises :class:`~th2etl.exceptions.ConfigurationError` for a malformed URL, port, SSL mode or
    schema name.
    """
    env = {key: value for key, value in (os.environ if environ is None else environ).items()}

    def get(key: str) -> str | None:
        value = env.get(key, "").strip()
        return value or None

    sqlite_path = Path(get("TH2ETL_SQLITE_PATH") or DEFAULT_SQLITE_PATH).expanduser().absolute()
    schema = check_schema(get("DATABASE_SCHEMA") or "public")
    logs_dir = get("pipelines_logs_dir") or get("PIPELINES_LOGS_DIR")
    url_value = get("DATABASE_URL")
    if url_value is not None:
        database_url: str | None = _check_url(url_value)
    elif any(get(key) for key in _PART_VARIABLES):
        database_url = _url_from_parts(get)
    else:
        database_url = None
    retention = get("TH2ETL_RUN_RETENTION_DAYS")
    if retention is not None and (not retention.isdigit() or int(retention) == 0):
        raise ConfigurationError(
            f"TH2ETL_RUN_RETENTION_DAYS {retention!r} is not a number of days; use a whole "
            "number above 0, e.g. 30, or unset it to keep every run"
        )
    return Settings(
        run_retention_days=int(retention) if retention is not None else None,
        heartbeat_interval=_bounded(get, "TH2ETL_HEARTBEAT_INTERVAL", 10.0, 0.1, 3600, float),
        max_queued_runs=int(_bounded(get, "TH2ETL_MAX_QUEUED_RUNS", 1000, 0, 1_000_000, int)),
        database_url=database_url,
        sqlite_path=sqlite_path,
        database_schema=schema,
        pipelines_logs_dir=Path(logs_dir).expanduser() if logs_dir else None,
        embedded_default=database_url is None and get("TH2ETL_SQLITE_PATH") is None,
        executor=check_executor(executor) if (executor := get("TH2ETL_EXECUTOR")) else None,
        cancel_grace=_bounded(get, "TH2ETL_CANCEL_GRACE", 10.0, 0.1, 3600, float),
        drain_grace=_bounded(get, "TH2ETL_DRAIN_GRACE", 30.0, 0, 3600, float),
        pool_size=int(_bounded(get, "TH2ETL_POOL_SIZE", DEFAULT_POOL_SIZE, *POOL_SIZES, int)),
    )


def _bounded(
    get: Callable[[str], str | None],
    key: str,
    default: float,
    low: float,
    high: float,
    kind: type[int] | type[float],
) -> float:
    """The number in variable ``key`` (``default`` when unset) if it is in [low, high]."""
    text = get(key)
    if text is None:
        return default
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        what = "a whole number" if kind is int else "a number"

        def show(number: float) -> str:
            return str(int(number)) if float(number).is_integer() else f"{number:g}"

        raise ConfigurationError(
            f"{key} {text!r} is not allowed; use {what} from {show(low)} to {show(high)}, or "
            f"unset it for the default {show(default)}"
        )
    return value


def check_executor(value: str, where: str = "TH2ETL_EXECUTOR") -> str:
    """``value`` if it names an executor (see :data:`EXECUTORS`) or is a Dask scheduler address
    (see :mod:`th2etl.executors.dask`), else a ConfigurationError listing what is accepted. A
    Dask address without the ``dask`` extra installed raises MissingExtraError."""
    name = value.strip().lower()
    if name in EXECUTORS:
        return name
    from th2etl.executors.dask import ACCEPTED_ADDRESSES, check_dask_address, is_dask_address

    if is_dask_address(value.strip()):
        return check_dask_address(value, where)
    raise ConfigurationError(
        f"{where}={value!r} is not an executor; use one of {', '.join(EXECUTORS)} "
        "(process: each run in a worker process of its own; thread: in this process), or the "
        f"address of a Dask scheduler to run on its cluster: {ACCEPTED_ADDRESSES}"
    )


def check_pool_size(value: object, where: str = "pool_size") -> int:
    """``value`` if it is a whole number in :data:`POOL_SIZES`, else a ConfigurationError."""
    low, high = POOL_SIZES
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigurationError(
            f"{where} {value!r} is not allowed; use a whole number of connections from {low} "
            f"to {high} (1: one connection for every call), e.g. {DEFAULT_POOL_SIZE}"
        )
    return value


def check_schema(schema: object, where: str = "DATABASE_SCHEMA") -> str:
    """``schema`` if it is a usable PostgreSQL schema name, else a ConfigurationError."""
    if not isinstance(schema, str) or _SCHEMA.fullmatch(schema) is None:
        raise ConfigurationError(
            f"{where} {schema!r} is not a usable schema name; use letters, digits and "
            "'_' (not starting with a digit), at most 63 characters"
        )
    return schema


def describe_url(url: str) -> str:
    """``PostgreSQL database 'db' on host:port as user 'u'``: the URL without its password."""
    parts = urlsplit(url)
    host = parts.hostname or "the local socket"
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        port = DEFAULT_PORT
    dbname = unquote(parts.path.lstrip("/")) or "(default)"
    user = f" as user {unquote(parts.username)!r}" if parts.username else ""
    return f"PostgreSQL database {dbname!r} on {host}:{port}{user}"


def mask_password(url: str) -> str:
    """``url`` with its password (in the user info or a ``password=`` parameter) replaced by
    ``***``, fit for messages."""
    from th2etl._urls import mask_url

    return mask_url(url, keep_user=True)


def _check_url(url: str) -> str:
    shown = mask_password(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an IPv6 host without its closing bracket
        raise ConfigurationError(
            f"DATABASE_URL {shown!r} is not a valid URL ({exc}); write it as "
            "postgresql://user:password@host:5432/dbname (an IPv6 host in brackets: [::1])"
        ) from None
    if parts.scheme not in _URL_SCHEMES:
        raise ConfigurationError(
            f"DATABASE_URL {shown!r} is not a PostgreSQL URL; write it as "
            "postgresql://user:password@host:5432/dbname, or unset it to use the embedded "
            "SQLite database (path in TH2ETL_SQLITE_PATH)"
        )
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when it is read
    except ValueError:
        raise ConfigurationError(
            f"DATABASE_URL {shown!r} has a malformed port; use a number between 1 and 65535, "
            "e.g. postgresql://user:password@host:5432/dbname"
        ) from None
    if not parts.path.strip("/"):
        raise ConfigurationError(
            f"DATABASE_URL {shown!r} names no database; add it after the host, "
            "e.g. postgresql://user:password@host:5432/dbname"
        )
    for mode in parse_qs(parts.query).get("sslmode", []):
        _check_ssl_mode(mode, "sslmode in DATABASE_URL")
    return url


def _url_from_parts(get: Callable[[str], str | None]) -> str:
    host = get("DATABASE_HOST") or "localhost"
    port_text = get("DATABASE_PORT") or str(DEFAULT_PORT)
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigurationError(
            f"DATABASE_PORT {port_text!r} is not a port number; use a number between 1 and "
            "65535 (PostgreSQL listens on 5432 by default)"
        )
    name = get("DATABASE_NAME") or DEFAULT_DATABASE_NAME
    user = get("DATABASE_USER")
    password = get("DATABASE_PASSWORD")
    userinfo = ""
    if user:
        userinfo = quote(user, safe="")
        if password:
            userinfo += ":" + quote(password, safe="")
        userinfo += "@"
    elif password:
        raise ConfigurationError(
            "DATABASE_PASSWORD is set but DATABASE_USER is not; set DATABASE_USER too"
        )
    query: dict[str, str] = {}
    ssl_mode = get("DATABASE_SSL_MODE")
    if ssl_mode:
        query["sslmode"] = _check_ssl_mode(ssl_mode, "DATABASE_SSL_MODE")
    # IPv6 literals need brackets in a URL.
    host_part = f"[{host}]" if ":" in host else host
    url = f"postgresql://{userinfo}{host_part}:{int(port_text)}/{quote(name, safe='')}"
    return f"{url}?{urlencode(query)}" if query else url


def _check_ssl_mode(mode: str, where: str) -> str:
    if mode not in SSL_MODES:
        raise ConfigurationError(
            f"{where} {mode!r} is not an SSL mode PostgreSQL knows; use one of "
            + ", ".join(SSL_MODES)
        )
    return mode
