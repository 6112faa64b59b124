"""Column names and PostgreSQL types inferred from rows, for ``postgres_exporter``.

Python type -> column type: int -> bigint (numeric past bigint's range), float -> double
precision, Decimal -> numeric, bool -> boolean, str -> text, date -> date, datetime ->
timestamptz when aware else timestamp, dict/list -> jsonb (also time, timedelta, UUID, bytes);
a column that is all None -> text. Mixed types widen only where no meaning is lost: bool+int ->
bigint, with float -> double precision, int+Decimal -> numeric, JSON values with dict/list ->
jsonb; any other mix is refused, naming two rows.

Two speeds. :func:`quick_columns` types int, str, datetime, dict and list columns from their
first non-None value: psycopg's binary dumpers refuse any other Python type in those columns
(and ints past bigint's range), so a wrong guess fails the COPY, never corrupts it, and the
caller retries with :func:`full_columns`, which looks at every value. Columns whose dumpers are
lenient (bool takes any object's truth value, date takes a datetime, double precision takes a
Decimal) are always typed from every value.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from operator import attrgetter, is_not, itemgetter, methodcaller
from typing import Any

from th2etl._postgres import check_identifier
from th2etl.exceptions import BlocError, ValidationError
from th2etl.types import Row, Rows

__all__ = [
    "Column",
    "bases_of",
    "decide",
    "full_columns",
    "quick_columns",
    "quick_names",
    "row_names",
    "row_values",
    "unknown_column",
    "zones_error",
]


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str
    """The type for CREATE TABLE."""
    copy_type: str
    """The type name for ``Copy.set_types`` (binary COPY)."""
    accepts: tuple[type, ...]
    """The Python types the column takes, to point at a value psycopg refused."""

    def check(self, value: Any) -> None:
        """Raise when psycopg's binary dumper for this column would refuse ``value``."""
        if value is None:
            return
        if not isinstance(value, self.accepts):
            raise TypeError(f"a {type(value).__name__} in a {self.sql_type} column")
        if self.copy_type == "jsonb":
            json.dumps(value)
        elif (
            isinstance(value, int)
            and self.copy_type == "int8"
            and not _INT8_MIN <= value <= _INT8_MAX
        ):
            raise OverflowError("out of bigint's range")


_INT8_MIN, _INT8_MAX = -(2**63), 2**63 - 1

# Python type -> (SQL type, COPY type). Order matters: bool before int, datetime before date.
_SIMPLE_TYPES: tuple[tuple[type, str, str], ...] = (
    (bool, "boolean", "bool"),
    (int, "bigint", "int8"),
    (float, "double precision", "float8"),
    (Decimal, "numeric", "numeric"),
    (str, "text", "text"),
    (dt.datetime, "timestamp", "timestamp"),
    (dt.date, "date", "date"),
    (dt.time, "time", "time"),
    (dt.timedelta, "interval", "interval"),
    (uuid.UUID, "uuid", "uuid"),
    (bytes, "bytea", "bytea"),
    (bytearray, "bytea", "bytea"),
    (dict, "jsonb", "jsonb"),
    (list, "jsonb", "jsonb"),
)
# Types whose binary dumper refuses every other Python type: safe to guess from one value.
_STRICT = (int, str, dt.datetime, dict, list)
SUPPORTED = "int, float, Decimal, bool, str, date, datetime, dict or list"
_not_none = partial(is_not, None)


def _base_type(kind: type) -> type | None:
    for base, _, _ in _SIMPLE_TYPES:
        if issubclass(kind, base):
            return bytes if base is bytearray else base
    return None


def _simple(name: str, base: type) -> Column:
    sql_type, copy_type = next((s, c) for b, s, c in _SIMPLE_TYPES if b is base)
    return Column(name, sql_type, copy_type, (base,))


def _getter(name: str, uniform: bool) -> Callable[[Row], Any]:
    return itemgetter(name) if uniform else methodcaller("get", name)


# --- names ---------------------------------------------------------------------------------


def _check_names(names: Sequence[Any], where: str) -> list[str]:
    for name in names:
        if not isinstance(name, str):
            raise BlocError(
                f"{where}: the rows have a key {name!r} ({type(name).__name__}); "
                "column names must be strings"
            )
        try:
            check_identifier("column name", name, where)
        except ValidationError as exc:  # a bad key in the data, not in the bloc's config
            raise BlocError(str(exc)) from None
    return list(names)


def quick_names(rows: Rows, where: str) -> tuple[list[str], bool] | None:
    """The first row's keys when every row has as many keys (likely the same ones), else None.

    The caller confirms the guess: itemgetter raises KeyError on a row without those keys.
    """
    if not rows or not isinstance(rows[0], dict):
        return None
    size = len(rows[0])
    if set(map(len, rows)) != {size}:
        return None
    return _check_names(list(rows[0]), where), True


def row_names(rows: Rows, where: str) -> tuple[list[str], bool]:
    """Every key in first-seen order, and whether all rows have exactly the same keys."""
    if not rows:
        return [], True
    columns: dict[Any, None] = {}
    uniform = True
    try:
        keys = rows[0].keys()
        columns.update(dict.fromkeys(keys))
        for row in rows:
            # Comparing key views runs in C; rows from one source nearly always match.
            if row.keys() != keys:
                uniform = False
                columns.update(dict.fromkeys(row))
    except AttributeError:
        number, bad = next((n, r) for n, r in enumerate(rows, 1) if not isinstance(r, dict))
        raise BlocError(
            f"{where}: row {number} is a {type(bad).__name__}, not a dict ({bad!r:.80}); "
            "a bloc's rows are dicts of column name to value"
        ) from None
    return _check_names(list(columns), where), uniform


def row_values(rows: Rows, names: Sequence[str], uniform: bool) -> Iterator[tuple[Any, ...]]:
    """Each row's values in ``names`` order (None for a missing key), one tuple at a time."""
    if len(names) == 1:
        only = names[0]
        return ((row.get(only),) for row in rows)
    get = itemgetter(*names)
    if uniform:
        return map(get, rows)
    return _values_slow(rows, names, get)


def _values_slow(
    rows: Rows, names: Sequence[str], get: Callable[[Row], Any]
) -> Iterator[tuple[Any, ...]]:
    for row in rows:
        try:
            yield get(row)
        except KeyError:
            yield tuple(row.get(name) for name in names)


# --- types ---------------------------------------------------------------------------------


def quick_columns(
    rows: Rows, names: list[str], uniform: bool, where: str, offset: int = 0
) -> list[Column]:
    """Types guessed from first values where a wrong guess cannot pass (see the docstring).

    ``offset``: the rows before ``rows`` in the stream, for the row numbers of messages.
    """
    columns = []
    for name in names:
        get = _getter(name, uniform)
        first = next(filter(_not_none, map(get, rows)), None)
        base = _base_type(type(first))
        if first is None:
            columns.append(unknown_column(name))
        elif base is dt.datetime:
            columns.append(_datetime_type(name, first.tzinfo is None))
        elif base in _STRICT:
            columns.append(_simple(name, base))
        else:
            columns.append(_full_column(rows, name, get, where, offset))
    return columns


def full_columns(
    rows: Rows, names: list[str], uniform: bool, where: str, offset: int = 0
) -> list[Column]:
    """Types from every value of every column."""
    return [_full_column(rows, name, _getter(name, uniform), where, offset) for name in names]


def unknown_column(name: str) -> Column:
    """A column with no value but None so far: ``text`` until a value says otherwise."""
    return Column(name, "text", "text", ())


def bases_of(column: Column) -> set[type]:
    """The Python base types a column was typed from."""
    return {bytes if kind is bytearray else kind for kind in column.accepts}


def _full_column(
    rows: Rows, name: str, get: Callable[[Row], Any], where: str, offset: int
) -> Column:
    kinds = set(map(type, map(get, rows)))
    kinds.discard(type(None))
    bases: set[type] = set()
    for kind in kinds:
        base = _base_type(kind)
        if base is None:
            number, value = _first(rows, get, partial(_is_type, kind))
            raise BlocError(
                f"{where}: row {offset + number}, column {name!r} holds {value!r:.80}, a "
                f"{kind.__name__}, which postgres_exporter cannot store; convert it to "
                f"{SUPPORTED} first"
            )
        bases.add(base)
    if not bases:
        return unknown_column(name)
    if bases <= {bool, int} and int in bases:
        return _int_column(rows, name, get)
    if bases == {dt.datetime}:
        return _datetime_column(rows, name, get, where, offset)

    def example(kind: type) -> str:
        number, value = _first(rows, get, partial(_has_base, kind))
        return f"row {offset + number}: {value!r:.40}"

    return decide(name, bases, where, example)


def decide(name: str, bases: set[type], where: str, example: Callable[[type], str]) -> Column:
    """The column for values of the ``bases`` types (more than one, or one simple type);
    ``example(kind)`` shows a value of that kind for the message refusing a mix."""
    if len(bases) == 1:
        return _simple(name, next(iter(bases)))
    if bases <= {bool, int}:
        return Column(name, "bigint", "int8", (int,))
    if bases <= {bool, int, float}:
        return Column(name, "double precision", "float8", (int, float))
    if bases <= {int, Decimal}:
        return Column(name, "numeric", "numeric", (int, Decimal))
    if bases & {dict, list} and bases <= {dict, list, str, int, float, bool}:
        return Column(name, "jsonb", "jsonb", (dict, list, str, int, float))
    shown = sorted(bases, key=lambda kind: kind.__name__)
    examples = [example(kind) for kind in shown[:2]]
    raise BlocError(
        f"{where}: column {name!r} mixes {' and '.join(kind.__name__ for kind in shown)} values "
        f"({'; '.join(examples)}); give the column one type (e.g. csv_loader's types, or a "
        "transformer), or create the table yourself and use if_exists 'append'"
    )


def _is_type(kind: type, value: Any) -> bool:
    return type(value) is kind


def _has_base(kind: type, value: Any) -> bool:
    return _base_type(type(value)) is kind


def _is_naive(value: Any) -> bool:
    return value.tzinfo is None


def _is_aware(value: Any) -> bool:
    return value.tzinfo is not None


def _first(rows: Rows, get: Callable[[Row], Any], test: Callable[[Any], bool]) -> tuple[int, Any]:
    for number, row in enumerate(rows, 1):
        value = get(row)
        if value is not None and test(value):
            return number, value
    return 0, None


def _int_column(rows: Rows, name: str, get: Callable[[Row], Any]) -> Column:
    low = min(filter(_not_none, map(get, rows)))
    high = max(filter(_not_none, map(get, rows)))
    if low < _INT8_MIN or high > _INT8_MAX:
        return Column(name, "numeric", "numeric", (int,))
    return Column(name, "bigint", "int8", (int,))


def _datetime_type(name: str, naive: bool) -> Column:
    if naive:
        return Column(name, "timestamp", "timestamp", (dt.datetime,))
    return Column(name, "timestamp with time zone", "timestamptz", (dt.datetime,))


def _datetime_column(
    rows: Rows, name: str, get: Callable[[Row], Any], where: str, offset: int
) -> Column:
    zones = set(map(attrgetter("tzinfo"), filter(_not_none, map(get, rows))))
    if None in zones and len(zones) > 1:
        naive = _first(rows, get, _is_naive)
        aware = _first(rows, get, _is_aware)
        raise zones_error(
            where,
            name,
            f"row {offset + aware[0]}: {aware[1]!r}",
            f"row {offset + naive[0]}: {naive[1]!r}",
        )
    return _datetime_type(name, None in zones)


def zones_error(where: str, name: str, aware: str, naive: str) -> BlocError:
    return BlocError(
        f"{where}: column {name!r} mixes datetimes with a time zone ({aware}) and without one "
        f"({naive}); make them all aware (timestamptz) or all naive (timestamp)"
    )
