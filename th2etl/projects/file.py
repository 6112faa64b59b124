"""A project file: blocs, pipelines, triggers and schedulers as TOML, read and written.

The format (``th2etl apply FILE``, ``th2etl export``)::

    project = "sales"                       # required: the project these definitions belong to

    [blocs.load_sales]                      # one table per bloc, named by the bloc
    bloc_type = "csv_loader"
    description = "the day's sales"         # optional everywhere ("" by default)

    [blocs.load_sales.config]               # the bloc's config, as create_bloc takes it
    file_path = "data/sales-${var:day}.csv"
    password = "${env:SALES_PASSWORD}"      # a reference stays a reference, never the secret

    [pipelines.daily_sales]
    stages = [["load_sales"], ["double"], ["export"]]

    [triggers.every_night]
    pipeline_name = "daily_sales"
    cron_expression = "30 2 * * *"
    timezone = "Europe/Paris"               # default "UTC"

    [schedulers.nightly_sales]
    pipeline_name = "daily_sales"
    trigger_name = "every_night"
    enabled = true                          # default true

A definition's keys are the parameters of the storage's ``create_<kind>`` (the API's bodies
use the same names): a key the storage does not take is refused, and a key left out means
that parameter's default. :func:`render` writes the same format, with the defaults left out,
so a file read and rendered again is the same file.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from th2etl._names import check_name
from th2etl.exceptions import ProjectFileError, Th2etlError

__all__ = ["KINDS", "REQUIRED", "SECTIONS", "Definition", "ProjectFile", "fields_of", "render"]

KINDS = ("bloc", "pipeline", "trigger", "scheduler")
"""The kinds of definition, in the order they depend on each other."""

SECTIONS = {kind: f"{kind}s" for kind in KINDS}
"""Each kind's table in the file (``[blocs.NAME]``, ...)."""

REQUIRED: Any = inspect.Parameter.empty
"""The default of a key that must be given."""


@functools.cache
def fields_of(kind: str) -> dict[str, Any]:
    """The keys a definition of ``kind`` takes, in order, each with its default (or
    :data:`REQUIRED`): the parameters of the storage's ``create_<kind>`` after its name."""
    from th2etl.storage import DatabaseStorage

    parameters = inspect.signature(getattr(DatabaseStorage, f"create_{kind}")).parameters
    return {
        name: parameter.default
        for name, parameter in parameters.items()
        if name not in ("self", "name")
        and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
    }


def normal(value: Any) -> Any:
    """A value as it reads back from storage (JSON round trip, a date-time as its UTC ISO
    text); ``None`` config is ``{}``."""
    return json.loads(json.dumps(value, default=_instant))


def _instant(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    raise TypeError(f"{value!r} is not JSON")


@dataclass(frozen=True)
class Definition:
    """One definition of the file: the keys given, and where it starts."""

    kind: str
    name: str
    values: dict[str, Any]
    line: int | None

    def desired(self) -> dict[str, Any]:
        """Every key of the kind: the given value, else the default (a config or a scheduler's
        variables of None is {})."""
        result = {}
        for key, default in fields_of(self.kind).items():
            value = self.values.get(key, default)
            if key in ("config", "variables") and value is None:
                value = {}
            result[key] = value
        return result


@dataclass(frozen=True)
class ProjectFile:
    """A parsed project file: its project and its definitions by kind, then by name."""

    path: str
    project: str
    definitions: dict[str, dict[str, Definition]]
    text: str = field(repr=False)

    @classmethod
    def load(cls, path: str | Path) -> ProjectFile:
        """Read and check ``path``; :class:`ProjectFileError` names the file, line and key."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ProjectFileError(
                f"{path}: cannot be read ({exc.strerror or exc}); check the path",
                file=str(path),
                line=None,
                key=None,
            ) from None
        return cls.parse(text, str(path))

    @classmethod
    def parse(cls, text: str, path: str = "<string>") -> ProjectFile:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            found = re.search(r"\(at line (\d+), column \d+\)", str(exc))
            line = int(found[1]) if found else None
            raise ProjectFileError(
                f"{path}{f':{line}' if line else ''}: {exc}; fix the TOML syntax (https://toml.io)",
                file=path,
                line=line,
                key=None,
            ) from None
        where = _Locator(path, text)
        allowed = ["project", *SECTIONS.values()]
        for key in data:
            if key not in allowed:
                raise where.error(f"unknown key {key!r}{_did_you_mean(key, allowed)}", key)
        project = data.get("project")
        if not isinstance(project, str):
            raise where.error(
                f"project is {'missing' if project is None else repr(project)}; the file must "
                'name its project at the top, e.g. project = "sales"',
                "project",
            )
        try:
            check_name("project", project)
        except Th2etlError as exc:
            raise where.error(str(exc), "project") from None
        definitions: dict[str, dict[str, Definition]] = {}
        for kind in KINDS:
            section = SECTIONS[kind]
            table = data.get(section, {})
            if not isinstance(table, dict):
                raise where.error(
                    f"{section} must be a table of {kind}s, e.g. [{section}.my_{kind}]", section
                )
            definitions[kind] = {
                name: where.definition(kind, name, values) for name, values in table.items()
            }
        return cls(path, project, definitions, text)

    def error(self, message: str, kind: str, name: str, key: str | None = None) -> ProjectFileError:
        """A :class:`ProjectFileError` about definition ``name`` (its ``key``), with its line."""
        return _Locator(self.path, self.text).error(message, key, kind, name)

    def __iter__(self) -> Any:
        """Every definition, kinds in dependency order, names sorted."""
        for kind in KINDS:
            for name in sorted(self.definitions[kind]):
                yield self.definitions[kind][name]


def _did_you_mean(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ";"
    return f"{hint} allowed keys: {', '.join(allowed)}"


_HEADER = re.compile(r"^\s*\[([^\[\]]+)\]\s*(?:#.*)?$")


class _Locator:
    """Finds the line of a table or key in the file's text (tomllib gives lines only for
    syntax errors), and builds errors that name it."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()
        # Table headers by their dotted name without spaces or quotes: one pass, so that
        # finding a definition's line does not scan the file once per definition.
        self.headers: dict[str, int] = {}
        for number, line in enumerate(self.lines, start=1):
            match = _HEADER.match(line)
            if match is not None:
                name = re.sub(r"\s+|[\"']", "", match[1])
                self.headers.setdefault(name, number)

    def _header(self, section: str, name: str) -> int | None:
        found = self.headers.get(f"{section}.{name}")
        if found is not None or "." in name:
            return found
        quoted = rf'(?:{re.escape(name)}|"{re.escape(name)}"|\'{re.escape(name)}\')'
        header = re.compile(rf"^\s*\[\s*{section}\s*\.\s*{quoted}\s*\]")
        inline = re.compile(rf"^\s*{quoted}\s*=")
        in_section = False
        for number, line in enumerate(self.lines, start=1):
            if header.match(line):
                return number
            if re.match(r"^\s*\[", line):
                in_section = re.match(rf"^\s*\[\s*{section}\s*\]", line) is not None
            elif in_section and inline.match(line):
                return number
        return None

    def line(self, key: str | None, kind: str | None = None, name: str | None = None) -> int | None:
        """The line of ``key`` in definition ``name`` (or at the top level without one), else
        the definition's first line, else None."""
        table = ""
        start = 0
        if kind is not None and name is not None:
            found = self._header(SECTIONS[kind], name)
            if found is None or key is None or not self.lines[found - 1].lstrip().startswith("["):
                return found  # unknown, the definition itself, or an inline table's one line
            table = self.lines[found - 1].strip()[1:].split("]")[0].replace(" ", "") + "."
            start = found
        elif key is None:
            return None
        assignment = re.compile(rf'^\s*(?:{re.escape(key)}|"{re.escape(key)}")\s*=')
        for number in range(start, len(self.lines)):
            text = self.lines[number].strip()
            if text.startswith("["):
                inner = text.strip("[]").replace(" ", "")
                if inner == f"{table}{key}" or inner.startswith(f"{table}{key}."):
                    return number + 1
                if not inner.startswith(table) or not table:
                    break
            elif assignment.match(text):
                return number + 1
        return start or None

    def error(
        self, message: str, key: str | None, kind: str | None = None, name: str | None = None
    ) -> ProjectFileError:
        line = self.line(key, kind, name)
        where = f"{self.path}:{line}" if line is not None else self.path
        what = f"[{SECTIONS[kind]}.{name}] " if kind is not None and name is not None else ""
        return ProjectFileError(f"{where}: {what}{message}", file=self.path, line=line, key=key)

    def definition(self, kind: str, name: str, values: object) -> Definition:
        section = SECTIONS[kind]
        try:
            check_name(kind, name)
        except Th2etlError as exc:
            raise self.error(str(exc), None, kind, name) from None
        if not isinstance(values, dict):
            raise self.error(
                f"must be a table of keys, e.g. [{section}.{name}], got {values!r}",
                None,
                kind,
                name,
            )
        fields = fields_of(kind)
        for key in values:
            if key not in fields:
                raise self.error(
                    f"unknown key {key!r}{_did_you_mean(key, list(fields))}", key, kind, name
                )
        missing = [
            key for key, default in fields.items() if default is REQUIRED and key not in values
        ]
        if missing:
            raise self.error(
                f"missing key(s) {', '.join(missing)}; a {kind} needs "
                f"{', '.join(k for k, d in fields.items() if d is REQUIRED)}",
                None,
                kind,
                name,
            )
        if kind == "bloc":
            self._check_bloc(name, values)
        return Definition(kind, name, dict(values), self.line(None, kind, name))

    def _check_bloc(self, name: str, values: dict[str, Any]) -> None:
        """The bloc's type and config, as the storage will check them, with their lines."""
        from th2etl.blocs.registry import get_bloc_class
        from th2etl.storage._validation import check_bloc

        for key, check in (
            ("bloc_type", lambda: get_bloc_class(values["bloc_type"], bloc_name=name)),
            ("config", lambda: check_bloc(name, values["bloc_type"], values.get("config"))),
        ):
            try:
                check()
            except Th2etlError as exc:
                raise self.error(str(exc), key, "bloc", name) from None


# -- writing -----------------------------------------------------------------------------------

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _key(key: str) -> str:
    return key if _BARE.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def _value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime):  # a scheduler's start_date: a TOML offset date-time
        return value.isoformat()
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON's escapes are TOML's
    if isinstance(value, list):
        return "[" + ", ".join(_value(item, where) for item in value) + "]"
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        items = ", ".join(f"{_key(k)} = {_value(v, f'{where}.{k}')}" for k, v in value.items())
        return "{ " + items + " }"
    raise ProjectFileError(
        f"{where} is {value!r}, which TOML cannot write (it has no null); remove the key or give "
        "it a value, then export again",
        file="<export>",
        line=None,
        key=where,
    )


def render(project: str, definitions: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """The project file for ``definitions`` (kind -> name -> the keys given, defaults left
    out); a mapping value of ``config`` becomes its own table."""
    lines = [
        f"# th2etl definitions of project {project!r}: apply with 'th2etl apply FILE'",
        f"project = {_value(project, 'project')}",
    ]
    for kind in KINDS:
        for name in sorted(definitions.get(kind, {})):
            values = definitions[kind][name]
            header = f"{SECTIONS[kind]}.{_key(name)}"
            lines += ["", f"[{header}]"]
            tables = []
            for key, value in values.items():
                where = f"{SECTIONS[kind]}.{name}.{key}"
                if isinstance(value, Mapping) and value:
                    tables.append((key, value, where))
                else:
                    lines.append(f"{_key(key)} = {_value(value, where)}")
            for key, table, where in tables:
                lines += ["", f"[{header}.{_key(key)}]"]
                lines += [f"{_key(k)} = {_value(v, f'{where}.{k}')}" for k, v in table.items()]
    return "\n".join(lines) + "\n"
