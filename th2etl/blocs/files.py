"""File blocs: ``csv_loader`` and ``csv_exporter``."""

from __future__ import annotations

import codecs
import csv
import io
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from operator import itemgetter
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from th2etl.blocs._cells import COLUMN_TYPES, FAST_PARSERS, format_column
from th2etl.blocs.base import Bloc, ConfigField, ExporterBloc, LoaderBloc, collect
from th2etl.blocs.registry import register_bloc
from th2etl.exceptions import BlocError, ValidationError
from th2etl.types import Rows

if TYPE_CHECKING:
    from th2etl.pipelines.context import RunContext

__all__ = ["COLUMN_TYPES", "CsvExporterBloc", "CsvLoaderBloc"]


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
        return collect(self.stream(context, [rows]))

    def stream(self, context: RunContext, batches: Iterable[Rows]) -> Iterator[Rows]:
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
            yield from self._read(handle, path, context.batch_size)

    def _read(self, handle: Any, path: Path, size: int) -> Iterator[Rows]:
        where = f"bloc {self.name!r} (csv_loader), file {str(path)!r}"
        reader = csv.reader(handle, delimiter=self.config["delimiter"])
        try:
            header = next(reader, None)
            if header is None:
                return
            width = len(header)
            types: dict[str, str] = self.config.get("types") or {}
            typed = _typed_columns(header, types, where)
            done = 0  # rows of earlier batches
            rows = cast("Iterator[list[Any]]", reader)  # cells become typed values in place
            while True:
                out: Rows = []
                append = out.append
                for row in islice(rows, size):
                    if len(row) != width:
                        if not row:
                            continue  # a blank line, as csv.DictReader skips it
                        raise BlocError(
                            f"{where}, line {reader.line_num}: {len(row)} fields where the header "
                            f"has {width}; check the delimiter (now "
                            f"{self.config['delimiter']!r}) and the quoting of that line"
                        )
                    # Converting the list before building the dict: one pass, no second lookup.
                    for index, parse in typed:
                        text = row[index]
                        try:
                            row[index] = parse(text) if text else None
                        except (ValueError, KeyError):
                            column = header[index]
                            number = done + len(out) + 1
                            row[index] = _parse_slowly(text, types[column], column, number, where)
                    append(dict(zip(header, row)))  # noqa: B905 (the width was checked above)
                if not out:
                    return
                done += len(out)
                yield out
        except UnicodeDecodeError as exc:
            raise BlocError(
                f"{where}, line {reader.line_num + 1}: cannot decode the bytes with encoding "
                f"{self.config['encoding']!r} ({exc.reason}); set the encoding config key"
            ) from None
        except csv.Error as exc:
            raise BlocError(f"{where}, line {reader.line_num}: {exc}") from None


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
    return [
        (header.index(column), FAST_PARSERS.get(name, COLUMN_TYPES[name]))
        for column, name in types.items()
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
    streams_safely = True  # the file appears (renamed) only once the input ended without error
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
        return collect(self.stream(context, [rows]))

    @classmethod
    def fuses(cls, source: Bloc) -> bool:
        # A source that writes its rows in this bloc's written forms itself (postgres_loader:
        # the server's COPY output, straight into the file; see th2etl.blocs._pg_unload).
        return callable(getattr(source, "write_csv", None))

    def stream(self, context: RunContext, batches: Iterable[Rows]) -> Iterator[Rows]:
        path = self.target(context)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write next to the target and rename once the input ended without error: a failed or
        # cancelled run never leaves a half-written file, and the old file stays until then.
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            count = self._fast(context, batches, temporary)
            if count is None:
                count = self._write(batches, temporary)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        yield [{"file_path": str(path), "rows": count}]

    def _fast(self, context: RunContext, batches: Iterable[Rows], temporary: str) -> int | None:
        """The fused source writes the file itself: the rows written, or None when the general
        path must (the file is then written again from the start)."""
        source = getattr(batches, "fused", None)
        if source is None:
            return None
        encoding = codecs.lookup(self.config["encoding"]).name
        if encoding not in ("utf-8", "utf-8-sig"):
            return None
        with open(temporary, "wb") as handle:
            if encoding == "utf-8-sig":
                handle.write(codecs.BOM_UTF8)
            rows: int | None = source.write_csv(context, handle, self.config["delimiter"])
        if rows is not None:
            cast("Any", batches).skip(rows)  # the end of the input: earlier stages succeeded
        return rows

    def _write(self, batches: Iterable[Rows], temporary: str) -> int:
        """Write the rows in their written forms (:mod:`th2etl.blocs._cells`)."""
        delimiter = self.config["delimiter"]
        encoding = self.config["encoding"]
        columns: dict[str, None] = {}
        written: list[str] | None = None  # the columns of the header line as written
        count = 0
        with open(temporary, "w", newline="", encoding=encoding) as handle:
            lines = _Lines(handle, delimiter)
            for batch in batches:
                uniform = True  # every row has exactly the columns (the usual case)
                for row in batch:
                    if row.keys() != columns.keys():
                        uniform = False
                        columns.update(dict.fromkeys(row))
                if written is None:
                    written = list(columns)
                    lines.write([written])
                if batch:
                    lines.write(_records(batch, list(columns), uniform))
                count += len(batch)
            if written is None:
                lines.write([[]])  # no batch at all: a header of no columns
        if written is not None and len(written) != len(columns):
            _widen(temporary, list(columns), encoding, delimiter)
        return count


class _Lines:
    """Writes records as CSV lines: ``\\n`` at their ends, a cell quoted when it holds the
    delimiter, a quote, ``\\r`` or ``\\n`` (as PostgreSQL quotes; Python's csv module quotes
    ``\\r`` only when it is in the line terminator, hence the second writer)."""

    def __init__(self, handle: IO[str], delimiter: str) -> None:
        self._handle = handle
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, delimiter=delimiter, lineterminator="\n")
        self._careful = csv.writer(self._buffer, delimiter=delimiter, lineterminator="\r\n")

    def write(self, records: Sequence[Sequence[Any]]) -> None:
        buffer = self._buffer
        buffer.seek(0)
        buffer.truncate()
        self._writer.writerows(records)
        text = buffer.getvalue()
        if "\r" in text:  # a cell holds one: write line by line with \r quoted
            parts = []
            for record in records:
                buffer.seek(0)
                buffer.truncate()
                self._careful.writerow(record)
                parts.append(buffer.getvalue()[:-2] + "\n")
            text = "".join(parts)
        self._handle.write(text)


def _records(batch: Rows, names: list[str], uniform: bool) -> Sequence[Sequence[Any]]:
    """The batch's rows as records of ``names``, each value in its written form."""
    if not uniform:
        records: list[Any] = [tuple(row.get(name) for name in names) for row in batch]
    elif len(names) == 1:
        records = [(row[names[0]],) for row in batch]
    else:
        records = list(map(itemgetter(*names), batch))
    columns = list(zip(*records, strict=True))
    changed = False
    for index, values in enumerate(columns):
        formatted = format_column(values)
        if formatted is not values:
            columns[index] = formatted  # type: ignore[call-overload]
            changed = True
    return list(zip(*columns, strict=True)) if changed else records


def _widen(temporary: str, columns: list[str], encoding: str, delimiter: str) -> None:
    """Rewrite the file with the full header: columns first seen after the header was written
    were added at the end, so the earlier lines only lack their last (empty) fields."""
    folder = Path(temporary).parent
    fd, wider = tempfile.mkstemp(prefix=".th2etl-widen.", suffix=".tmp", dir=folder)
    try:
        with (
            open(temporary, newline="", encoding=encoding) as source,
            os.fdopen(fd, "w", newline="", encoding=encoding) as target,
        ):
            reader = csv.reader(source, delimiter=delimiter)
            lines = _Lines(target, delimiter)
            next(reader, None)
            lines.write([columns])
            width = len(columns)
            while chunk := list(islice(reader, 5000)):
                lines.write([row + [""] * (width - len(row)) for row in chunk])
        os.replace(wider, temporary)
    except BaseException:
        Path(wider).unlink(missing_ok=True)
        raise
