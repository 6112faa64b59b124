"""Blocs: the units of work of a pipeline, and the registry of bloc types."""

from __future__ import annotations

from th2etl.blocs.base import (
    COMMON_FIELDS,
    Bloc,
    BlocKind,
    ConfigField,
    ExporterBloc,
    LoaderBloc,
    TransformerBloc,
)
from th2etl.blocs.registry import (
    ENTRY_POINT_GROUP,
    bloc_types,
    create_bloc,
    get_bloc_class,
    register_bloc,
    unregister_bloc,
)

__all__ = [
    "COMMON_FIELDS",
    "ENTRY_POINT_GROUP",
    "Bloc",
    "BlocKind",
    "ConfigField",
    "ExporterBloc",
    "LoaderBloc",
    "TransformerBloc",
    "bloc_types",
    "create_bloc",
    "get_bloc_class",
    "register_bloc",
    "unregister_bloc",
]
