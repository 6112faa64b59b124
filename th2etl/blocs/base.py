"""The bloc contract: what a bloc type declares, receives and returns.

A bloc type is a subclass of :class:`LoaderBloc`, :class:`TransformerBloc` or
:class:`ExporterBloc` with a ``bloc_type`` string, its ``config_fields`` and a ``run`` method::

    from th2etl.blocs import ConfigField, TransformerBloc, register_bloc

    @register_bloc
    class Uppercase(TransformerBloc):
        bloc_type = "uppercase"
        summary = "Upper-cases one text column."
        config_fields = (ConfigField("column", "str", required=True, help="Column to change"),)

        def run(self, context, rows):
            column = self.config["column"]
            return [{**row, column: str(row[column]).upper()} for row in rows]

``run`` receives the run's :class:`~th2etl.pipelines.context.RunContext` and the bloc's input
rows, and returns its output rows. Inside ``run``, ``self.config`` holds the validated config
with defaults filled in and every ``${env:NAME}`` / ``${var:NAME}`` / ``${run:NAME}`` reference
resolved (:mod:`th2etl.logical_time` lists the ``${run:}`` names).

Batches. Rows travel between blocs as batches (plain lists of at most ``batch_size`` rows; see
:mod:`th2etl.pipelines.engine`). Two class attributes say how a type takes part:

* ``per_batch = True``: ``run`` works on any slice of its input on its own (row by row, as
  ``Uppercase`` above), so the engine calls it once per batch and memory stays bounded. Left
  False, ``run`` receives all of its input rows as one list, as in th2etl's first releases: the
  right choice for sorting, deduplicating or aggregating, and the one place where a run's
  memory grows with its data.
* ``streams_safely = True``: the bloc may start before the earlier stages have finished,
  because it has no effect outside the run (a pure transformer), or makes its effect visible
  only once its whole input arrived without error (a file renamed, a transaction committed at
  the end). Left False, the bloc starts only when every earlier stage has finished.

A type may also override :meth:`Bloc.stream` to produce or consume batches itself (the
built-in loaders yield batches as they read; the exporters write batches as they arrive).

Every bloc type also accepts the common keys in :data:`COMMON_FIELDS` (``source_bloc``,
``retries``, ``retry_delay``, ``timeout``, ``batch_size``).
"""

from __future__ import annotations

import copy
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from th2etl._names import check_name
from th2etl.blocs._placeholders import check_references, is_whole_reference, resolve
from th2etl.exceptions import ValidationError
from th2etl.types import JSON, Rows

if TYPE_CHECKING:
    from th2etl.logical_time import LogicalTime
    from th2etl.pipelines.context import RunContext

__all__ = [
    "COMMON_FIELDS",
    "Bloc",
    "BlocKind",
    "ConfigField",
    "ExporterBloc",
    "LoaderBloc",
    "TransformerBloc",
    "collect",
]


class BlocKind(StrEnum):
    """The three roles a bloc can play in a pipeline."""

    LOADER = "loader"
    TRANSFORMER = "transformer"
    EXPORTER = "exporter"


# Field type name -> (accepted Python types, JSON Schema type, wording for messages).
_FIELD_TYPES: dict[str, tuple[tuple[type, ...], Any, str]] = {
    "str": ((str,), "string", "a string"),
    "int": ((int,), "integer", "an integer"),
    "number": ((int, float), "number", "a number"),
    "bool": ((bool,), "boolean", "true or false"),
    "dict": ((dict,), "object", "an object (dict)"),
    "list": ((list,), "array", "a list"),
    "str_or_list": ((str, list), ["string", "array"], "a string or a list of strings"),
    "any": ((object,), None, "any value"),
}


@dataclass(frozen=True)
class ConfigField:
    """One config key of a bloc type.

    ``type`` is one of ``str``, ``int``, ``number``, ``bool``, ``dict``, ``list``,
    ``str_or_list`` or ``any``. ``choices`` limits the accepted values; ``minimum`` (inclusive)
    and ``exclusive_minimum`` bound a number, ``unit`` names it in the message (``seconds``).
    """

    name: str
    type: str
    required: bool = False
    default: Any = None
    help: str = ""
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    exclusive_minimum: float | None = None
    unit: str = ""

    def __post_init__(self) -> None:
        if self.type not in _FIELD_TYPES:
            raise ValueError(
                f"config field {self.name!r} has unknown type {self.type!r}; "
                f"use one of {', '.join(_FIELD_TYPES)}"
            )

    def to_dict(self) -> JSON:
        """The field as a JSON Schema property, plus ``required`` and ``help``."""
        schema: JSON = {"name": self.name, "type": self.type, "required": self.required}
        json_type = _FIELD_TYPES[self.type][1]
        if json_type is not None:
            schema["json_type"] = json_type
        if self.default is not None:
            schema["default"] = self.default
        if self.choices is not None:
            schema["choices"] = list(self.choices)
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.exclusive_minimum is not None:
            schema["exclusive_minimum"] = self.exclusive_minimum
        schema["help"] = self.help
        return schema

    def check(self, value: Any, where: str) -> Any:
        """Return ``value`` when it fits this field (numbers and booleans from strings coerced)."""
        accepted, _, wording = _FIELD_TYPES[self.type]
        if isinstance(value, str) and self.type in ("int", "number", "bool", "dict", "list"):
            value = _from_string(self, value, where)
        ok = isinstance(value, accepted)
        if self.type in ("int", "number") and isinstance(value, bool):
            ok = False
        if self.type == "str_or_list" and isinstance(value, list):
            ok = all(isinstance(item, str) for item in value)
        if not ok:
            raise ValidationError(
                f"{where}: config key {self.name!r} must be {wording}, "
                f"got {value!r} ({type(value).__name__})"
            )
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(repr(choice) for choice in self.choices)
            raise ValidationError(
                f"{where}: config key {self.name!r} is {value!r}; use one of {allowed}"
            )
        unit = f" {self.unit}" if self.unit else ""
        # Written as "not >=" so that NaN, which compares false with everything, is refused.
        if self.minimum is not None and not value >= self.minimum:
            raise ValidationError(
                f"{where}: config key {self.name!r} must be {self.minimum:g} or more{unit}, "
                f"got {value!r}"
            )
        if self.exclusive_minimum is not None and not value > self.exclusive_minimum:
            raise ValidationError(
                f"{where}: config key {self.name!r} must be more than "
                f"{self.exclusive_minimum:g}{unit}, got {value!r}"
            )
        return value


def _from_string(field: ConfigField, text: str, where: str) -> Any:
    try:
        if field.type == "int":
            return int(text)
        if field.type == "number":
            return float(text)
        if field.type == "bool":
            lowered = text.strip().lower()
            if lowered in ("true", "1", "yes", "on"):
                return True
            if lowered in ("false", "0", "no", "off"):
                return False
            raise ValueError(text)
        return json.loads(text)
    except ValueError:
        raise ValidationError(
            f"{where}: config key {field.name!r} must be {_FIELD_TYPES[field.type][2]}, "
            f"got {text!r}"
        ) from None


COMMON_FIELDS: tuple[ConfigField, ...] = (
    ConfigField(
        "source_bloc",
        "str_or_list",
        help="Bloc (or list of blocs) of an earlier stage whose rows this bloc reads; "
        "default: every bloc of the previous stage",
    ),
    ConfigField("retries", "int", default=0, help="Attempts after the first one fails", minimum=0),
    ConfigField(
        "retry_delay",
        "number",
        default=1.0,
        help="Seconds before the first retry; doubles for each further retry",
        minimum=0,
        unit="seconds",
    ),
    ConfigField(
        "timeout",
        "number",
        help="Seconds one attempt may run before it fails",
        exclusive_minimum=0,
        unit="seconds",
    ),
    ConfigField(
        "batch_size",
        "int",
        help="Rows per batch this bloc passes on; default: the run's batch_size",
        minimum=1,
    ),
)


def source_blocs_of(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The ``source_bloc`` names of a bloc config (one name or a list), or ``()``."""
    source = config.get("source_bloc")
    if source is None:
        return ()
    return (source,) if isinstance(source, str) else tuple(source)


class Bloc(ABC):
    """Base of every bloc type. Subclass one of the three kinds below, not this class."""

    bloc_type: ClassVar[str] = ""
    """The registry key, e.g. ``"csv_loader"``."""
    kind: ClassVar[BlocKind]
    summary: ClassVar[str] = ""
    """One line saying what the type does (shown by ``GET /bloc-types``)."""
    config_fields: ClassVar[tuple[ConfigField, ...]] = ()
    """The type's own config keys; :data:`COMMON_FIELDS` are added to them."""
    per_batch: ClassVar[bool] = False
    """``run`` may be called once per batch (see the module docstring)."""
    streams_safely: ClassVar[bool] = False
    """The bloc may start before earlier stages finish (see the module docstring)."""

    def __init__(
        self, name: str, config: Mapping[str, Any] | None = None, *, description: str = ""
    ) -> None:
        self.name = check_name("bloc", name)
        self.description = description
        self.config: dict[str, Any] = self.validate_config(config or {}, name=name)
        self._has_references = "${" in repr(self.config)

    @abstractmethod
    def run(self, context: RunContext, rows: Rows) -> Rows:
        """Do the bloc's work on ``rows`` and return the output rows."""

    @classmethod
    def fuses(cls, source: Bloc) -> bool:
        """Whether this type can read ``source``'s data itself, faster than through rows, when
        ``source`` feeds only this bloc (``postgres_exporter`` reads a ``csv_loader``'s file or
        a ``postgres_loader``'s table, ``csv_exporter`` a ``postgres_loader``'s table).
        The engine then hands ``source`` over as ``batches.fused``: ``stream`` either does the
        work itself and calls ``batches.skip(rows)``, or iterates ``batches`` as usual (the
        source then runs inside this bloc's thread)."""
        return False

    def stream(self, context: RunContext, batches: Iterable[Rows]) -> Iterator[Rows]:
        """Turn the input batches into output batches; what the engine calls.

        By default: ``run`` once per batch when the type is ``per_batch`` (once with ``[]`` when
        no batch came), else once on all the input rows. An override may yield batches of any
        size (the engine cuts them to ``batch_size``) and must let exceptions raised by
        ``batches`` propagate: that is how a bloc learns that its run was cancelled or that an
        earlier bloc failed.
        """
        if self.per_batch:
            empty = True
            for batch in batches:
                empty = False
                yield self.run(context, batch)
            if empty:
                yield self.run(context, [])
        else:
            yield self.run(context, collect(batches))

    # --- config -------------------------------------------------------------------------

    @classmethod
    def all_fields(cls) -> tuple[ConfigField, ...]:
        """The type's config fields followed by the common ones."""
        return cls.config_fields + COMMON_FIELDS

    @classmethod
    def validate_config(cls, config: Mapping[str, Any], *, name: str = "?") -> dict[str, Any]:
        """Return ``config`` checked against the fields, with defaults filled in.

        Values that are exactly one ``${env:..}`` / ``${var:..}`` reference are checked when the
        bloc runs, once their value is known. Raises :class:`ValidationError` naming the bloc,
        the key and the fix.
        """
        where = f"bloc {name!r} ({cls.bloc_type})"
        if not isinstance(config, Mapping):
            raise ValidationError(
                f"{where}: config must be an object (dict), got {type(config).__name__}"
            )
        fields = {field.name: field for field in cls.all_fields()}
        unknown = [key for key in config if key not in fields]
        if unknown:
            raise ValidationError(
                f"{where}: unknown config key {unknown[0]!r}; "
                f"allowed keys: {', '.join(sorted(fields))}"
            )
        checked: dict[str, Any] = {}
        for field in fields.values():
            if field.name not in config or config[field.name] is None:
                if field.required:
                    hint = f" ({field.help})" if field.help else ""
                    raise ValidationError(
                        f"{where}: missing required config key {field.name!r}{hint}"
                    )
                if field.default is not None:
                    checked[field.name] = copy.deepcopy(field.default)
                continue
            value = config[field.name]
            check_references(value, f"{where}, config key {field.name!r}")
            checked[field.name] = value if is_whole_reference(value) else field.check(value, where)
        cls.check_config(checked, where)
        return checked

    @classmethod
    def check_config(cls, config: dict[str, Any], where: str) -> None:
        """Hook for checks across keys; raise :class:`ValidationError` with ``where`` in it."""

    def resolved(self, variables: Mapping[str, Any], run: LogicalTime | None = None) -> Bloc:
        """A copy whose config has every reference replaced, for one run (``run`` gives the
        ``${run:...}`` values)."""
        if not self._has_references:
            return self
        where = f"bloc {self.name!r} ({self.bloc_type})"
        clone = copy.copy(self)
        resolved = resolve(self.config, variables, where, run)
        fields = {field.name: field for field in self.all_fields()}
        clone.config = {key: fields[key].check(value, where) for key, value in resolved.items()}
        type(self).check_config(clone.config, where)
        return clone

    @classmethod
    def schema(cls) -> JSON:
        """The type's description and config schema, JSON-ready."""
        return {
            "bloc_type": cls.bloc_type,
            "kind": cls.kind.value,
            "summary": cls.summary,
            "config": [field.to_dict() for field in cls.all_fields()],
        }

    # --- common settings ----------------------------------------------------------------

    @property
    def source_blocs(self) -> tuple[str, ...]:
        """The configured ``source_bloc`` names, or ``()`` for "the previous stage"."""
        return source_blocs_of(self.config)

    @property
    def retries(self) -> int:
        return int(self.config.get("retries", 0))

    @property
    def retry_delay(self) -> float:
        return float(self.config.get("retry_delay", 1.0))

    @property
    def timeout(self) -> float | None:
        timeout = self.config.get("timeout")
        return None if timeout is None else float(timeout)

    @property
    def batch_size(self) -> int | None:
        size = self.config.get("batch_size")
        return None if size is None else int(size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, bloc_type={self.bloc_type!r})"


def collect(batches: Iterable[Rows]) -> Rows:
    """Every row of ``batches`` in one list (for a ``run`` written on top of ``stream``)."""
    rows: Rows = []
    for batch in batches:
        rows.extend(batch)
    return rows


class LoaderBloc(Bloc):
    """Loads or extracts raw data; usually ignores its input rows."""

    kind = BlocKind.LOADER


class TransformerBloc(Bloc):
    """Turns input rows into output rows."""

    kind = BlocKind.TRANSFORMER


class ExporterBloc(Bloc):
    """Writes its input rows somewhere; returns rows describing what it wrote."""

    kind = BlocKind.EXPORTER
