"""The storage contract is split into roles; DatabaseStorage keeps all of them."""

from __future__ import annotations

import inspect

from th2etl.pipelines.result import ACTIVE_STATUSES, TERMINAL_STATUSES, RunStatus
from th2etl.storage import (
    Coordination,
    DatabaseStorage,
    DefinitionStore,
    RunHistory,
    Storage,
    StorageConnection,
)


def _own_abstract(role: type) -> set[str]:
    return {name for name in vars(role) if getattr(vars(role)[name], "__isabstractmethod__", 0)}


def test_each_method_of_the_contract_belongs_to_one_role(storage: DatabaseStorage) -> None:
    roles = (StorageConnection, DefinitionStore, RunHistory, Coordination)
    owned = [_own_abstract(role) for role in roles]
    assert sum(map(len, owned)) == len(set().union(*owned))  # no method in two roles
    assert set().union(*owned) == set(Storage.__abstractmethods__)
    for role in (*roles, Storage):
        assert isinstance(storage, role)
        assert inspect.getdoc(role)
    # The scheduler asks for coordination, which includes run history, not definitions.
    assert issubclass(Coordination, RunHistory) and not issubclass(Coordination, DefinitionStore)


def test_run_statuses_are_either_active_or_terminal() -> None:
    assert {RunStatus.QUEUED, RunStatus.RUNNING} == ACTIVE_STATUSES
    assert ACTIVE_STATUSES.isdisjoint(TERMINAL_STATUSES)
    assert set(RunStatus) == ACTIVE_STATUSES | TERMINAL_STATUSES
    assert [status for status in RunStatus if status.finished] == [
        status for status in RunStatus if status in TERMINAL_STATUSES
    ]
    assert not RunStatus.QUEUED.finished and RunStatus.ABANDONED.finished
