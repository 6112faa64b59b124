"""The definition routes hand a request body to storage as keywords
(th2etl/api/routes/_crud.py), so each body's fields must be exactly the storage method's
parameters: this stands in for the check mypy made when each route spelled out its call."""

from __future__ import annotations

import inspect

import pytest

from th2etl.api import schemas
from th2etl.storage.base import Storage


@pytest.mark.parametrize("noun", ["bloc", "pipeline", "trigger", "scheduler"])
def test_bodies_are_named_as_the_storage_parameters(noun: str) -> None:
    for verb, not_in_body in (("create", {"self"}), ("update", {"self", "name"})):
        body: type[schemas.Body] = getattr(schemas, f"{noun.capitalize()}{verb.capitalize()}")
        method = getattr(Storage, f"{verb}_{noun}")
        parameters = set(inspect.signature(method).parameters) - not_in_body
        stored = set(body.model_fields) - body.not_stored
        assert stored == parameters, f"{body.__name__} vs {method.__name__}"
