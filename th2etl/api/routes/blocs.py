"""``/blocs``: create, list, read, update and delete bloc definitions."""

from __future__ import annotations

from fastapi import APIRouter

from th2etl.api.routes._crud import add_definition_routes
from th2etl.api.schemas import BlocCreate, BlocUpdate
from th2etl.storage.records import BlocRecord

__all__ = ["router"]

router = APIRouter(prefix="/blocs", tags=["blocs"])

add_definition_routes(
    router,
    "bloc",
    BlocCreate,
    BlocUpdate,
    BlocRecord,
    create_doc="Store a bloc; its config is checked against its type's schema "
    "(see ``/bloc-types``).",
    update_doc="Change the fields given; ``config`` replaces the whole config.",
    delete_conflict="A pipeline uses the bloc",
)
