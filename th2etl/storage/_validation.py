"""Checks run on a definition before storage writes it; pure functions, no database."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from th2etl._names import check_name
from th2etl.blocs.registry import get_bloc_class
from th2etl.exceptions import CronError, ValidationError
from th2etl.pipelines.pipeline import validate_stage_names
from th2etl.storage._core import dump_json
from th2etl.storage.records import BlocRecord

__all__ = [
    "check_bloc",
    "check_cron",
    "check_description",
    "check_stage_blocs",
    "check_stages",
]


def check_description(kind: str, name: str, description: object) -> str:
    if not isinstance(description, str):
        raise ValidationError(
            f"{kind} {name!r}: description must be a string, got {type(description).__name__}"
        )
    return description


def check_bloc(name: str, bloc_type: object, config: object) -> tuple[str, str, dict[str, Any]]:
    """Validate through the registry; return (bloc_type, config as JSON text, config as stored).

    The stored config is the given one, round-tripped through JSON (what reading it back gives).
    """
    check_name("bloc", name)
    if not isinstance(bloc_type, str) or not bloc_type:
        raise ValidationError(
            f"bloc {name!r}: bloc_type must be a non-empty string such as 'csv_loader', "
            f"got {bloc_type!r}"
        )
    config = {} if config is None else config
    if not isinstance(config, Mapping):
        raise ValidationError(
            f"bloc {name!r} ({bloc_type}): config must be an object (dict), "
            f"got {type(config).__name__}"
        )
    get_bloc_class(bloc_type, bloc_name=name).validate_config(config, name=name)
    text = dump_json(dict(config), f"bloc {name!r} ({bloc_type}): config")
    return bloc_type, text, json.loads(text)


def check_stages(name: str, stages: object) -> list[list[str]]:
    """The stages' shape and names (no database needed); the blocs are checked afterwards."""
    check_name("pipeline", name)
    shape = validate_stage_names(name, stages)
    for stage in shape:
        for bloc in stage:
            check_name("bloc", bloc)
    return shape


def check_stage_blocs(name: str, stages: list[list[str]], blocs: Mapping[str, BlocRecord]) -> None:
    """Every bloc named exists (``blocs`` holds those found) and reads only earlier stages."""
    missing = [bloc for stage in stages for bloc in stage if bloc not in blocs]
    if missing:
        listed = ", ".join(repr(bloc) for bloc in missing)
        raise ValidationError(
            f"pipeline {name!r} names bloc(s) {listed}, which do not exist; create them first "
            "with create_bloc(name, bloc_type, config=...)"
        )
    validate_stage_names(name, stages, {bloc: blocs[bloc].source_blocs for bloc in blocs})


def check_cron(name: str, cron_expression: object, timezone: object) -> tuple[str, str]:
    """Validate through :class:`~th2etl.scheduler.triggers.CronTrigger` (the one cron parser)."""
    # Imported here: the scheduler package imports storage.
    from th2etl.scheduler.triggers import CronTrigger

    check_name("trigger", name)
    if not isinstance(cron_expression, str) or not cron_expression.strip():
        raise CronError(
            f"trigger {name!r}: cron_expression must be a non-empty string such as "
            f"'0 * * * *', got {cron_expression!r}"
        )
    if not isinstance(timezone, str):
        raise CronError(
            f"trigger {name!r}: timezone must be an IANA name such as 'UTC' or 'Europe/Paris', "
            f"got {timezone!r}"
        )
    try:
        CronTrigger(cron_expression, timezone)
    except CronError as exc:
        raise CronError(f"trigger {name!r}: {exc}") from None
    return cron_expression, timezone


def check_reference(kind: str, name: str, what: str, value: object) -> str:
    """A name that points at another definition (``what``), e.g. a scheduler's pipeline."""
    if not isinstance(value, str):
        raise ValidationError(f"{kind} {name!r}: {what} must be a name, got {value!r}")
    return check_name(what, value)


def names_list(names: Sequence[str]) -> str:
    return ", ".join(repr(name) for name in names)
