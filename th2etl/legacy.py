"""Importing th2etl 0.0.8-0.0.15's definitions (and runs) into this th2etl:
``th2etl import-legacy``.

The earlier th2etl kept its definitions in PostgreSQL, in the configured schema, in the tables
``etl_blocs``, ``etl_pipelines``, ``etl_triggers``, ``etl_schedulers`` (0.0.15 adds
``variables`` and ``active`` to schedulers, and ``etl_pipeline_runs`` with
``etl_pipeline_run_logs``). The import:

* reads them and **never changes them**; writes everything in one transaction (all or, at the
  first refusal, nothing; ``dry_run`` rolls it back after checking everything);
* is **idempotent**: a definition whose name is taken is left as it is (and reported when it
  differs), an imported run (``legacy-<id>``) is not imported again;
* **blocs**: name, type, config and description as they are. The old ``dependencies`` (the
  blocs that had to finish first) mean in th2etl "in an earlier stage": a bloc starts after
  every earlier stage has ended. Each pipeline using the bloc is checked and a dependency that
  is not in an earlier stage is reported;
* **schedulers**: ``active = false`` becomes ``enabled = false``; ``variables`` come along
  where this th2etl's schedulers take variables, and are reported otherwise;
* **triggers** get ``timezone`` (default: the host's zone, where the old scheduler read its
  naive local time). Cron expressions the old hand-written matcher read differently are
  listed with both meanings and imported unchanged, except that ``keep_legacy_weekdays``
  rewrites the day-of-week field to keep the old days. The old matcher numbered weekdays from
  Monday = 0 (``0 2 * * 0`` ran on Mondays; cron's 0 is Sunday), and required both day fields
  to match where cron needs either (this cannot be written in cron: it is reported only);
* **runs** (``with_runs``): ``legacy-<id>`` with the old times, variables and error, their log
  lines; statuses ``success`` -> ``succeeded``, ``failed`` -> ``failed``, ``cancelled`` ->
  ``cancelled``, ``pending`` and ``running`` -> ``abandoned`` (the process that owned them is
  gone).

When th2etl opens a PostgreSQL database that has the old tables and no definitions of its
own, it logs one line naming this command.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from th2etl.exceptions import NotFoundError, Th2etlError, ValidationError

__all__ = ["STATUS_MAP", "LegacyReport", "host_timezone", "import_legacy", "legacy_cron_notes"]

STATUS_MAP = {
    "success": "succeeded",
    "failed": "failed",
    "cancelled": "cancelled",
    "pending": "abandoned",
    "running": "abandoned",
}
"""th2etl 0.0.15's run statuses and what they become."""

_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass
class LegacyReport:
    """What an import did (or, in a dry run, would do)."""

    imported: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    dry_run: bool = False

    def describe(self) -> str:
        lines = [f"  + {item}" for item in self.imported]
        lines += [f"  = {item}" for item in self.skipped]
        lines += [f"  ! {note}" for note in self.notes]
        verb = "would import" if self.dry_run else "imported"
        lines.append(
            f"{verb} {len(self.imported)} item(s); {len(self.skipped)} already there; "
            f"{len(self.notes)} note(s)"
        )
        return "\n".join(lines)


def host_timezone() -> str:
    """The host's IANA zone (``TZ``, else ``/etc/localtime``), else ``UTC``."""
    zone = os.environ.get("TZ", "").lstrip(":")
    if zone:
        return zone
    try:
        target = str(Path("/etc/localtime").resolve())
    except OSError:
        return "UTC"
    return target.split("zoneinfo/", 1)[1] if "zoneinfo/" in target else "UTC"


# -- cron ----------------------------------------------------------------------------------------


def _old_field(part: str, low: int, high: int) -> set[int]:
    """A field as the 0.0.x matcher read it (numbers, ranges, steps, lists)."""
    if part == "*":
        return set(range(low, high + 1))
    values: set[int] = set()
    for token in part.split(","):
        body, _, step_text = token.partition("/")
        step = int(step_text) if step_text else 1
        if body == "*":
            start, end = low, high
        elif "-" in body:
            start, end = (int(x) for x in body.split("-", 1))
        else:
            start = end = int(body)
        values.update(range(start, end + 1, step))
    return values


def _days(numbers: set[int], names: tuple[str, ...]) -> str:
    return ", ".join(names[n] for n in sorted(numbers)) or "no day"


def _compact(numbers: list[int]) -> str:
    ranges: list[str] = []
    start = previous = numbers[0]
    for number in [*numbers[1:], None]:
        if number is not None and number == previous + 1:
            previous = number
            continue
        ranges.append(str(start) if start == previous else f"{start}-{previous}")
        if number is not None:
            start = previous = number
    return ",".join(ranges)


def legacy_cron_notes(expression: str) -> tuple[list[str], str | None]:
    """How the 0.0.x matcher and cron read ``expression`` differently (notes), and the
    expression that keeps the old days of the week (None when nothing is to rewrite)."""
    fields = expression.split()
    if len(fields) != 5:
        return [], None
    dom, dow = fields[2], fields[4]
    notes = []
    rewrite = None
    if dow != "*":
        try:
            old = _old_field(dow, 0, 6)
        except ValueError:
            return [], None
        cron_days = {(n % 7) for n in old}  # cron: 0 (and 7) Sunday, 1 Monday...
        sunday_first = (
            "Sunday",
            "Monday",
            "Tuesday",
            "Wednesday",
            "Thursday",
            "Friday",
            "Saturday",
        )
        notes.append(
            f"day-of-week {dow!r}: th2etl 0.0.x ran on {_days(old, _DAYS)} (Monday = 0); cron "
            f"and this th2etl run on {_days(cron_days, sunday_first)} (Sunday = 0)"
        )
        rewrite = " ".join([*fields[:4], _compact(sorted(n + 1 for n in old))])
    if dom != "*" and dow != "*":
        notes.append(
            f"day-of-month {dom!r} and day-of-week {dow!r}: th2etl 0.0.x ran on days matching "
            "both; cron and this th2etl run on days matching either (this cannot be written in "
            "cron: review the schedule, e.g. check the weekday in the pipeline)"
        )
    return notes, rewrite


# -- the import ----------------------------------------------------------------------------------


def import_legacy(
    storage: Any,
    *,
    dry_run: bool = False,
    with_runs: bool = False,
    keep_legacy_weekdays: bool = False,
    timezone: str | None = None,
) -> LegacyReport:
    """Import the old definitions (and runs) into ``storage``; see the module docstring."""
    if storage.backend != "postgresql":
        raise ValidationError(
            f"{storage.describe()} is SQLite; th2etl 0.0.x kept its tables in PostgreSQL: point "
            "DATABASE_URL (and DATABASE_SCHEMA) at that database, then run th2etl import-legacy"
        )
    tables = storage.legacy_tables()
    if not {"blocs", "pipelines"} <= set(tables):
        raise NotFoundError(
            f"{storage.describe()} has no th2etl 0.0.x tables (etl_blocs, etl_pipelines); set "
            "DATABASE_SCHEMA to the schema the old th2etl used"
        )
    zone = timezone or host_timezone()
    report = LegacyReport(dry_run=dry_run)
    data = {table: storage.legacy_rows(table) for table in tables}

    class _DryRun(Exception):
        pass

    try:
        with storage.transaction():
            _import(storage, data, report, zone, keep_legacy_weekdays, with_runs)
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass
    return report


def _import(
    storage: Any,
    data: dict[str, list[Any]],
    report: LegacyReport,
    zone: str,
    keep_weekdays: bool,
    with_runs: bool,
) -> None:
    from th2etl.projects.file import fields_of

    blocs = {row["name"]: row for row in data["blocs"]}
    pipelines = {row["id"]: row for row in data["pipelines"]}
    triggers = {row["id"]: row for row in data.get("triggers", [])}

    def create(kind: str, name: str, **values: Any) -> None:
        try:
            existing = getattr(storage, f"get_{kind}")(name)
        except NotFoundError:
            try:
                getattr(storage, f"create_{kind}")(name, **values)
            except Th2etlError as exc:
                raise ValidationError(
                    f"etl_{kind}s row {name!r} cannot be imported: {exc}; nothing was imported"
                ) from None
            report.imported.append(f"{kind} {name}")
            return
        differs = [k for k, v in values.items() if getattr(existing, k, v) != v]
        report.skipped.append(
            f"{kind} {name} (exists{', differs in ' + ', '.join(differs) if differs else ''}; "
            "left as it is)"
        )

    for name, row in sorted(blocs.items()):
        create(
            "bloc",
            name,
            bloc_type=row["bloc_type"],
            config=row.get("config") or {},
            description=row.get("description") or "",
        )
    for row in sorted(pipelines.values(), key=lambda r: r["name"]):
        stages = [list(stage) for stage in row["stages"]]
        create("pipeline", row["name"], stages=stages, description=row.get("description") or "")
        earlier: set[str] = set()
        for stage in stages:
            for bloc in stage:
                for dependency in blocs.get(bloc, {}).get("dependencies") or []:
                    if dependency not in earlier:
                        report.notes.append(
                            f"pipeline {row['name']}: bloc {bloc!r} depends on {dependency!r} "
                            "(0.0.x dependencies), which is not in an earlier stage; th2etl "
                            "orders blocs by stage only: move it to an earlier stage"
                        )
            earlier.update(stage)
    for row in sorted(triggers.values(), key=lambda r: r["name"]):
        expression = row["cron_expression"]
        notes, rewrite = legacy_cron_notes(expression)
        for note in notes:
            kept = (
                f"; rewritten to {rewrite!r}"
                if keep_weekdays and rewrite and "day-of-week" in note and "both" not in note
                else ""
            )
            report.notes.append(f"trigger {row['name']} {expression!r}: {note}{kept}")
        if keep_weekdays and rewrite:
            expression = rewrite
        create(
            "trigger",
            row["name"],
            pipeline_name=pipelines[row["pipeline_id"]]["name"],
            cron_expression=expression,
            timezone=zone,
            description=row.get("description") or "",
        )
    if data.get("triggers"):
        report.notes.append(
            f"triggers: th2etl 0.0.x read cron times as the host's naive local time; they are "
            f"imported in the zone {zone} (change it with --timezone)"
        )
    takes_variables = "variables" in fields_of("scheduler")
    for row in sorted(data.get("schedulers", []), key=lambda r: r["name"]):
        values: dict[str, Any] = {
            "pipeline_name": pipelines[row["pipeline_id"]]["name"],
            "trigger_name": triggers[row["trigger_id"]]["name"],
            "enabled": bool(row.get("active", True)),
            "description": row.get("description") or "",
        }
        variables = row.get("variables") or {}
        if variables and takes_variables:
            values["variables"] = variables
        elif variables:
            report.notes.append(
                f"scheduler {row['name']}: its variables {variables} are not imported (this "
                "th2etl's schedulers take none yet); pass them to its pipeline's runs"
            )
        create("scheduler", row["name"], **values)
    if with_runs:
        _import_runs(storage, data, report)


def _when(value: str | None) -> datetime | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _import_runs(storage: Any, data: dict[str, list[Any]], report: LegacyReport) -> None:
    logs: dict[int, list[Any]] = {}
    for line in data.get("pipeline_run_logs", []):
        logs.setdefault(line["run_id"], []).append(line)
    for row in data.get("pipeline_runs", []):
        run_id = f"legacy-{row['id']}"
        try:
            storage.get_run(run_id)
        except NotFoundError:
            pass
        else:
            report.skipped.append(f"run {run_id}")
            continue
        status = STATUS_MAP.get(row["status"])
        if status is None:
            raise ValidationError(
                f"etl_pipeline_runs row {row['id']} has the status {row['status']!r}, which th2etl "
                f"0.0.15 did not write; known: {', '.join(STATUS_MAP)}; nothing was imported"
            )
        started = _when(row.get("started_at")) or _when(row["created_at"])
        assert started is not None
        finished = _when(row.get("finished_at")) or _when(row.get("updated_at")) or started
        storage.start_run(
            run_id,
            row["pipeline_name"],
            started_at=started,
            scheduler_name=row.get("scheduler_name"),
            variables=row.get("variables") or {},
            started_by="legacy",
        )
        for line in sorted(logs.get(row["id"], []), key=lambda item: (item["ts"], item["id"])):
            text = f"{line['ts']} {line['level']} {line['event']}"
            storage.append_run_log(
                run_id, f"{text}: {line['message']}\n" if line.get("message") else f"{text}\n"
            )
        error = row.get("error")
        if row["status"] in ("pending", "running"):
            error = f"imported from th2etl 0.0.x as {row['status']!r}: its process is gone"
        storage.finish_run(run_id, status, finished_at=max(finished, started), error=error)
        report.imported.append(f"run {run_id} ({row['status']} -> {status})")
