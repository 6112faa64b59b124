"""Domain type aliases, defined once."""

from __future__ import annotations

from typing import Any

__all__ = ["JSON", "Row", "Rows"]

Row = dict[str, Any]
"""One record: column name to a Python value."""

Rows = list[Row]
"""What a bloc receives and returns."""

JSON = dict[str, Any]
"""A JSON-ready mapping (what ``to_dict()`` methods return)."""
