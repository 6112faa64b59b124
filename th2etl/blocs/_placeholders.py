"""``${env:NAME}``, ``${var:NAME}`` and ``${run:NAME[:FORMAT]}`` references in string config
values.

They are resolved when a bloc runs, so secrets live in the environment, never in stored configs.
``${run:...}`` names the run's logical time (see :mod:`th2etl.logical_time`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from th2etl.exceptions import ValidationError
from th2etl.logical_time import RUN_NAMES, LogicalTime, unknown_run_name

# group 1 and 2: env/var and its name; group 3 and 4: a run value's name and optional format.
_REFERENCE = re.compile(
    r"\$\{(?:(env|var):([A-Za-z_][A-Za-z0-9_.\-]*)|run:([A-Za-z_][A-Za-z0-9_]*)(?::([^}]+))?)\}"
)
_ANY_REFERENCE = re.compile(r"\$\{[^}]*\}")


def is_whole_reference(value: Any) -> bool:
    """True when the whole string is one reference (its type is known only after resolving)."""
    return isinstance(value, str) and _REFERENCE.fullmatch(value) is not None


def check_references(value: Any, where: str) -> None:
    """Refuse a malformed reference such as ``${ENV:X}`` or ``${env:}`` before anything runs."""
    if isinstance(value, str):
        for match in _ANY_REFERENCE.finditer(value):
            reference = _REFERENCE.fullmatch(match.group(0))
            if reference is None:
                raise ValidationError(
                    f"{where}: malformed reference {match.group(0)!r}; "
                    "write ${env:NAME} for an environment variable, "
                    "${var:NAME} for a run variable or ${run:NAME} for the run's logical time"
                )
            if reference.group(3) is not None and reference.group(3) not in RUN_NAMES:
                raise ValidationError(f"{where}: {unknown_run_name(reference.group(3))}")
    elif isinstance(value, Mapping):
        for item in value.values():
            check_references(item, where)
    elif isinstance(value, list):
        for item in value:
            check_references(item, where)


def resolve(
    value: Any, variables: Mapping[str, Any], where: str, run: LogicalTime | None = None
) -> Any:
    """Return ``value`` with every reference replaced, recursing into dicts and lists.

    A string that is exactly one ``${var:NAME}`` takes the variable's own value (an int stays
    an int); references inside a longer string are formatted into it. ``run`` gives the
    ``${run:...}`` values (a run without one refuses them).
    """
    if isinstance(value, str):
        if "${" not in value:
            return value
        whole = _REFERENCE.fullmatch(value)
        if whole is not None:
            return _lookup(whole, variables, where, run)
        return _REFERENCE.sub(lambda m: str(_lookup(m, variables, where, run)), value)
    if isinstance(value, Mapping):
        return {key: resolve(item, variables, where, run) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve(item, variables, where, run) for item in value]
    return value


def _lookup(
    match: re.Match[str], variables: Mapping[str, Any], where: str, run: LogicalTime | None
) -> Any:
    kind, name = match.group(1), match.group(2)
    if kind is None:
        if run is None:
            raise ValidationError(
                f"{where}: {match.group(0)} needs the run's logical time, which this run was "
                "not given; run it through th2etl.pipelines.run_pipeline (or a scheduler)"
            )
        return run.value(match.group(3), match.group(4))
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
