"""The service when its PostgreSQL goes away and comes back: 503 naming the database, then 200.

The shared PostgreSQL server keeps running: the service reaches it through a TCP proxy this test
owns, and "the database goes away" is the proxy dropping every connection and refusing new ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.api.conftest import postgres_settings_env
from tests.api.servers import uvicorn_server, wait_until
from tests.conftest import PostgresServer
from tests.tcp_proxy import TcpProxy
from th2etl.api import create_app
from th2etl.configs.settings import get_settings
from th2etl.helpers.th2etl_client import Th2etlApiError, Th2etlClient

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def proxy(postgres: PostgresServer) -> Iterator[TcpProxy]:
    with TcpProxy(postgres.host, postgres.port) as tcp_proxy:
        yield tcp_proxy


def _status(client: Th2etlClient) -> tuple[str, list[Any]]:
    health = client.health_check()
    return health["status"], health["down"]


def test_health_turns_503_when_the_database_goes_away_and_200_when_it_returns(
    postgres: PostgresServer, pg_schema: str, proxy: TcpProxy
) -> None:
    from th2etl.storage import DatabaseStorage

    settings = get_settings(postgres_settings_env(postgres, pg_schema, port=proxy.port))
    with (
        DatabaseStorage.from_settings(settings) as storage,
        uvicorn_server(create_app(storage, api_key="", health_interval=0.2)) as url,
    ):
        client = Th2etlClient(base_url=url, timeout=30)
        wait_until(lambda: _status(client) == ("ok", []), timeout=30, what="a healthy service")
        client.create_bloc("double", "example_transformer", config={"factor": 2})

        proxy.stop()
        # A request that cannot reach the database answers 503 and says so to /health at once.
        with pytest.raises(Th2etlApiError, match="HTTP 503") as unavailable:
            client.list_blocs()
        assert unavailable.value.status == 503
        # "lost the connection to" (an open connection) or "cannot connect to" (a new one)
        where = f"PostgreSQL database '{postgres.dbname}' on 127.0.0.1:{proxy.port}"
        assert where in str(unavailable.value.detail)
        health = client.health_check()
        assert health["status"] == "unavailable"
        assert health["down"] == ["database"]
        assert health["detail"] == "database is down"
        assert health["components"]["database"] == {
            "status": "down",
            "error": "DatabaseUnavailableError",
        }
        assert health["components"]["scheduler"]["status"] == "up"
        with pytest.raises(Th2etlApiError, match="HTTP 503"):
            client.create_bloc("triple", "example_transformer", config={"factor": 3})

        proxy.start()
        wait_until(lambda: _status(client) == ("ok", []), timeout=30, what="recovery")
        assert [bloc["name"] for bloc in client.list_blocs()] == ["double"]
        client.create_bloc("triple", "example_transformer", config={"factor": 3})
        assert [bloc["name"] for bloc in client.list_blocs()] == ["double", "triple"]

        # With no other request, the health probe alone notices the next outage.
        proxy.stop()
        wait_until(lambda: _status(client)[1] == ["database"], timeout=30, what="probe sees it")
        proxy.start()
        wait_until(lambda: _status(client) == ("ok", []), timeout=30, what="recovery again")


def test_service_started_while_the_database_is_down_recovers_when_it_comes(
    postgres: PostgresServer, pg_schema: str, proxy: TcpProxy
) -> None:
    from th2etl.storage import DatabaseStorage

    proxy.stop()
    settings = get_settings(postgres_settings_env(postgres, pg_schema, port=proxy.port))
    storage = DatabaseStorage.from_settings(settings, connect=False)
    with storage, uvicorn_server(create_app(storage, api_key="", health_interval=0.2)) as url:
        client = Th2etlClient(base_url=url, timeout=30)
        health = client.health_check()
        assert health["status"] == "unavailable"
        assert "database" in health["down"]
        with pytest.raises(Th2etlApiError, match="HTTP 503"):
            client.list_pipelines()

        proxy.start()
        wait_until(lambda: _status(client) == ("ok", []), timeout=60, what="recovery")
        client.create_bloc("double", "example_transformer", config={"factor": 2})
        assert [bloc["name"] for bloc in client.list_blocs()] == ["double"]
