"""File blocs: ``csv_loader`` and ``csv_exporter``."""

from __future__ import annotations

import codecs
import csv
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from th2etl.blocs._cells import COLUMN_TYPES, FAST_PARSERS
from th2etl.blocs.base import ConfigField, ExporterBloc, LoaderBloc, collect
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

    def stream(self, context: RunContext, batches: Iterable[Rows]) -> Iterator[Rows]:
        path = self.target(context)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write next to the target and rename once the input ended without error: a failed or
        # cancelled run never leaves a half-written file, and the old file stays until then.
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        options = {"delimiter": self.config["delimiter"]}
        columns: dict[str, None] = {}
        written: list[str] = []  # the columns of the header line as written
        count = 0
        try:
            with os.fdopen(fd, "w", newline="", encoding=self.config["encoding"]) as handle:
                writer: csv.DictWriter[str] | None = None
                lines = csv.writer(handle, **options)
                for batch in batches:
                    uniform = True  # every row has exactly the columns (the usual case)
                    for row in batch:
                        if row.keys() != columns.keys():
                            uniform = False
                            columns.update(dict.fromkeys(row))
                    if writer is None:
                        written = list(columns)
                        writer = csv.DictWriter(handle, fieldnames=written, **options)
                        writer.writeheader()
                    elif len(columns) != len(writer.fieldnames):
                        writer = csv.DictWriter(handle, fieldnames=list(columns), **options)
                    if uniform and len(writer.fieldnames) > 1:
                        # The same lines as DictWriter's, without its check of each row's keys.
                        lines.writerows(map(itemgetter(*writer.fieldnames), batch))
                    else:
                        writer.writerows(batch)
                    count += len(batch)
                if writer is None:
                    csv.DictWriter(handle, fieldnames=[], **options).writeheader()
            if len(written) != len(columns):
                _widen(temporary, written, list(columns), self.config["encoding"], options)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        yield [{"file_path": str(path), "rows": count}]


def _widen(
    temporary: str, written: list[str], columns: list[str], encoding: str, options: Any
) -> None:
    """Rewrite the file with the full header: columns first seen after the header was written
    were added at the end, so the earlier lines only lack their last (empty) fields."""
    folder = Path(temporary).parent
    fd, wider = tempfile.mkstemp(prefix=".th2etl-widen.", suffix=".tmp", dir=folder)
    try:
        with (
            open(temporary, newline="", encoding=encoding) as source,
            os.fdopen(fd, "w", newline="", encoding=encoding) as target,
        ):
            reader = csv.reader(source, **options)
            writer = csv.writer(target, **options)
            next(reader, None)
            writer.writerow(columns)
            width = len(columns)
            for row in reader:
                writer.writerow(row + [""] * (width - len(row)) if len(row) < width else row)
        os.replace(wider, temporary)
    except BaseException:
        Path(wider).unlink(missing_ok=True)
        raise
