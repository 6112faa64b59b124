"""Where the looking commands read: the configured database, or a service (``--api URL``).

``th2etl runs``, ``logs``, ``list``, ``next`` and ``cancel`` take ``--api URL`` (the key comes
from ``TH2ETL_API_KEY``) and ``--json``. Both sources answer with the same JSON the REST API
returns (``record.to_dict()``), so each command formats one shape whichever it talks to.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable
from typing import Any, Protocol

from th2etl.exceptions import ConfigurationError, NotFoundError, Th2etlError
from th2etl.types import JSON

__all__ = [
    "KINDS",
    "DatabaseSource",
    "ServiceSource",
    "Source",
    "add_source_options",
    "print_json",
    "print_table",
    "with_source",
]

KINDS = ("blocs", "pipelines", "triggers", "schedulers")
"""The kinds of definitions, plural, as the API's paths and the storage's ``list_*`` name them."""


class Source(Protocol):
    """What the looking commands need from a database or a service."""

    where: str

    def runs(self, *, pipeline: str | None, status: str | None, limit: int) -> list[JSON]: ...

    def run(self, run_id: str) -> JSON:
        """The run with its blocs and its ``log``."""

    def cancel(self, run_id: str) -> JSON:
        """Ask the run to stop; the run afterwards. Raises when it already finished."""

    def definitions(self, kind: str) -> list[JSON]: ...

    def definition(self, kind: str, name: str) -> JSON: ...

    def close(self) -> None: ...


class DatabaseSource:
    """The database the settings (``DATABASE_URL``, ...) name."""

    def __init__(self) -> None:
        from th2etl.configs.settings import get_settings
        from th2etl.storage import DatabaseStorage

        self.storage = DatabaseStorage.from_settings(get_settings())
        self.where = self.storage.describe()

    def runs(self, *, pipeline: str | None, status: str | None, limit: int) -> list[JSON]:
        runs = self.storage.list_runs(pipeline_name=pipeline, status=status, limit=limit)
        return [run.to_dict() for run in runs]

    def run(self, run_id: str) -> JSON:
        try:
            return self.storage.get_run(run_id).to_dict()
        except NotFoundError:
            raise NotFoundError(
                f"run {run_id!r} does not exist in {self.where}; 'th2etl runs' lists the "
                "latest runs"
            ) from None

    def cancel(self, run_id: str) -> JSON:
        self.run(run_id)  # NotFoundError naming the database
        return {**self.storage.request_cancel(run_id, by="cli").to_dict(), "cancel_requested": True}

    def definitions(self, kind: str) -> list[JSON]:
        return [record.to_dict() for record in getattr(self.storage, f"list_{kind}")()]

    def definition(self, kind: str, name: str) -> JSON:
        try:
            record = getattr(self.storage, f"get_{kind[:-1]}")(name)
        except NotFoundError:
            raise NotFoundError(
                f"{kind[:-1]} {name!r} does not exist in {self.where}; 'th2etl list {kind}' "
                "lists the stored ones"
            ) from None
        result: JSON = record.to_dict()
        return result

    def close(self) -> None:
        self.storage.close()


class ServiceSource:
    """A th2etl service's REST API, through :class:`~th2etl.helpers.th2etl_client.Th2etlClient`."""

    def __init__(self, url: str) -> None:
        from th2etl.helpers.th2etl_client import Th2etlClient

        self.client = Th2etlClient(base_url=url, api_key=os.environ.get("TH2ETL_API_KEY"))
        self.where = self.client.base_url

    def runs(self, *, pipeline: str | None, status: str | None, limit: int) -> list[JSON]:
        return self.client.list_runs(pipeline=pipeline, status=status, limit=limit)

    def run(self, run_id: str) -> JSON:
        return self.client.get_run(run_id)

    def cancel(self, run_id: str) -> JSON:
        return self.client.cancel_run(run_id)

    def definitions(self, kind: str) -> list[JSON]:
        result: list[JSON] = getattr(self.client, f"list_{kind}")()
        return result

    def definition(self, kind: str, name: str) -> JSON:
        result: JSON = getattr(self.client, f"get_{kind[:-1]}")(name)
        return result

    def close(self) -> None:
        pass


def add_source_options(parser: argparse.ArgumentParser) -> None:
    """``--api URL`` and ``--json``, which every looking command takes."""
    parser.add_argument(
        "--api",
        metavar="URL",
        help="ask this th2etl service (e.g. http://127.0.0.1:8000; key from TH2ETL_API_KEY) "
        "instead of the configured database",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def with_source(
    handler: Callable[[argparse.Namespace, Source], int],
) -> Callable[[argparse.Namespace], int]:
    """A command handler that gets the source ``--api`` names (else the database), closed
    afterwards; a th2etl error is printed as ``th2etl: error: ...`` with exit status 1 (2 for
    a setting)."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        from th2etl.configs.logging import configure_logging

        source: Source | None = None
        try:
            configure_logging({**os.environ, "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING")})
            source = ServiceSource(args.api) if args.api else DatabaseSource()
            return handler(args, source)
        except Th2etlError as exc:
            print(f"th2etl: error: {exc}", file=sys.stderr)
            return 2 if isinstance(exc, ConfigurationError) else 1
        finally:
            if source is not None:
                source.close()

    return run


def print_json(value: Any) -> None:
    import json

    print(json.dumps(value, indent=2, ensure_ascii=False))


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    """Columns padded to their widest cell; the last column is not padded."""
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    for row in [headers, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())
