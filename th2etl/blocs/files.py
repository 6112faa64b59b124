"""File blocs: ``csv_loader`` and ``csv_exporter``."""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from th2etl.blocs.base import ConfigField, ExporterBloc, LoaderBloc
from th2etl.blocs.registry import register_bloc
from th2etl.exceptions import BlocError, ValidationError
from th2etl.types import Rows

if TYPE_CHECKING:
    from th2etl.pipelines.context import RunContext

__all__ = ["COLUMN_TYPES", "CsvExporterBloc", "CsvLoaderBloc"]


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "t", "1", "yes", "y"):
        return True
    if lowered in ("false", "f", "0", "no", "n"):
        return False
    raise ValueError(text)


def _check_encoding(config: dict[str, Any], where: str) -> None:
    # A ${env:...} / ${var:...} reference is checked once resolved, before the bloc runs.
    encoding = config.get("encoding")
    if isinstance(encoding, str) and "${" not in encoding:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ValidationError(
                f"{where}: unknown encoding {encoding!r}; use e.g. 'utf-8', 'latin-1' or "
                "'utf-8-sig'"
            ) from None


def _parse_decimal(text: str) -> Decimal:
    try:
        return Decimal(text)
    except InvalidOperation:
        raise ValueError(text) from None


# The usual spellings of a bool, looked up in C; _parse_bool (a Python call per cell, a third
# of the conversion time of a typical CSV) then only sees the others.
_BOOL_WORDS: dict[str, bool] = dict.fromkeys(
    ("true", "t", "1", "yes", "y", "True", "TRUE", "T", "Yes", "Y"), True
) | dict.fromkeys(("false", "f", "0", "no", "n", "False", "FALSE", "F", "No", "N"), False)

COLUMN_TYPES: dict[str, Callable[[str], Any]] = {
    "str": str,
    "int": int,
    "float": float,
    "decimal": _parse_decimal,
    "bool": _parse_bool,
    "date": dt.date.fromisoformat,
    "datetime": dt.datetime.fromisoformat,
    "json": json.loads,
}
"""Names accepted in ``csv_loader``'s ``types`` and how a cell is parsed. An empty cell is None."""


@register_bloc
class CsvLoaderBloc(LoaderBloc):
    bloc_type = "csv_loader"
    summary = "Loads the rows of a CSV file with a header line."
    config_fields = (
        ConfigField("file_path", "str", required=True, help="The path to the CSV file"),
        ConfigField("delimiter", "str", default=",", help="The delimiter character"),
        ConfigField("encoding", "str", default="utf-8", help="The file's text encoding"),
        ConfigField(
            "types",
            "dict",
            help="Column types, e.g. {'amount': 'float', 'day': 'date'}; "
            f"one of {', '.join(COLUMN_TYPES)}. Other columns stay strings",
        ),
    )

    @classmethod
    def check_config(cls, config: dict[str, Any], where: str) -> None:
        delimiter = config.get("delimiter", ",")
        if isinstance(delimiter, str) and "${" not in delimiter and len(delimiter) != 1:
            raise ValidationError(f"{where}: delimiter must be one character, got {delimiter!r}")
        _check_encoding(config, where)
        for column, name in (config.get("types") or {}).items():
            if name not in COLUMN_TYPES:
                raise ValidationError(
                    f"{where}: types gives column {column!r} the unknown type {name!r}; "
                    f"use one of {', '.join(COLUMN_TYPES)}"
                )

    def run(self, context: RunContext, rows: Rows) -> Rows:
        path = Path(self.config["file_path"])
        encoding = self.config["encoding"]
        try:
            handle = path.open(newline="", encoding=encoding)
        except FileNotFoundError:
            raise BlocError(
                f"bloc {self.name!r} (csv_loader): file {str(path)!r} does not exist "
                f"(working directory: {os.getcwd()}); check file_path"
            ) from None
        with handle:
            return self._read(handle, path)

    def _read(self, handle: Any, path: Path) -> Rows:
        where = f"bloc {self.name!r} (csv_loader), file {str(path)!r}"
        reader = csv.reader(handle, delimiter=self.config["delimiter"])
        out: Rows = []
        try:
            header = next(reader, None)
            if header is None:
                return out
            width = len(header)
            types: dict[str, str] = self.config.get("types") or {}
            typed = _typed_columns(header, types, where)
            append = out.append
            rows = cast("Iterator[list[Any]]", reader)  # cells become typed values in place
            for row in rows:
                if len(row) != width:
                    if not row:
                        continue  # a blank line, as csv.DictReader skips it
                    raise BlocError(
                        f"{where}, line {reader.line_num}: {len(row)} fields where the header has "
                        f"{width}; check the delimiter (now {self.config['delimiter']!r}) and "
                        "the quoting of that line"
                    )
                # Converting the list before building the dict: one pass, no second lookup.
                for index, parse in typed:
                    text = row[index]
                    try:
                        row[index] = parse(text) if text else None
                    except (ValueError, KeyError):
                        column = header[index]
                        row[index] = _parse_slowly(text, types[column], column, len(out) + 1, where)
                append(dict(zip(header, row)))  # noqa: B905 (the width was checked above)
        except UnicodeDecodeError as exc:
            raise BlocError(
                f"{where}, line {reader.line_num + 1}: cannot decode the bytes with encoding "
                f"{self.config['encoding']!r} ({exc.reason}); set the encoding config key"
            ) from None
        except csv.Error as exc:
            raise BlocError(f"{where}, line {reader.line_num}: {exc}") from None
        return out


def _typed_columns(
    header: list[str], types: dict[str, str], where: str
) -> list[tuple[int, Callable[[str], Any]]]:
    """(column index, fast parser) for each column named in ``types``."""
    missing = [column for column in types if column not in header]
    if missing:
        raise BlocError(
            f"{where}: types names column {missing[0]!r}, which is not in the header; "
            f"columns: {', '.join(header)}"
        )
    fast: dict[str, Callable[[str], Any]] = {"bool": _BOOL_WORDS.__getitem__}
    return [
        (header.index(column), fast.get(name, COLUMN_TYPES[name])) for column, name in types.items()
    ]


def _parse_slowly(text: str, name: str, column: str, number: int, where: str) -> Any:
    """The full parser has the last word after the fast one refused ``text``."""
    try:
        return COLUMN_TYPES[name](text)
    except ValueError:
        raise BlocError(
            f"{where}, row {number}, column {column}: {text!r} is not a {name}"
        ) from None


@register_bloc
class CsvExporterBloc(ExporterBloc):
    bloc_type = "csv_exporter"
    summary = "Writes its input rows to a CSV file, atomically (temporary file, then rename)."
    config_fields = (
        ConfigField(
            "file_path",
            "str",
            required=True,
            help="Where to write; a relative path lands in the run's output_dir when it has one",
        ),
        ConfigField("delimiter", "str", default=",", help="The delimiter character"),
        ConfigField("encoding", "str", default="utf-8", help="The file's text encoding"),
    )

    @classmethod
    def check_config(cls, config: dict[str, Any], where: str) -> None:
        _check_encoding(config, where)

    def target(self, context: RunContext) -> Path:
        """The file this bloc writes for ``context``."""
        path = Path(self.config["file_path"])
        if not path.is_absolute() and context.output_dir is not None:
            path = context.output_dir / path
        return path

    def run(self, context: RunContext, rows: Rows) -> Rows:
        path = self.target(context)
        path.parent.mkdir(parents=True, exist_ok=True)
        columns: dict[str, None] = {}
        for row in rows:
            if row.keys() != columns.keys():
                columns.update(dict.fromkeys(row))
        # Write next to the target and rename: a failed run never leaves a half-written file.
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", newline="", encoding=self.config["encoding"]) as handle:
                writer = csv.DictWriter(
                    handle, fieldnames=list(columns), delimiter=self.config["delimiter"]
                )
                writer.writeheader()
                writer.writerows(rows)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return [{"file_path": str(path), "rows": len(rows)}]
