"""Connecting to a Dask cluster: the extra, the accepted addresses, health, an unreachable one."""

from __future__ import annotations

import socket
import sys
from typing import Any

import pytest

from tests.conftest import wait_until
from tests.executors.conftest import CommandCluster
from th2etl.exceptions import ConfigurationError, ExecutorUnavailableError, MissingExtraError
from th2etl.executors.dask import DaskCluster, check_dask_address, is_dask_address


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_without_the_extra_the_message_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed raises ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'th2etl\[dask\]'"):
        DaskCluster("tcp://127.0.0.1:8786")


@pytest.mark.parametrize(
    "address",
    ["tcp://127.0.0.1:8786", "tls://dask.example.com:8786", "tcp://[::1]:8786",
     " tcp://10.0.0.5:1 ", "scheduler-file:/shared/scheduler.json"],
)  # fmt: skip
def test_dask_addresses_are_accepted(address: str) -> None:
    assert check_dask_address(address) == address.strip()
    assert is_dask_address(address)


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("127.0.0.1:8786", "is not a Dask scheduler address"),
        ("tcp://127.0.0.1", "is not a Dask scheduler address"),
        ("tcp://:8786", "is not a Dask scheduler address"),
        ("tcp://host:port", "is not a Dask scheduler address"),
        ("tcp://host:8786/path", "is not a Dask scheduler address"),
        ("http://127.0.0.1:8786", "uses the scheme 'http'"),
        ("ucx://127.0.0.1:8786", "uses the scheme 'ucx'"),
        ("tcp://127.0.0.1:70000", "has the port 70000, out of range 1-65535"),
    ],
)
def test_other_addresses_are_refused_with_the_accepted_forms(address: str, problem: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        check_dask_address(address)
    message = str(caught.value)
    assert message.startswith(f"TH2ETL_EXECUTOR {address!r} {problem}; use tcp://HOST:PORT")
    assert "tls://HOST:PORT, or scheduler-file:PATH" in message


def test_a_scheduler_file_without_a_path_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"names no file; write scheduler-file:PATH"):
        check_dask_address("scheduler-file: ")


def test_anything_else_than_an_address_or_a_client_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"got int; use tcp://HOST:PORT"):
        DaskCluster(8786)  # type: ignore[arg-type]


def test_an_unreachable_scheduler_fails_fast_naming_its_address() -> None:
    address = f"tcp://127.0.0.1:{free_port()}"
    cluster = DaskCluster(address, connect_timeout=0.5, retry_after=60)
    with pytest.raises(ExecutorUnavailableError, match=rf"the Dask scheduler at {address} cannot"):
        cluster.client()
    # Within retry_after the failure is remembered: no second wait for the connect timeout.
    with pytest.raises(ExecutorUnavailableError, match=r"OSError: Timed out trying to connect"):
        cluster.client()
    health = cluster.health()
    assert (health.up, health.address) == (False, address)
    assert health.to_dict()["status"] == "down"
    assert address in health.to_dict()["error"]


def test_a_missing_scheduler_file_is_named(tmp_path: Any) -> None:
    cluster = DaskCluster(f"scheduler-file:{tmp_path}/nope.json", connect_timeout=0.5)
    with pytest.raises(ExecutorUnavailableError, match=r"no scheduler file at .*nope\.json"):
        cluster.client()


@pytest.mark.postgres
@pytest.mark.slow
def test_health_of_a_local_cluster_counts_its_workers(local_cluster: Any) -> None:
    cluster = DaskCluster(local_cluster.scheduler_address)
    try:
        first = cluster.health()  # answers at once: connecting, in the background
        assert (first.up, first.error) == (False, f"the Dask scheduler at "
            f"{local_cluster.scheduler_address} cannot be reached (connecting); start it "
            "(`dask scheduler`, then `dask worker ADDRESS` on each worker host) or fix "
            "TH2ETL_EXECUTOR")  # fmt: skip
        wait_until(lambda: cluster.health().up, timeout=30, what="the connection")
        health = cluster.health()
        assert health.to_dict() == {
            "status": "up",
            "address": local_cluster.scheduler_address,
            "workers": 2,
        }
    finally:
        cluster.close()


@pytest.mark.postgres
@pytest.mark.slow
def test_a_cluster_started_with_the_dask_command_is_reached_by_its_scheduler_file(
    dask_command_cluster: CommandCluster,
) -> None:
    from distributed import Client

    by_file = DaskCluster(f"scheduler-file:{dask_command_cluster.scheduler_file}")
    try:
        wait_until(lambda: by_file.health().workers == 1, timeout=120, what="the dask worker")
        assert by_file.client().scheduler.address == dask_command_cluster.address
    finally:
        by_file.close()
    with Client(dask_command_cluster.address, set_as_default=False) as client:
        given = DaskCluster(client)
        assert given.address == dask_command_cluster.address
        assert given.health().up
        given.close()  # a client it was given stays open
        assert client.status == "running"
