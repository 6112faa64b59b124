"""``bloc_type`` string -> bloc class.

Three ways in:

* th2etl's built-in types register themselves when their module is imported;
* a user's class registers with the :func:`register_bloc` decorator;
* a third-party package declares an entry point in the ``th2etl.blocs`` group, named after the
  bloc type, pointing at the class (``my_type = "my_package.blocs:MyBloc"``); it is loaded the
  first time the registry is asked for types.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

from th2etl.blocs.base import Bloc
from th2etl.exceptions import ValidationError

__all__ = [
    "ENTRY_POINT_GROUP",
    "bloc_types",
    "create_bloc",
    "get_bloc_class",
    "register_bloc",
    "unregister_bloc",
]

ENTRY_POINT_GROUP = "th2etl.blocs"

# Modules whose import registers th2etl's own bloc types. A lookup imports them in this order
# until the type it wants is there, so the costly ones (psycopg) come last.
_BUILTIN_MODULES = (
    "th2etl.blocs.files",
    "th2etl.blocs.examples",
    "th2etl.blocs.http",
    "th2etl.blocs.postgres",
)
_BUILTIN_TYPES = {
    "csv_loader": "th2etl.blocs.files",
    "csv_exporter": "th2etl.blocs.files",
    "example_transformer": "th2etl.blocs.examples",
    "api_loader": "th2etl.blocs.http",
    "run_adk_agents": "th2etl.blocs.http",
    "refresh_webhooks": "th2etl.blocs.http",
    "postgres_loader": "th2etl.blocs.postgres",
    "postgres_exporter": "th2etl.blocs.postgres",
}
"""Where each built-in type is defined: a run imports only the modules its blocs need."""

logger = logging.getLogger(__name__)
_registry: dict[str, type[Bloc]] = {}
_loaded = False
_load_lock = threading.RLock()

B = TypeVar("B", bound=type[Bloc])


@overload
def register_bloc(cls: B, /) -> B: ...
@overload
def register_bloc(*, bloc_type: str | None = None, replace: bool = False) -> Callable[[B], B]: ...
def register_bloc(
    cls: B | None = None, /, *, bloc_type: str | None = None, replace: bool = False
) -> B | Callable[[B], B]:
    """Register a bloc class under its ``bloc_type`` (or the one given); usable as a decorator.

    Registering a second class under a taken type raises unless ``replace=True``.
    """

    def decorate(klass: B) -> B:
        if not isinstance(klass, type) or not issubclass(klass, Bloc):
            raise ValidationError(
                f"register_bloc: {klass!r} is not a subclass of LoaderBloc, TransformerBloc "
                "or ExporterBloc"
            )
        key = bloc_type or klass.bloc_type
        if not key:
            raise ValidationError(
                f"register_bloc: {klass.__name__} has no bloc_type; set the class attribute "
                "bloc_type = '...' or pass register_bloc(bloc_type='...')"
            )
        with _load_lock:
            existing = _registry.get(key)
            if existing is not None and existing is not klass and not replace:
                raise ValidationError(
                    f"bloc_type {key!r} is already registered by "
                    f"{existing.__module__}.{existing.__qualname__}; pick another name or pass "
                    "replace=True"
                )
            if klass.bloc_type != key:
                klass.bloc_type = key
            _registry[key] = klass
        return klass

    return decorate if cls is None else decorate(cls)


def unregister_bloc(bloc_type: str) -> None:
    """Forget a registered type (for tests and plugins that reload)."""
    with _load_lock:
        _registry.pop(bloc_type, None)


def _ensure_loaded() -> None:
    global _loaded
    if _loaded:
        return
    with _load_lock:
        if _loaded:
            return
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)
        from importlib.metadata import entry_points  # slow to import: only when asked for types

        for entry in entry_points(group=ENTRY_POINT_GROUP):
            if entry.name in _registry:
                continue
            try:
                register_bloc(bloc_type=entry.name)(entry.load())
            except Exception as exc:  # a broken plugin must not take th2etl down
                logger.error(
                    "bloc type %r from entry point %r could not be loaded: %s",
                    entry.name,
                    entry.value,
                    exc,
                )
        _loaded = True


def reload_entry_points() -> None:
    """Look for ``th2etl.blocs`` entry points again (after installing a plugin at run time)."""
    global _loaded
    with _load_lock:
        _loaded = False
        _ensure_loaded()


def bloc_types() -> dict[str, type[Bloc]]:
    """Every registered type, sorted by name."""
    _ensure_loaded()
    return dict(sorted(_registry.items()))


def _find(bloc_type: str) -> type[Bloc] | None:
    """The class of ``bloc_type``, importing only the built-in modules needed to find it (a
    CSV pipeline never loads psycopg); every module and entry point when it is not built in."""
    if bloc_type in _registry:
        return _registry[bloc_type]
    with _load_lock:
        if bloc_type in _BUILTIN_TYPES:
            importlib.import_module(_BUILTIN_TYPES[bloc_type])
            if bloc_type in _registry:
                return _registry[bloc_type]
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)
            if bloc_type in _registry:
                return _registry[bloc_type]
    _ensure_loaded()
    return _registry.get(bloc_type)


def get_bloc_class(bloc_type: str, *, bloc_name: str | None = None) -> type[Bloc]:
    """The class registered for ``bloc_type``; the error lists the known types."""
    found = _find(bloc_type) if isinstance(bloc_type, str) else None
    if found is not None:
        return found
    _ensure_loaded()  # the message lists every known type
    subject = f"bloc {bloc_name!r}: " if bloc_name else ""
    close = difflib.get_close_matches(str(bloc_type), list(_registry), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ValidationError(
        f"{subject}unknown bloc_type {bloc_type!r}; {hint}known types: "
        f"{', '.join(sorted(_registry))}. Register new types with @register_bloc or the "
        f"{ENTRY_POINT_GROUP!r} entry point group"
    )


def create_bloc(
    name: str,
    bloc_type: str,
    config: Mapping[str, Any] | None = None,
    *,
    description: str = "",
) -> Bloc:
    """Build a validated bloc instance from its stored definition."""
    return get_bloc_class(bloc_type, bloc_name=name)(name, config, description=description)
