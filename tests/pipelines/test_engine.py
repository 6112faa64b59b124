"""The engine's semantics: ordering, parallelism, failure, retries, timeouts, cancellation."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import pytest

from th2etl import (
    CancelToken,
    ConfigField,
    LoaderBloc,
    Pipeline,
    RunContext,
    RunListener,
    RunStatus,
    TransformerBloc,
    register_bloc,
)
from th2etl.blocs import unregister_bloc
from th2etl.exceptions import BlocError
from th2etl.pipelines import BlocResult, BlocStatus, RunResult
from th2etl.types import Rows


class Journal:
    """What blocs did, in order, from any thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[str] = []

    def add(self, event: str) -> None:
        with self.lock:
            self.events.append(event)


class Probe(TransformerBloc):
    """A test bloc whose behaviour is set per instance through class-level hooks."""

    bloc_type = "test_probe"
    config_fields = (
        ConfigField("emit", "list", default=[], help="rows to return"),
        ConfigField("fail_times", "int", default=0, help="attempts that raise before success"),
        ConfigField("label", "str", help="any text (checks reference resolution)"),
        ConfigField("cooperative", "bool", default=False, help="a gate gives way to a cancel"),
    )
    journal: ClassVar[Journal]
    gates: ClassVar[dict[str, threading.Event]] = {}
    barriers: ClassVar[dict[str, threading.Barrier]] = {}
    attempts: ClassVar[dict[str, int]] = {}

    def run(self, context: RunContext, rows: Rows) -> Rows:
        self.journal.add(f"start {self.name}")
        count = self.attempts[self.name] = self.attempts.get(self.name, 0) + 1
        barrier = self.barriers.get(self.name)
        if barrier is not None:
            barrier.wait(timeout=10)  # raises BrokenBarrierError unless all arrive together
        gate = self.gates.get(self.name)
        if gate is not None:
            self.wait(gate, context)
        if count <= self.config["fail_times"]:
            self.journal.add(f"fail {self.name}")
            raise RuntimeError(f"{self.name} attempt {count} broke")
        self.journal.add(f"end {self.name}")
        out = [dict(row) for row in self.config["emit"]]
        if "label" in self.config:
            out.append({"label": self.config["label"]})
        return out or [{"seen": len(rows), "from": self.name}]

    def wait(self, gate: threading.Event, context: RunContext) -> None:
        for _ in range(1000):
            if gate.wait(timeout=0.01):
                return
            if self.config["cooperative"] and context.cancel_requested:
                self.journal.add(f"stopped {self.name}")
                raise RuntimeError(f"{self.name} was told to stop")


@pytest.fixture(autouse=True)
def probe() -> Iterator[type[Probe]]:
    register_bloc(Probe)
    Probe.journal = Journal()
    Probe.gates = {}
    Probe.barriers = {}
    Probe.attempts = {}
    yield Probe
    unregister_bloc("test_probe")


def bloc(name: str, **config: Any) -> Probe:
    config.setdefault("retry_delay", 0.001)
    return Probe(name, config)


def test_stages_run_in_order_and_data_flows_from_the_previous_stage() -> None:
    pipeline = Pipeline(
        "ordered",
        [
            [bloc("a", emit=[{"x": 1}, {"x": 2}])],
            [bloc("b1", emit=[{"y": 1}]), bloc("b2", emit=[{"y": 2}, {"y": 3}])],
            [bloc("c")],
        ],
    )
    result = pipeline.run()
    assert result.status is RunStatus.SUCCEEDED
    events = Probe.journal.events
    assert events.index("end a") < events.index("start b1")
    assert events.index("end a") < events.index("start b2")
    assert max(events.index("end b1"), events.index("end b2")) < events.index("start c")
    assert result.blocs["b1"].rows_in == 2
    # c reads both blocs of stage 2, concatenated in stage order
    assert result.blocs["c"].rows_in == 3
    assert result.outputs["c"] == [{"seen": 3, "from": "c"}]
    assert [b.stage for b in result.blocs.values()] == [1, 2, 2, 3]


def test_blocs_of_a_stage_really_run_at_the_same_time() -> None:
    # Each bloc waits at a barrier for all ten: the stage can only finish if they run together.
    barrier = threading.Barrier(10)
    names = [f"p{i}" for i in range(10)]
    for name in names:
        Probe.barriers[name] = barrier
    result = Pipeline("parallel", [[bloc(name) for name in names]]).run()
    assert result.status is RunStatus.SUCCEEDED, result.error


def test_source_bloc_picks_earlier_outputs_in_the_order_given() -> None:
    pipeline = Pipeline(
        "sources",
        [
            [bloc("a", emit=[{"n": 1}]), bloc("b", emit=[{"n": 2}, {"n": 3}])],
            [bloc("mid", emit=[{"n": 9}])],
            [bloc("last", source_bloc=["b", "a"]), bloc("only_a", source_bloc="a")],
        ],
    )
    result = pipeline.run()
    assert result.blocs["last"].rows_in == 3
    assert result.blocs["only_a"].rows_in == 1


def test_a_failing_bloc_lets_its_stage_finish_and_stops_later_stages() -> None:
    gate = threading.Event()
    Probe.gates["slow"] = gate
    pipeline = Pipeline(
        "failing",
        [[bloc("boom", fail_times=1), bloc("slow")], [bloc("never")]],
    )
    listener_results: list[BlocResult] = []

    class Recorder(RunListener):
        def bloc_finished(self, context: RunContext, result: BlocResult) -> None:
            listener_results.append(result)
            if result.name == "boom":
                gate.set()  # 'slow' finishes only after 'boom' failed: the stage waits for it

    result = pipeline.run(listeners=[Recorder()])
    assert result.status is RunStatus.FAILED
    assert result.blocs["boom"].status is BlocStatus.FAILED
    assert result.blocs["boom"].error_type == "RuntimeError"
    assert result.blocs["boom"].error_message == "boom attempt 1 broke"
    assert "Traceback" in (result.blocs["boom"].error_traceback or "")
    assert result.blocs["slow"].status is BlocStatus.SUCCEEDED
    assert result.blocs["never"].status is BlocStatus.SKIPPED
    assert "start never" not in Probe.journal.events
    assert result.error == "bloc 'boom' failed: RuntimeError: boom attempt 1 broke"
    assert [r.name for r in listener_results] == ["boom", "slow", "never"]


def test_retries_try_again_and_count_attempts() -> None:
    result = Pipeline("retrying", [[bloc("flaky", fail_times=2, retries=2)]]).run()
    assert result.status is RunStatus.SUCCEEDED
    assert result.blocs["flaky"].attempts == 3
    assert Probe.journal.events.count("fail flaky") == 2


def test_retries_exhausted_fail_with_the_last_error() -> None:
    result = Pipeline("exhausted", [[bloc("flaky", fail_times=5, retries=1)]]).run()
    assert result.status is RunStatus.FAILED
    assert result.blocs["flaky"].attempts == 2
    assert result.blocs["flaky"].error_message == "flaky attempt 2 broke"


def test_a_slow_attempt_is_told_to_stop_and_retried_only_once_it_ended() -> None:
    Probe.gates["stuck"] = threading.Event()  # never opens: only the timeout ends an attempt
    pipeline = Pipeline("timeouts", [[bloc("stuck", timeout=0.05, retries=1, cooperative=True)]])
    result = pipeline.run()
    assert result.status is RunStatus.FAILED
    stuck = result.blocs["stuck"]
    assert stuck.attempts == 2
    assert stuck.error_type == "BlocTimeoutError"
    assert stuck.error_message == (
        "bloc 'stuck' (test_probe) attempt 2 ran longer than its timeout of 0.05s"
    )
    # The retry started only after the first attempt had stopped.
    assert Probe.journal.events == ["start stuck", "stopped stuck"] * 2


def test_an_attempt_that_does_not_stop_within_the_grace_fails_the_run_naming_it() -> None:
    gate = threading.Event()
    Probe.gates["deaf"] = gate
    pipeline = Pipeline("deaf", [[bloc("deaf", timeout=0.05, retries=3)], [bloc("after")]])
    try:
        result = pipeline.run(stop_grace=0.1)
    finally:
        gate.set()
    assert result.status is RunStatus.FAILED
    deaf = result.blocs["deaf"]
    assert deaf.attempts == 1  # no retry beside an attempt still running
    assert deaf.error_message == (
        "bloc 'deaf' (test_probe) did not stop within 0.1s after bloc 'deaf' (test_probe) ran "
        "past its timeout; its thread is left running, and the run ends without waiting for it"
    )
    assert result.blocs["after"].status is BlocStatus.SKIPPED


def test_cancel_from_another_thread_stops_blocs_not_yet_started() -> None:
    gate = threading.Event()
    Probe.gates["running"] = gate
    token = CancelToken()
    pipeline = Pipeline("cancelled", [[bloc("running")], [bloc("later")]])

    class CancelWhenStarted(RunListener):
        def bloc_started(self, context: RunContext, bloc: Any, attempt: int) -> None:
            threading.Thread(target=lambda: (token.cancel(), gate.set())).start()

    result = pipeline.run(cancel_token=token, listeners=[CancelWhenStarted()])
    assert result.status is RunStatus.CANCELLED
    assert result.error == "the run was cancelled"
    assert result.blocs["running"].status is BlocStatus.SUCCEEDED  # it was already running
    assert result.blocs["later"].status is BlocStatus.CANCELLED
    assert "start later" not in Probe.journal.events


def test_cancel_before_a_retry_means_the_retry_never_starts() -> None:
    token = CancelToken()

    class CancelOnFirstFailure(RunListener):
        def bloc_started(self, context: RunContext, bloc: Any, attempt: int) -> None:
            if attempt == 1:
                token.cancel()

    pipeline = Pipeline("no_retry", [[bloc("flaky", fail_times=1, retries=3, retry_delay=5)]])
    result = pipeline.run(cancel_token=token, listeners=[CancelOnFirstFailure()])
    assert result.status is RunStatus.CANCELLED
    assert result.blocs["flaky"].attempts == 1


def test_any_executor_can_run_the_blocs() -> None:
    with ThreadPoolExecutor(max_workers=1) as executor:
        pipeline = Pipeline("serial", [[bloc("a", emit=[{"v": 1}]), bloc("b")]])
        result = pipeline.run(executor=executor)
    assert result.status is RunStatus.SUCCEEDED


@register_bloc
class ThreadName(TransformerBloc):
    bloc_type = "test_thread_name"

    def run(self, context: RunContext, rows: Rows) -> Rows:
        return [*rows, {"thread": threading.current_thread().name}]


def test_blocs_run_in_threads_named_for_the_run_and_a_chain_reuses_one() -> None:
    pipeline = Pipeline("threads", [[ThreadName(f"b{n}")] for n in range(5)])
    result = pipeline.run(thread_name_prefix="th2etl-run-abc")
    names = {row["thread"] for row in result.outputs["b4"]}
    assert names == {"th2etl-run-abc_0"}  # one bloc at a time: its thread is free again


def test_env_and_var_references_resolve_when_the_bloc_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TH2ETL_TEST_REGION", "north")
    pipeline = Pipeline(
        "references",
        [[bloc("r", label="${env:TH2ETL_TEST_REGION}/${var:day}", retries="${var:tries}")]],
    )
    result = pipeline.run(variables={"day": "2026-11-25", "tries": "2"})
    assert result.status is RunStatus.SUCCEEDED
    assert result.outputs["r"] == [{"label": "north/2026-11-25"}]
    assert pipeline.blocs["r"].config["label"] == "${env:TH2ETL_TEST_REGION}/${var:day}"


def test_a_missing_reference_fails_that_bloc_with_its_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TH2ETL_TEST_ABSENT", raising=False)
    pipeline = Pipeline(
        "missing_refs",
        [[bloc("env_ref", label="${env:TH2ETL_TEST_ABSENT}"), bloc("var_ref", label="${var:day}")]],
    )
    result = pipeline.run(variables={"other": 1})
    assert result.status is RunStatus.FAILED
    assert result.blocs["env_ref"].error_message == (
        "bloc 'env_ref' (test_probe): environment variable 'TH2ETL_TEST_ABSENT' is not set; "
        "set it (export TH2ETL_TEST_ABSENT=...) before the run"
    )
    assert result.blocs["var_ref"].error_message is not None
    assert result.blocs["var_ref"].error_message == (
        "bloc 'var_ref' (test_probe): run variable 'day' was not given (given: other); pass it "
        "when the run starts: variables={'day': ...} in Python, --var day=... with th2etl run, "
        'or {"variables": {"day": ...}} in the API\'s run request'
    )


def test_a_bloc_returning_something_else_than_rows_fails_clearly() -> None:
    @register_bloc
    class Broken(LoaderBloc):
        bloc_type = "test_broken"

        def run(self, context: RunContext, rows: Rows) -> Rows:
            return "oops"  # type: ignore[return-value]

    try:
        result = Pipeline("broken", [[Broken("b")]]).run()
    finally:
        unregister_bloc("test_broken")
    assert result.blocs["b"].error_type == "BlocError"
    assert result.blocs["b"].error_message == (
        "bloc 'b' (test_broken) returned str; run() must return a list of dicts "
        "(return [] for no rows)"
    )


def test_listener_errors_do_not_change_the_run(caplog: pytest.LogCaptureFixture) -> None:
    class Exploding(RunListener):
        def run_started(self, context: RunContext, pipeline: Pipeline) -> None:
            raise BlocError("listener broke")

    result = Pipeline("listened", [[bloc("a")]]).run(listeners=[Exploding()])
    assert result.status is RunStatus.SUCCEEDED
    assert "run listener" in caplog.text


def test_result_is_json_ready() -> None:
    result: RunResult = Pipeline("json", [[bloc("a", emit=[{"v": 1}])]]).run(variables={"k": "v"})
    data = result.to_dict()
    assert data["status"] == "succeeded"
    assert data["pipeline_name"] == "json"
    assert data["variables"] == {"k": "v"}
    assert data["blocs"][0]["name"] == "a"
    assert data["blocs"][0]["rows_out"] == 1
    assert "stage 1 a" in result.summary()


# Run in a fresh interpreter: in the test session, threads left by other tests (servers, clusters,
# heartbeats) make garbage of their own while the collector is off, and it would be counted here.
_GARBAGE_CHECK = """
import gc, sys
from th2etl import Pipeline, RunContext, RunStatus, TransformerBloc, register_bloc

class Tidy(TransformerBloc):
    bloc_type = "tidy_probe"

    def run(self, context: RunContext, rows: list) -> list:
        return [{"seen": len(rows), "from": self.name}]

register_bloc(Tidy)
pipeline = Pipeline(
    "tidy", [[Tidy("a", {})], [Tidy("b", {}), Tidy("c", {})], [Tidy("d", {})]]
)
pipeline.run()  # types and caches warm
gc.collect()
gc.disable()
result = pipeline.run()
assert result.status is RunStatus.SUCCEEDED, result.summary()
del result
gc.set_debug(gc.DEBUG_SAVEALL)
found = gc.collect()
print(found, sorted({type(o).__qualname__ for o in gc.garbage})[:20])
"""


def test_a_finished_run_leaves_no_garbage_cycles_behind() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _GARBAGE_CHECK], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    # everything of the run was freed by reference counting: no cycle for the collector to find
    assert done.stdout.split(maxsplit=1)[0] == "0", done.stdout
