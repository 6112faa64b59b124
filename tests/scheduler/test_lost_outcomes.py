"""No tick is lost and no run stays ``running`` when an answer from PostgreSQL is lost: a claim
committed whose reply never arrived, a final status that could not be written, rows this
instance no longer runs. Against a real PostgreSQL, through a proxy that drops a reply."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pytest

from tests.tcp_proxy import TcpProxy
from th2etl.clock import FakeClock
from th2etl.scheduler import TickAction, load_scheduler_manager
from th2etl.storage import PostgresStorage

from .helpers import register_stored_bloc_types, statuses

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("stored_bloc_types")]

CLAIM = b"ON CONFLICT (scheduler_name, scheduled_time, attempt)"
"""Text of the claim's INSERT (sent with each execution until psycopg prepares it, after 5)."""
READY_FOR_QUERY = b"Z\x00\x00\x00\x05"
"""The server's ReadyForQuery message: the statement before it is committed (autocommit)."""


def at(hhmmss: str) -> datetime:
    hour, minute, second = (hhmmss + ":0").split(":")[:3]
    return datetime(2026, 5, 15, int(hour), int(minute), int(second), tzinfo=UTC)


class ReplyDroppingProxy(TcpProxy):
    """A :class:`TcpProxy` to PostgreSQL that can lose one message. After
    ``drop_reply_to(pattern)``, the next client message containing ``pattern`` reaches the
    server; the proxy waits for the server's ReadyForQuery (the statement has committed) and
    closes that connection instead of delivering the reply: a commit whose answer is lost.
    After ``drop_request_to(pattern)``, the next such message is not delivered and its
    connection is closed: a write that never happened."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.dropped = 0
        self._reply_pattern: bytes | None = None
        self._request_pattern: bytes | None = None
        self._drop_lock = threading.Lock()

    def drop_reply_to(self, pattern: bytes) -> None:
        with self._drop_lock:
            self._reply_pattern = pattern

    def drop_request_to(self, pattern: bytes) -> None:
        with self._drop_lock:
            self._request_pattern = pattern

    def relay(self, client: socket.socket, upstream: socket.socket) -> list[Callable[[], None]]:
        for sock in (client, upstream):  # no Nagle delay on each small message
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cut = threading.Event()  # set when this connection's next reply is to be dropped
        return [
            partial(self._to_server, client, upstream, cut),
            partial(self._to_client, upstream, client, cut),
        ]

    def _to_server(
        self, client: socket.socket, upstream: socket.socket, cut: threading.Event
    ) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                with self._drop_lock:
                    if self._request_pattern is not None and self._request_pattern in data:
                        self._request_pattern = None
                        self.dropped += 1
                        break
                    if self._reply_pattern is not None and self._reply_pattern in data:
                        self._reply_pattern = None
                        cut.set()
                upstream.sendall(data)
        for sock in (client, upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _to_client(
        self, upstream: socket.socket, client: socket.socket, cut: threading.Event
    ) -> None:
        held = b""
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                if not cut.is_set():
                    client.sendall(data)
                    continue
                held += data
                if READY_FOR_QUERY in held:  # committed: lose the answer
                    with self._drop_lock:
                        self.dropped += 1
                    break
        for sock in (client, upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def proxy(postgres: Any) -> Iterator[ReplyDroppingProxy]:
    host = "127.0.0.1" if postgres.host.startswith("/") else postgres.host  # a socket dir
    opened = ReplyDroppingProxy(host, postgres.port)
    opened.start()
    yield opened
    opened.stop()


@pytest.fixture
def storage(
    postgres: Any, schema: str, clock: FakeClock, proxy: ReplyDroppingProxy
) -> Iterator[PostgresStorage]:
    url = f"postgresql://{postgres.user}@127.0.0.1:{proxy.port}/{postgres.dbname}"
    with PostgresStorage(url, schema=schema, clock=clock, connect_timeout=2) as opened:
        opened.create_bloc("quick_noop", "scheduler_test_noop")
        opened.create_pipeline("quick", stages=[["quick_noop"]])
        opened.create_trigger("every5_trigger", "quick", "*/5 * * * *")
        opened.create_scheduler("every5", "quick", "every5_trigger")
        yield opened


def ticks(storage: PostgresStorage) -> list[tuple[str, str]]:
    runs = storage.list_runs(scheduler_name="every5", limit=1000)
    return sorted((f"{run.scheduled_time:%H:%M}", run.status.value) for run in runs)  # type: ignore[misc]


@pytest.mark.parametrize("overlap", ["skip", "allow"])
def test_a_claim_committed_but_unanswered_is_adopted_by_its_retry(
    storage: PostgresStorage, clock: FakeClock, proxy: ReplyDroppingProxy, overlap: str
) -> None:
    manager = load_scheduler_manager(storage, clock=clock, logs_dir=None, overlap=overlap)
    manager.start()
    try:
        assert statuses(clock.advance(until=at("10:05"))) == ["10:05 started"]
        proxy.drop_reply_to(CLAIM)
        lost = clock.advance(until=at("10:10"))
        assert proxy.dropped == 1
        assert [(r.action, f"{r.scheduled_time:%H:%M}") for r in lost] == [
            (TickAction.DEFERRED, "10:10")
        ]
        [claimed] = storage.active_runs("every5")  # the claim was made: committed
        assert claimed.instance_id == manager.instance_id
        retried = clock.advance(1)  # the retry, one second later (backoff)
        assert statuses(retried) == ["10:10 started"]
        assert retried[0].run_id == claimed.run_id
        assert statuses(clock.advance(until=at("10:15"))) == ["10:15 started"]
    finally:
        manager.stop()
    assert ticks(storage) == [
        ("10:05", "succeeded"),
        ("10:10", "succeeded"),
        ("10:15", "succeeded"),
    ]
    assert storage.active_runs() == []


def test_a_lost_claim_whose_tick_is_then_missed_is_recorded_skipped(
    storage: PostgresStorage, clock: FakeClock, proxy: ReplyDroppingProxy
) -> None:
    # tolerance 0: the retry, one second late, finds the tick missed, and policy skip skips it
    manager = load_scheduler_manager(
        storage, clock=clock, logs_dir=None, missed="skip", tolerance=0
    )
    manager.start()
    try:
        proxy.drop_reply_to(CLAIM)
        assert [r.action for r in clock.advance(until=at("10:05"))] == [TickAction.DEFERRED]
        [claimed] = storage.active_runs("every5")
        retried = clock.advance(1)
        assert statuses(retried) == ["10:05 skipped(missed)"]
        assert retried[0].run_id == claimed.run_id
        assert statuses(clock.advance(until=at("10:10"))) == ["10:10 started"]  # no overlap
    finally:
        manager.stop()
    assert ticks(storage) == [("10:05", "skipped"), ("10:10", "succeeded")]
    skipped = storage.get_run(claimed.run_id)
    assert skipped.error and skipped.error.startswith("missed: 0:00:01 late, policy 'skip'")


def test_a_lost_claim_left_by_a_stop_is_not_left_running(
    storage: PostgresStorage, clock: FakeClock, proxy: ReplyDroppingProxy
) -> None:
    manager = load_scheduler_manager(storage, clock=clock, logs_dir=None)
    manager.start()
    proxy.drop_reply_to(CLAIM)
    assert [r.action for r in clock.advance(until=at("10:05"))] == [TickAction.DEFERRED]
    [claimed] = storage.active_runs("every5")
    manager.stop()  # before the retry: this manager will never run that tick
    run = storage.get_run(claimed.run_id)
    assert run.status.value == "abandoned"
    assert run.error and "is alive but no longer runs it" in run.error
    assert storage.list_instances() == []


FINISH = b"started_at = COALESCE("
"""Text of finish_run's UPDATE."""


def test_a_failure_that_could_not_be_recorded_is_recorded_at_the_next_heartbeat(
    storage: PostgresStorage, clock: FakeClock, proxy: ReplyDroppingProxy
) -> None:
    from th2etl.blocs.registry import unregister_bloc

    manager = load_scheduler_manager(storage, clock=clock, logs_dir=None, heartbeat_interval=10)
    manager.start()
    try:
        clock.advance(until=at("10:04:55"))
        unregister_bloc("scheduler_test_noop")  # the stored pipeline no longer builds
        proxy.drop_request_to(FINISH)  # and its failure cannot be written
        [failed] = clock.advance(until=at("10:05"))
        assert failed.action is TickAction.FAILED and proxy.dropped == 1
        assert storage.get_run(failed.run_id or "").status.value == "queued"  # never started
        clock.advance(10)  # the next heartbeat writes it
        run = storage.get_run(failed.run_id or "")
        assert run.status.value == "failed"
        assert run.error and run.error.startswith("the run could not start: ")
        assert "scheduler_test_noop" in run.error
    finally:
        register_stored_bloc_types()
        manager.stop()


def test_a_lost_final_status_is_written_even_after_its_scheduler_is_deleted(
    storage: PostgresStorage, clock: FakeClock, proxy: ReplyDroppingProxy
) -> None:
    manager = load_scheduler_manager(
        storage, clock=clock, logs_dir=None, heartbeat_interval=10, reload_interval=5
    )
    manager.start()
    try:
        clock.advance(until=at("10:04:55"))
        proxy.drop_request_to(FINISH)
        [started] = clock.advance(until=at("10:05"))
        assert started.result is not None and started.result.succeeded
        assert proxy.dropped == 1
        assert storage.get_run(started.run_id or "").status.value == "running"
        storage.delete_scheduler("every5")  # its scheduler is never ticked again
        clock.advance(5)
        assert "every5" not in manager
        clock.advance(10)
        assert storage.get_run(started.run_id or "").status.value == "succeeded"
    finally:
        manager.stop()
    assert storage.active_runs() == []


def test_running_rows_of_this_instance_that_it_does_not_run_are_abandoned(
    storage: PostgresStorage, clock: FakeClock
) -> None:
    """E.g. left by an earlier process that had the same instance id: this instance's
    heartbeats would otherwise keep them ``running`` forever. Its own live runs stay."""
    from th2etl.blocs import register_bloc
    from th2etl.blocs.registry import unregister_bloc

    from .helpers import GATES, Gate

    register_bloc(Gate, replace=True)  # type: ignore[call-overload]
    GATES["lost_live"] = threading.Event()
    storage.create_bloc("wait", "scheduler_test_gate", config={"gate": "lost_live"})
    storage.create_pipeline("waiting", stages=[["wait"]])
    storage.update_scheduler("every5", pipeline_name="waiting")
    left = storage.claim_run(
        "gone", at("09:00"), pipeline_name="quick", trigger_name=None, instance_id="me",
        now=at("09:00"),
    )  # fmt: skip
    other = storage.claim_run(
        "gone", at("09:05"), pipeline_name="quick", trigger_name=None, instance_id="other",
        now=clock.now(),
    )  # fmt: skip
    assert left is not None and other is not None
    storage.heartbeat("other", at("23:00"))  # alive all along
    manager = load_scheduler_manager(
        storage, clock=clock, instance_id="me", inline=False, logs_dir=None, heartbeat_interval=10
    )
    try:
        manager.start()
        [live] = clock.advance(until=at("10:05"))
        clock.advance(20)  # two heartbeats while the live run waits at its gate
        assert storage.get_run(live.run_id or "").status.value == "running"
        assert storage.get_run(other.run_id).status.value == "queued"  # not ours
        abandoned = storage.get_run(left.run_id)
        assert abandoned.status.value == "abandoned"
        assert abandoned.error and abandoned.error.startswith(
            "abandoned: its instance me is alive but no longer runs it"
        )
        assert abandoned.log and "no longer runs it" in abandoned.log
        GATES["lost_live"].set()
        manager.stop(grace=60)
    finally:
        GATES["lost_live"].set()
        manager.stop(grace=60)
        unregister_bloc("scheduler_test_gate")
    assert storage.get_run(live.run_id or "").status.value == "succeeded"
