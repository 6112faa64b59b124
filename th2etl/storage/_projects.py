"""Which project a definition belongs to: the third half of the SQL storage (schema 2).

``th2etl apply FILE`` marks what it creates with the file's project; definitions made by a
person (Python, the API) have none. ``apply --prune`` removes only its own project's, so the
mark is read and written here and nowhere else.
"""

from __future__ import annotations

from th2etl._names import check_name
from th2etl.exceptions import NotFoundError, ValidationError
from th2etl.storage._core import SqlCore

__all__ = ["KIND_TABLES", "Projects"]

KIND_TABLES = {
    "bloc": "blocs",
    "pipeline": "pipelines",
    "trigger": "triggers",
    "scheduler": "schedulers",
}
"""Each kind of definition and its table."""


def _table(kind: str) -> str:
    try:
        return KIND_TABLES[kind]
    except KeyError:
        raise ValidationError(
            f"unknown kind of definition {kind!r}; use one of {', '.join(KIND_TABLES)}"
        ) from None


class Projects(SqlCore):
    """The project marks of blocs, pipelines, triggers and schedulers."""

    def definition_projects(self, kind: str) -> dict[str, str | None]:
        """Every definition of ``kind`` (``"bloc"``, ...) by name: its project, or ``None``."""
        rows = self._all(f"SELECT name, project FROM {{{_table(kind)}}} ORDER BY name")
        return {name: project for name, project in rows}

    def set_definition_project(self, kind: str, name: str, project: str | None) -> None:
        """Mark the definition ``name`` of ``kind`` as ``project``'s (``None``: nobody's)."""
        check_name(kind, name)
        if project is not None:
            check_name("project", project)
        changed = self._run(
            f"UPDATE {{{_table(kind)}}} SET project = %s WHERE name = %s", (project, name)
        )
        if changed == 0:
            raise NotFoundError(f"{kind} {name!r} does not exist; nothing to mark")
