"""What a CSV cell of each ``csv_loader`` type may hold: the accepted syntax, defined once.

``csv_loader`` parses cells in Python with these rules; the fast path that streams a CSV file
straight into ``postgres_exporter`` lets PostgreSQL parse them (see :mod:`th2etl.blocs._pg_fast`),
checking first, on the client, what PostgreSQL would take beyond them. Both paths accept exactly:

=========  ==================================================================================
type       accepted text (an empty cell, quoted or not, is None / NULL)
=========  ==================================================================================
str        anything, as is (an empty cell is the empty string)
int        optional spaces, an optional sign, ASCII digits, optional spaces (``" -12 "``); no
           ``_`` separators, no other digits (Python's ``int()`` would take ``"1_000"`` and
           ``"١٢"``; PostgreSQL up to 15 does not). Past bigint's range the exporter widens the
           column to numeric.
float      a decimal or exponent number (``"1.5"``, ``".5"``, ``"1e5"``), a C99 hexadecimal
           float (``"0x1p3"``, as PostgreSQL reads it), ``inf``/``infinity``/``nan`` in any
           case with an optional sign; no ``_`` separators
decimal    a decimal or exponent number, ``NaN``, ``Infinity`` with an optional sign; no ``_``
bool       PostgreSQL's words, in any case, spaces around allowed: ``t``, ``true``, ``y``,
           ``yes``, ``on``, ``1`` and ``f``, ``false``, ``n``, ``no``, ``off``, ``0``, or any
           unambiguous beginning of them (``tr``, ``of``)
date       ``YYYY-MM-DD`` (ISO 8601, ASCII digits, nothing around it)
datetime   ``YYYY-MM-DD``, then optionally ``T`` or a space, ``HH:MM``, ``:SS``, ``.ffffff`` (1-6
           digits) and an offset ``Z``, ``+HH``, ``+HHMM`` or ``+HH:MM``; with an offset it is
           aware (timestamptz), without one naive (timestamp)
json       any JSON text (Python's ``json.loads``); the fast path leaves such files to Python
=========  ==================================================================================

``csv_exporter`` writes each value in one form, on its general path (:func:`format_cell`) and on
its fast path from ``postgres_loader`` (the server's COPY output, see
:mod:`th2etl.blocs._pg_unload`) alike; every form is one that ``csv_loader`` reads back with the
value's type, and that PostgreSQL reads too:

==============  ===============================================================================
value           written as
==============  ===============================================================================
None, ``""``    an empty cell (``csv_loader`` reads it as None in a typed column, ``""`` in a
                str column)
str             as is
bool            ``true`` / ``false``
int             its digits
float           PostgreSQL's form: the shortest digits that read back as the same float, with no
                ``.0`` (``1``, ``0.1``), an exponent from 1e15 up and below 1e-4 (``1e+15``,
                ``1.5e-05``); ``Infinity``, ``-Infinity``, ``NaN``
Decimal         fixed-point digits, as many as the value holds (``0.0000001``, ``1.50``);
                ``NaN``, ``Infinity``, ``-Infinity``
date            ``YYYY-MM-DD``
datetime        ``YYYY-MM-DD HH:MM:SS``, then the fraction without trailing zeros (``.5``), then
                for an aware one its UTC offset as ``+HH``, ``+HH:MM`` or ``+HH:MM:SS``
time            ``HH:MM:SS`` and the fraction as above (and the offset of an aware one)
dict, list      JSON (``json.dumps``, non-ASCII characters as they are)
bytes           ``\\x`` and lower-case hex digits (PostgreSQL's bytea form)
others          ``str(value)`` (UUID: ``8-4-4-4-12`` lower-case hex digits)
==============  ===============================================================================

Lines end with ``\n``; a cell is quoted (``"``, a quote doubled) when it holds the delimiter, a
quote, ``\r`` or ``\n``, as PostgreSQL quotes it.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

__all__ = [
    "AWARE_DATETIME",
    "BOOL_WORDS",
    "COLUMN_TYPES",
    "DATE",
    "DATETIME",
    "FAST_PARSERS",
    "NAIVE_DATETIME",
    "format_cell",
    "format_column",
]

_DAY = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
_TIME = r"[T ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?"
_OFFSET = r"(Z|[+-](?:[01][0-9]|2[0-3])(?::?[0-5][0-9])?)"
DATE = re.compile(_DAY)
"""The accepted ``date`` syntax (``fullmatch``)."""
DATETIME = re.compile(f"{_DAY}(?:{_TIME}{_OFFSET}?)?")
"""The accepted ``datetime`` syntax (``fullmatch``); group 1 is the offset, if any."""
NAIVE_DATETIME = f"{_DAY}(?:{_TIME})?"
AWARE_DATETIME = f"{_DAY}{_TIME}{_OFFSET}"
"""The two halves of :data:`DATETIME`, as patterns."""


def _bool_words() -> dict[str, bool]:
    # PostgreSQL's boolin: these words, or any beginning of one that no other word shares.
    words = {"true": True, "yes": True, "on": True, "1": True}
    words |= {"false": False, "no": False, "off": False, "0": False}
    found: dict[str, bool] = {}
    for word, value in words.items():
        for end in range(1, len(word) + 1):
            prefix = word[:end]
            if sum(other.startswith(prefix) for other in words) == 1:
                found[prefix] = value
    return found


BOOL_WORDS: dict[str, bool] = _bool_words()
"""Every accepted ``bool`` cell, lower case and stripped, and its value."""


def _plain(text: str) -> str:
    if "_" in text or not text.isascii():
        raise ValueError(text)
    return text


def parse_int(text: str) -> int:
    return int(_plain(text))


def parse_float(text: str) -> float:
    try:
        return float(_plain(text))
    except ValueError:
        stripped = text.strip().lstrip("+-")
        if stripped[:2] not in ("0x", "0X"):
            raise
        value = float.fromhex(text.strip())
        return value


def parse_decimal(text: str) -> Decimal:
    try:
        value = Decimal(_plain(text))
    except InvalidOperation:
        raise ValueError(text) from None
    if value.is_snan():
        raise ValueError(text)
    return value


def parse_bool(text: str) -> bool:
    try:
        return BOOL_WORDS[text.strip().lower()]
    except KeyError:
        raise ValueError(text) from None


def parse_date(text: str) -> dt.date:
    if DATE.fullmatch(text) is None:
        raise ValueError(text)
    return dt.date.fromisoformat(text)


def parse_datetime(text: str) -> dt.datetime:
    if DATETIME.fullmatch(text) is None:
        raise ValueError(text)
    return dt.datetime.fromisoformat(text)


COLUMN_TYPES: dict[str, Callable[[str], Any]] = {
    "str": str,
    "int": parse_int,
    "float": parse_float,
    "decimal": parse_decimal,
    "bool": parse_bool,
    "date": parse_date,
    "datetime": parse_datetime,
    "json": json.loads,
}
"""Names accepted in ``csv_loader``'s ``types`` and how a cell is parsed. An empty cell is None."""

_BOOL_EXACT = {
    spelling: value
    for word, value in BOOL_WORDS.items()
    for spelling in (word, word.upper(), word.capitalize())
}

FAST_PARSERS: dict[str, Callable[[str], Any]] = {"bool": _BOOL_EXACT.__getitem__}
"""Quicker parsers for the usual spellings, looked up in C; the full parser of
:data:`COLUMN_TYPES` has the last word on a cell they refuse."""


# --- written forms ---------------------------------------------------------------------------

_FLOAT_WORDS = {"inf": "Infinity", "-inf": "-Infinity", "nan": "NaN"}


def format_float(value: float) -> str:
    """PostgreSQL's float8 text (``extra_float_digits`` 1, its default): Python's ``repr``
    has the same shortest digits, but writes ``1.0`` and keeps fixed notation up to 1e16."""
    text = float.__repr__(value)  # a subclass's repr may differ (numpy's float64)
    if text[-2:] == ".0":
        text = text[:-2]
    elif "e" in text:
        return text if -_TIES < value < _TIES else _off_the_half_way(value, text)
    elif text in _FLOAT_WORDS:
        return _FLOAT_WORDS[text]
    if -1e15 < value < 1e15:
        return text
    # 1e15 <= |value| < 1e16: sixteen digits before the point, PostgreSQL's exponent form.
    sign = "-" if text[0] == "-" else ""
    digits = text.lstrip("-").replace(".", "").rstrip("0")
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{mantissa}e+15"


_TIES = 2.0**54  # from here on, half-way points between two floats are integers


def _off_the_half_way(value: float, text: str) -> str:
    """PostgreSQL's shortest digits never lie half-way between two floats (Python's may, when
    reading them back rounds to even): the shortest digits strictly closer to ``value``."""
    exact = int(value)
    shown = int(Decimal(text))
    if shown == exact:
        return text
    neighbour = int(math.nextafter(value, math.inf if shown > exact else -math.inf))
    if 2 * shown != exact + neighbour:
        return text
    for precision in range(len(text.split("e")[0].strip("-").replace(".", "")) - 1, 17):
        candidate = f"{value:.{precision}e}"
        closer = 2 * abs(int(Decimal(candidate)) - exact) < abs(neighbour - exact)
        if closer and float(candidate) == value:
            mantissa, exponent = candidate.split("e")
            if "." in mantissa:
                mantissa = mantissa.rstrip("0").rstrip(".")
            return f"{mantissa}e{exponent}"
    return text


def format_decimal(value: Decimal) -> str:
    return format(value, "f")


def _offset(offset: dt.timedelta | None) -> str:
    if offset is None:
        return ""
    seconds = int(offset.total_seconds())
    sign = "-" if seconds < 0 else "+"
    hours, rest = divmod(abs(seconds), 3600)
    minutes, seconds = divmod(rest, 60)
    if seconds:
        return f"{sign}{hours:02d}:{minutes:02d}:{seconds:02d}"
    if minutes:
        return f"{sign}{hours:02d}:{minutes:02d}"
    return f"{sign}{hours:02d}"


def format_datetime(value: dt.datetime) -> str:
    if value.microsecond:
        text = value.replace(tzinfo=None).isoformat(" ", "microseconds").rstrip("0")
    else:
        text = value.replace(tzinfo=None).isoformat(" ", "seconds")
    return text if value.tzinfo is None else text + _offset(value.utcoffset())


def format_time(value: dt.time) -> str:
    if value.microsecond:
        text = value.replace(tzinfo=None).isoformat("microseconds").rstrip("0")
    else:
        text = value.replace(tzinfo=None).isoformat("seconds")
    return text if value.tzinfo is None else text + _offset(value.utcoffset())


def format_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def format_bytes(value: bytes | bytearray | memoryview) -> str:
    return "\\x" + bytes(value).hex()


_BOOL_TEXT = {True: "true", False: "false"}
_FORMATS: dict[type, Callable[[Any], str]] = {
    bool: _BOOL_TEXT.__getitem__,
    float: format_float,
    Decimal: format_decimal,
    dt.datetime: format_datetime,
    dt.time: format_time,
    dict: format_json,
    list: format_json,
    bytes: format_bytes,
    bytearray: format_bytes,
    memoryview: format_bytes,
}
# Written as str() writes them: no conversion needed.
_PLAIN: frozenset[type] = frozenset((str, int, type(None), dt.date, uuid.UUID))


def format_cell(value: Any) -> Any:
    """The written form of ``value`` (None stays None: the CSV writer leaves the cell empty;
    other values it writes with ``str()``)."""
    found = _FORMATS.get(type(value))
    if found is not None:
        return found(value)
    if value is None or type(value) in _PLAIN:
        return value
    for kind, format_ in _FORMATS.items():  # subclasses (a bool is checked first)
        if isinstance(value, kind):
            return format_(value)
    return value


def format_column(values: Sequence[Any]) -> Sequence[Any]:
    """``values`` in their written forms; the same sequence when none needs a change."""
    kinds = set(map(type, values))
    if kinds <= _PLAIN:
        return values
    if kinds <= {bool, type(None)}:
        return list(map(_BOOL_TEXT.get, values))
    return list(map(format_cell, values))
