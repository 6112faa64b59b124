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

``csv_exporter`` writes what a type's value prints as (``str(value)``), and bool as ``True`` /
``False``, which ``csv_loader`` reads back with the same types.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
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
