"""``th2etl apply``: what a project file changes in the database, and changing it at once.

:func:`make_plan` compares the file with the stored definitions: a definition that is not
stored is **added**; one whose keys differ from the file's (a key left out means its default)
is **changed**; with ``prune``, a stored definition of the file's project that the file no
longer has is **removed**. Definitions carry the project that added them; one made by a person
(project none) is adopted by the first file that names it, and one of another project is
refused. A reference (a stage's bloc, a trigger's or scheduler's pipeline, a scheduler's
trigger) must be in the file or stored and not pruned.

:func:`apply_plan` makes every change inside one :meth:`transaction
<th2etl.storage.database.DatabaseStorage.transaction>` through the storage's own methods (so
everything is validated as usual): all of it, or, at the first refusal, nothing. A dry run
makes the same changes and rolls them back, so it finds every error the real one would.
Additions and changes go in dependency order (blocs, pipelines, triggers, schedulers),
removals after them in the reverse order. A pipeline with a run that has not finished is never
removed: the plan is refused, naming the runs.

Secrets stay ``${env:NAME}`` references: configs are stored as written and exported as
stored, never resolved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from th2etl.exceptions import Th2etlError, ValidationError
from th2etl.pipelines.result import RunStatus
from th2etl.projects.file import KINDS, REQUIRED, SECTIONS, ProjectFile, fields_of, normal, render

__all__ = ["Change", "Plan", "apply_plan", "export_project", "make_plan"]


@dataclass(frozen=True)
class Change:
    """One line of a plan: ``action`` is ``add``, ``change`` or ``remove``."""

    action: str
    kind: str
    name: str
    fields: tuple[str, ...] = ()
    values: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        sign = {"add": "+", "change": "~", "remove": "-"}[self.action]
        detail = ""
        if self.action == "change":
            detail = f": {', '.join(self.fields)}"
        elif self.action == "add" and self.kind == "bloc":
            detail = f" ({self.values['bloc_type']})"
        return f"  {sign} {self.kind} {self.name}{detail}"


@dataclass(frozen=True)
class Plan:
    """What applying a file does, in the order it is done."""

    project: str
    path: str
    changes: tuple[Change, ...]

    def count(self, action: str) -> int:
        return sum(1 for change in self.changes if change.action == action)

    def describe(self) -> str:
        if not self.changes:
            return f"no changes: the database matches {self.path} (project {self.project!r})"
        lines = [f"plan for project {self.project!r} from {self.path}:"]
        lines += [change.describe() for change in self.changes]
        lines.append(
            f"{self.count('add')} to add, {self.count('change')} to change, "
            f"{self.count('remove')} to remove"
        )
        return "\n".join(lines)


def _references(kind: str, values: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(key, kind referred to, name) for each reference in a definition's values."""
    if kind == "pipeline":
        stages = values.get("stages")
        if isinstance(stages, list):
            return [
                ("stages", "bloc", bloc)
                for stage in stages
                if isinstance(stage, list)
                for bloc in stage
                if isinstance(bloc, str)
            ]
    found = []
    for key, target in (("pipeline_name", "pipeline"), ("trigger_name", "trigger")):
        if kind in ("trigger", "scheduler") and isinstance(values.get(key), str):
            found.append((key, target, values[key]))
    return found


def make_plan(storage: Any, project_file: ProjectFile, *, prune: bool = False) -> Plan:
    """Compare ``project_file`` with ``storage``; raise :class:`ProjectFileError` (or
    :class:`ValidationError` for a pipeline with unfinished runs) for what cannot be applied."""
    stored = {kind: {r.name: r for r in getattr(storage, f"list_{kind}s")()} for kind in KINDS}
    projects = {kind: storage.definition_projects(kind) for kind in KINDS}
    mine = project_file.project
    additions: list[Change] = []
    removals: list[Change] = []
    for definition in project_file:
        kind, name = definition.kind, definition.name
        owner = projects[kind].get(name)
        if owner not in (None, mine):
            raise project_file.error(
                f"{kind} {name!r} is stored already and belongs to project {owner!r}; rename it "
                f"here, or remove it from project {owner!r}'s file and apply that first",
                kind,
                name,
            )
        desired = definition.desired()
        record = stored[kind].get(name)
        if record is None:
            additions.append(Change("add", kind, name, tuple(desired), desired))
            continue
        changed = tuple(
            key for key, value in desired.items() if normal(value) != normal(getattr(record, key))
        )
        if owner is None:
            changed += ("project",)
        if changed:
            additions.append(Change("change", kind, name, changed, desired))
    if prune:
        for kind in reversed(KINDS):
            for name, owner in projects[kind].items():
                if owner == mine and name not in project_file.definitions[kind]:
                    removals.append(Change("remove", kind, name))
    removed = {(change.kind, change.name) for change in removals}
    for definition in project_file:
        for key, kind, name in _references(definition.kind, definition.values):
            if name in project_file.definitions[kind]:
                continue
            if name in stored[kind] and (kind, name) not in removed:
                continue
            known = sorted(
                {*project_file.definitions[kind], *stored[kind]} - {n for _, n in removed}
            )
            why = (
                "which --prune removes (it is this project's and not in the file)"
                if (kind, name) in removed
                else f"which is neither in {project_file.path} nor stored"
            )
            close = _close(name, known)
            raise project_file.error(
                f"{key} names {kind} {name!r}, {why}; {close}add [{SECTIONS[kind]}.{name}] to "
                "the file or fix the name",
                definition.kind,
                definition.name,
                key,
            )
    _refuse_unfinished(storage, [c.name for c in removals if c.kind == "pipeline"])
    return Plan(mine, project_file.path, (*additions, *removals))


def _close(name: str, known: list[str]) -> str:
    import difflib

    match = difflib.get_close_matches(name, known, n=1)
    return f"did you mean {match[0]!r}? " if match else ""


def _refuse_unfinished(storage: Any, pipelines: list[str]) -> None:
    unfinished = [status for status in RunStatus if not status.finished]
    for pipeline in pipelines:
        runs = [
            run.run_id
            for status in unfinished
            for run in storage.list_runs(pipeline_name=pipeline, status=status, limit=10)
        ]
        if runs:
            raise ValidationError(
                f"--prune would remove pipeline {pipeline!r}, which has run(s) that have not "
                f"finished: {', '.join(runs)}; nothing was applied. Wait for them (th2etl logs "
                f"{runs[0]} --follow) or cancel them (th2etl cancel {runs[0]}), then apply again"
            )


class _DryRun(Exception):
    """Ends a dry run's transaction, so that it is rolled back."""


def apply_plan(
    storage: Any, plan: Plan, project_file: ProjectFile, *, dry_run: bool = False
) -> None:
    """Make ``plan``'s changes in one transaction (all or nothing); with ``dry_run``, make
    them and roll them back. A refusal raises :class:`ProjectFileError` naming the file and
    the definition's line."""
    if not plan.changes:
        return
    try:
        with storage.transaction():
            for change in plan.changes:
                try:
                    _apply(storage, change, plan.project)
                except Th2etlError as exc:
                    if change.action == "remove":
                        raise ValidationError(
                            f"cannot remove {change.kind} {change.name!r} (project "
                            f"{plan.project!r}, not in {plan.path}): {exc}; nothing was applied"
                        ) from None
                    raise project_file.error(
                        f"{exc}; nothing was applied", change.kind, change.name
                    ) from None
            if dry_run:
                raise _DryRun
    except _DryRun:
        pass


def _apply(storage: Any, change: Change, project: str) -> None:
    kind, name = change.kind, change.name
    if change.action == "remove":
        getattr(storage, f"delete_{kind}")(name)
        return
    if change.action == "add":
        getattr(storage, f"create_{kind}")(name, **change.values)
    else:
        updates = {key: change.values[key] for key in change.fields if key != "project"}
        if updates:
            getattr(storage, f"update_{kind}")(name, **updates)
    storage.set_definition_project(kind, name, project)


def export_project(storage: Any, *, project: str | None = None, pipeline: str | None = None) -> str:
    """The stored definitions as a project file: ``pipeline`` with its blocs, triggers and
    schedulers; else those of ``project`` and of no project (which an apply adopts); else
    every one. The file's project is ``project``, else the one project the exported
    definitions belong to (:class:`ValidationError` when that is not one)."""
    chosen: dict[str, list[Any]] = {}
    owners = {kind: storage.definition_projects(kind) for kind in KINDS}
    if pipeline is not None:
        record, blocs = storage.get_pipeline_definition(pipeline)
        chosen["bloc"] = blocs
        chosen["pipeline"] = [record]
        chosen["trigger"] = storage.list_triggers(pipeline_name=pipeline)
        chosen["scheduler"] = storage.list_schedulers(pipeline_name=pipeline)
    else:
        for kind in KINDS:
            records = getattr(storage, f"list_{kind}s")()
            chosen[kind] = [
                r for r in records if project is None or owners[kind][r.name] in (project, None)
            ]
    if project is None:
        owned = {owners[kind][r.name] for kind in KINDS for r in chosen[kind]} - {None}
        if len(owned) != 1:
            why = (
                f"belong to several projects ({', '.join(sorted(map(repr, owned)))})"
                if owned
                else "belong to no project yet"
            )
            raise ValidationError(
                f"the definitions to export {why}; name the file's project with --project NAME "
                "(it exports that project's definitions and those of none)"
            )
        project = owned.pop()
    definitions: dict[str, dict[str, dict[str, Any]]] = {}
    for kind in KINDS:
        fields = fields_of(kind)
        definitions[kind] = {}
        for record in chosen[kind]:
            values = {}
            for key, default in fields.items():
                value = getattr(record, key)
                empty = {} if key in ("config", "variables") and default is None else default
                if default is REQUIRED or normal(value) != normal(empty):
                    values[key] = value
            definitions[kind][record.name] = values
    return render(project, definitions)
