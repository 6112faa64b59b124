"""The fast path of ``csv_loader`` -> ``postgres_exporter``: the file's bytes, as they are, into
COPY ... (FORMAT csv), the server parsing each typed cell (no Python value, no dict per row).

Used when the engine fuses the two blocs (nothing sits between them and the run keeps no rows,
see :mod:`th2etl.pipelines.engine`), the exporter creates or replaces its table, the server is
PostgreSQL 15 or older (16 reads ``1_000`` and ``0x1F`` as integers, which the accepted syntax
refuses), the file is UTF-8 with a plain header line, and no column is typed ``json``.

The result is the general path's, exactly: the columns get the types the general path would
infer from the parsed values (int -> bigint, float -> double precision, decimal -> numeric,
bool -> boolean, date -> date, datetime -> timestamp or timestamptz, others -> text; a typed
column that holds no value at all -> text), and the cells accepted are those of
:mod:`th2etl.blocs._cells`: PostgreSQL parses int, float, decimal and bool cells exactly so, and
the client checks date and datetime cells against the accepted syntax, which is narrower than
PostgreSQL's. Anything the server or the check refuses (a malformed line, a bad value, an int
past bigint's range, naive and aware datetimes mixed, no rows at all) raises :class:`Refused`:
the caller rolls the fast path back and runs the general path, which either succeeds the same
way or fails with the general path's message naming the line, the row, the column and the value.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from dataclasses import dataclass
from itertools import repeat
from operator import itemgetter
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from th2etl._postgres import check_identifier
from th2etl.blocs._cells import AWARE_DATETIME, DATE, DATETIME, NAIVE_DATETIME
from th2etl.exceptions import BlocError, ValidationError

if TYPE_CHECKING:
    from th2etl.blocs.base import Bloc
    from th2etl.pipelines.context import RunContext

__all__ = ["CsvPlan", "Refused", "copy_csv", "plan_csv", "untype_empty_columns"]

_Connection = psycopg.Connection[Any]

_SQL_TYPES = {
    "int": "bigint",
    "float": "double precision",
    "decimal": "numeric",
    "bool": "boolean",
    "date": "date",
    "str": "text",
}
_CHUNK = 1 << 20  # bytes sent per COPY write (and checked at once)
_NAIVE = re.compile(NAIVE_DATETIME.encode())
_AWARE = re.compile(AWARE_DATETIME.encode())
_DATE = re.compile(DATE.pattern.encode())


class Refused(Exception):
    """The fast path cannot take this file as the general path would: use the general path."""


@dataclass(frozen=True)
class CsvPlan:
    path: Path
    delimiter: str
    bom: bool
    types: dict[str, str]


def plan_csv(loader: Bloc) -> CsvPlan | None:
    """The fast path's plan for a ``csv_loader``'s config, or None when it does not apply."""
    config = loader.config
    types: dict[str, str] = dict(config.get("types") or {})
    if "json" in types.values() or len(config["delimiter"]) != 1:
        return None
    try:
        encoding = codecs.lookup(config["encoding"]).name
    except LookupError:
        return None
    if encoding not in ("utf-8", "utf-8-sig"):
        return None
    return CsvPlan(Path(config["file_path"]), config["delimiter"], encoding == "utf-8-sig", types)


def copy_csv(
    where: str,
    context: RunContext,
    conn: _Connection,
    schema: str,
    table: str,
    plan: CsvPlan,
) -> int:
    """Create ``schema.table`` and COPY the file into it; return the rows written. Raises
    :class:`Refused` (the caller's savepoint then undoes everything)."""
    if conn.info.server_version >= 160000:
        raise Refused("PostgreSQL 16 reads integers more widely than the accepted syntax")
    try:
        handle = plan.path.open("rb")
    except OSError:
        raise Refused("the file cannot be opened: the general path says why") from None
    with handle:
        header = _header(handle, plan)
        first = handle.read(_CHUNK)
        checks, columns = _columns(header, plan, first)
        definition = sql.SQL(", ").join(
            sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(kind)) for name, kind in columns
        )
        conn.execute(
            sql.SQL("CREATE TABLE {} ({})").format(sql.Identifier(schema, table), definition)
        )
        typed = [sql.Identifier(name) for name in header if name in plan.types]
        text = [sql.Identifier(name) for name in header if name not in plan.types]
        options = [
            sql.SQL("FORMAT csv"),
            sql.SQL("DELIMITER {}").format(sql.Literal(plan.delimiter)),
        ]
        if typed:
            options.append(sql.SQL("FORCE_NULL ({})").format(sql.SQL(", ").join(typed)))
        if text:
            options.append(sql.SQL("FORCE_NOT_NULL ({})").format(sql.SQL(", ").join(text)))
        statement = sql.SQL("COPY {} ({}) FROM STDIN ({})").format(
            sql.Identifier(schema, table),
            sql.SQL(", ").join(map(sql.Identifier, header)),
            sql.SQL(", ").join(options),
        )
        try:
            with conn.cursor() as cur:
                with cur.copy(statement) as copy:
                    tail = b""
                    chunk = first
                    while chunk:
                        if context.cancel_requested:
                            raise BlocError(
                                f"{where}: the run was cancelled while writing; nothing was "
                                "written, the table is unchanged"
                            )
                        data = tail + chunk
                        cut = _last_record_end(data)
                        _check(data[:cut], checks, plan.delimiter, len(header))
                        copy.write(data[:cut])
                        tail = data[cut:]
                        chunk = handle.read(_CHUNK)
                    if tail:
                        _check(tail, checks, plan.delimiter, len(header))
                        copy.write(tail)
                rows = cur.rowcount
        except psycopg.Error as exc:
            if context.cancel_requested:
                raise
            raise Refused(str(exc)) from None
    if rows <= 0:
        raise Refused("no rows: the general path decides what an empty input does")
    untype_empty_columns(
        conn, schema, table, [name for name, _ in columns if plan.types.get(name, "str") != "str"]
    )
    return rows


def _header(handle: IO[bytes], plan: CsvPlan) -> list[str]:
    line = handle.readline()
    if plan.bom and line.startswith(codecs.BOM_UTF8):
        line = line[len(codecs.BOM_UTF8) :]
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("the header is not UTF-8") from None
    if '"' in text or not text.endswith("\n"):
        raise Refused("a quoted header, or no data line")
    header = text.rstrip("\r\n").split(plan.delimiter)
    if len(set(header)) != len(header) or any(name not in header for name in plan.types):
        raise Refused("duplicate or missing columns: the general path says which")
    for name in header:
        try:
            check_identifier("column name", name, "")
        except ValidationError:
            raise Refused("a column name the general path refuses") from None
    return header


def _columns(
    header: list[str], plan: CsvPlan, first: bytes
) -> tuple[list[tuple[int, re.Pattern[bytes]]], list[tuple[str, str]]]:
    """The table's columns and the client-side checks (column index, pattern)."""
    checks: list[tuple[int, re.Pattern[bytes]]] = []
    columns: list[tuple[str, str]] = []
    for index, name in enumerate(header):
        kind = plan.types.get(name, "str")
        if kind == "date":
            checks.append((index, _DATE))
        if kind == "datetime":
            # Naive or aware, as the column's first value: a later mix is refused by the check.
            sample = _values(first[: _last_record_end(first)], index, plan.delimiter)
            value = next((v for v in sample if v), b"")
            match = DATETIME.fullmatch(value.decode("ascii", "replace"))
            aware = match is not None and match.group(1) is not None
            checks.append((index, _AWARE if aware else _NAIVE))
            columns.append((name, "timestamp with time zone" if aware else "timestamp"))
            continue
        columns.append((name, _SQL_TYPES[kind]))
    return checks, columns


def _last_record_end(data: bytes) -> int:
    """Where the last complete record of ``data`` (which starts at a record) ends, after its
    newline; a newline inside quotes ends no record."""
    end = data.rfind(b"\n") + 1
    while end > 0 and data.count(b'"', 0, end) % 2:
        end = data.rfind(b"\n", 0, end - 1) + 1
    return end


def _check(
    records: bytes, checks: list[tuple[int, re.Pattern[bytes]]], delimiter: str, width: int
) -> None:
    for index, pattern in checks:
        if _all_shapes_fit(records, index, width, delimiter, pattern):
            continue
        for value in _values(records, index, delimiter):
            if value and pattern.fullmatch(value) is None:
                raise Refused(f"{value!r} is not in the accepted syntax")


_ZEROS = bytes.maketrans(b"0123456789", b"0000000000")
# Where PostgreSQL takes a value whose digits the accepted syntax refuses: 24:00:00 and a 60th
# second. (Other digits out of range, such as a 13th month or a 61st minute, PostgreSQL refuses,
# and the general path then says why.)
_HAZARDS = (b" 24:", b"T24:", b":60")


def _all_shapes_fit(
    records: bytes, index: int, width: int, delimiter: str, pattern: re.Pattern[bytes]
) -> bool:
    """Whether every cell of column ``index`` is in the accepted syntax, checked by shape: each
    distinct cell with its digits zeroed is matched once (1,000,000 timestamps: 0.5 s of CPU
    instead of 1.2 s for a match per cell). False when unsure (quotes, ragged or blank lines,
    a hazard): the caller then looks at each cell."""
    if b'"' in records:
        return False
    # With \r\n line ends, a cell of the last column keeps its \r: no shape fits, the caller
    # looks at each cell.
    lines = records.split(b"\n")
    if not lines[-1]:
        lines.pop()
    # Split off as few cells as needed, from the nearer end. A line of another width may give
    # another column's cell here, but PostgreSQL refuses that line anyway.
    if index < width - index:
        split = map(bytes.split, lines, repeat(delimiter.encode()), repeat(index + 1))
        pick = itemgetter(index)
    else:
        split = map(bytes.rsplit, lines, repeat(delimiter.encode()), repeat(width - index))
        pick = itemgetter(1)
    try:
        cells = list(map(pick, split))
    except IndexError:
        return False
    joined = b"\n".join(cells)
    if any(hazard in joined for hazard in _HAZARDS):
        return False
    shapes = set(joined.translate(_ZEROS).split(b"\n"))
    return all(not shape or pattern.fullmatch(shape) for shape in shapes)


def _values(records: bytes, index: int, delimiter: str) -> list[bytes]:
    """The cells of column ``index`` in complete CSV records."""
    if b'"' not in records:
        # No quotes: every newline ends a record and every delimiter ends a cell.
        sep = delimiter.encode()
        if b"\r" in records:
            records = records.replace(b"\r\n", b"\n")
        try:
            return [line.split(sep, index + 1)[index] for line in records.split(b"\n") if line]
        except IndexError:
            raise Refused("a line with too few fields: the general path names it") from None
    try:
        text = records.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("bytes that are not UTF-8: the general path names the line") from None
    out = []
    for row in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter):
        if index >= len(row):
            raise Refused("a line with too few fields: the general path names it")
        out.append(row[index].encode())
    return out


def untype_empty_columns(conn: _Connection, schema: str, table: str, typed: list[str]) -> None:
    """A typed column with no value at all is text on the general path (its values are all
    None): make it so here too. One look per column, which stops at its first value."""
    if not typed:
        return
    target = sql.Identifier(schema, table)
    found = conn.execute(
        sql.SQL("SELECT {}").format(
            sql.SQL(", ").join(
                sql.SQL("EXISTS (SELECT FROM {} WHERE {} IS NOT NULL)").format(
                    target, sql.Identifier(name)
                )
                for name in typed
            )
        )
    ).fetchone()
    assert found is not None
    for name, present in zip(typed, found, strict=True):
        if not present:
            conn.execute(
                sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE text USING NULL").format(
                    target, sql.Identifier(name)
                )
            )
