"""``${env:NAME}`` and ``${var:NAME}`` references in string config values.

They are resolved when a bloc runs, so secrets live in the environment, never in stored configs.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from th2etl.exceptions import ValidationError

_REFERENCE = re.compile(r"\$\{(env|var):([A-Za-z_][A-Za-z0-9_.\-]*)\}")
_ANY_REFERENCE = re.compile(r"\$\{[^}]*\}")


def is_whole_reference(value: Any) -> bool:
    """True when the whole string is one reference (its type is known only after resolving)."""
    return isinstance(value, str) and _REFERENCE.fullmatch(value) is not None


def check_references(value: Any, where: str) -> None:
    """Refuse a malformed reference such as ``${ENV:X}`` or ``${env:}`` before anything runs."""
    if isinstance(value, str):
        for match in _ANY_REFERENCE.finditer(value):
            if _REFERENCE.fullmatch(match.group(0)) is None:
                raise ValidationError(
                    f"{where}: malformed reference {match.group(0)!r}; "
                    "write ${env:NAME} for an environment variable "
                    "or ${var:NAME} for a run variable"
                )
    elif isinstance(value, Mapping):
        for item in value.values():
            check_references(item, where)
    elif isinstance(value, list):
        for item in value:
            check_references(item, where)


def resolve(value: Any, variables: Mapping[str, Any], where: str) -> Any:
    """Return ``value`` with every reference replaced, recursing into dicts and lists.

    A string that is exactly one ``${var:NAME}`` takes the variable's own value (an int stays
    an int); references inside a longer string are formatted into it.
    """
    if isinstance(value, str):
        if "${" not in value:
            return value
        whole = _REFERENCE.fullmatch(value)
        if whole is not None:
            return _lookup(whole.group(1), whole.group(2), variables, where)
        return _REFERENCE.sub(
            lambda m: str(_lookup(m.group(1), m.group(2), variables, where)), value
        )
    if isinstance(value, Mapping):
        return {key: resolve(item, variables, where) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve(item, variables, where) for item in value]
    return value


def _lookup(kind: str, name: str, variables: Mapping[str, Any], where: str) -> Any:
    if kind == "env":
        found = os.environ.get(name)
        if found is None:
            raise ValidationError(
                f"{where}: environment variable {name!r} is not set; "
                f"set it (export {name}=...) before the run"
            )
        return found
    if name not in variables:
        known = ", ".join(sorted(variables)) or "none"
        raise ValidationError(
            f"{where}: run variable {name!r} was not given (given: {known}); "
            f"pass it when the run starts: variables={{{name!r}: ...}} in Python, "
            f'--var {name}=... with th2etl run, or {{"variables": {{"{name}": ...}}}} '
            "in the API's run request"
        )
    return variables[name]
