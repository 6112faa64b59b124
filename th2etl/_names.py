"""The one rule for names of blocs, pipelines, triggers and schedulers."""

from __future__ import annotations

import re

from th2etl.exceptions import ValidationError

MAX_NAME_LENGTH = 128
NAME_PATTERN = r"^[A-Za-z0-9_.\-]+$"
"""The rule as a JSON Schema pattern (the API's OpenAPI document shows it)."""
_NAME = re.compile(NAME_PATTERN[1:-1])


def check_name(kind: str, name: object) -> str:
    """Return ``name`` when it is a valid name for a ``kind`` (bloc, pipeline, ...), else raise."""
    if not isinstance(name, str) or not name:
        raise ValidationError(f"{kind} name must be a non-empty string, got {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise ValidationError(
            f"{kind} name {name[:40]!r}... is {len(name)} characters long; "
            f"use at most {MAX_NAME_LENGTH}"
        )
    if _NAME.fullmatch(name) is None:
        raise ValidationError(
            f"{kind} name {name!r} has characters that are not allowed; "
            "use letters, digits, '_', '-' and '.' only"
        )
    return name
