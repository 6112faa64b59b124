"""Batches and streams: bounded memory, the stage rule, spills, failures, cancel and retries."""

from __future__ import annotations

import csv
import threading
import tracemalloc
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from th2etl import (
    CancelToken,
    ExporterBloc,
    LoaderBloc,
    Pipeline,
    RunContext,
    RunListener,
    RunStatus,
    TransformerBloc,
    create_bloc,
    register_bloc,
)
from th2etl.blocs import unregister_bloc
from th2etl.pipelines import BlocResult, BlocStatus
from th2etl.types import Rows


def write_csv(path: Path, rows: int) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "amount"])
        for n in range(rows):
            writer.writerow([n, n % 1000])
    return path


class Counter(LoaderBloc):
    """Yields ``rows`` rows in batches; can wait at a gate after its first batch, or fail."""

    bloc_type = "test_counter"
    gates: ClassVar[dict[str, threading.Event]] = {}
    fail_after: ClassVar[dict[str, int]] = {}
    attempts: ClassVar[dict[str, int]] = {}

    def run(self, context: RunContext, rows: Rows) -> Rows:
        return [row for batch in self.stream(context, []) for row in batch]

    def stream(self, context: RunContext, batches: Iterable[Rows]) -> Iterator[Rows]:
        self.attempts[self.name] = self.attempts.get(self.name, 0) + 1
        total = int(self.description or 10)
        size = context.batch_size
        for start in range(0, total, size):
            if start and self.name in self.gates:
                assert self.gates[self.name].wait(10), "nothing consumed the first batch"
            if self.fail_after.get(self.name) == start and self.attempts[self.name] == 1:
                raise RuntimeError(f"{self.name} broke at row {start}")
            yield [{"n": n} for n in range(start, min(start + size, total))]


class Opener(TransformerBloc):
    """A streaming transformer that opens a gate when its first batch arrives."""

    bloc_type = "test_opener"
    per_batch = True
    streams_safely = True
    opens: ClassVar[threading.Event] = threading.Event()

    def run(self, context: RunContext, rows: Rows) -> Rows:
        self.opens.set()
        return rows


class Sorter(TransformerBloc):
    """A first-wave bloc: declares nothing, so it receives every row in one list."""

    bloc_type = "test_sorter"
    calls: ClassVar[list[int]] = []

    def run(self, context: RunContext, rows: Rows) -> Rows:
        self.calls.append(len(rows))
        return sorted(rows, key=lambda row: -row["n"])


class Sink(ExporterBloc):
    """Counts what it receives, per batch; commits (into ``written``) only at the end."""

    bloc_type = "test_sink"
    streams_safely = True
    written: ClassVar[dict[str, list[int]]] = {}

    def run(self, context: RunContext, rows: Rows) -> Rows:
        return [row for batch in self.stream(context, [rows]) for row in batch]

    def stream(self, context: RunContext, batches: Iterable[Rows]) -> Iterator[Rows]:
        staged = [row["n"] for batch in batches for row in batch]
        self.written[self.name] = staged  # the "commit"
        yield [{"rows": len(staged)}]


class BadBatch(TransformerBloc):
    bloc_type = "test_bad_batch"
    per_batch = True
    streams_safely = True

    def run(self, context: RunContext, rows: Rows) -> Rows:
        return "oops" if rows[0]["n"] >= 20 else rows  # type: ignore[return-value]


@pytest.fixture(autouse=True)
def types() -> Iterator[None]:
    for kind in (Counter, Opener, Sorter, Sink, BadBatch):
        register_bloc(kind)
    Counter.gates, Counter.fail_after, Counter.attempts = {}, {}, {}
    Opener.opens = threading.Event()
    Sorter.calls, Sink.written = [], {}
    yield
    for kind in (Counter, Opener, Sorter, Sink, BadBatch):
        unregister_bloc(kind.bloc_type)


def counter(name: str, rows: int, **config: Any) -> Counter:
    return Counter(name, config, description=str(rows))


def test_a_safe_consumer_streams_while_its_source_still_produces() -> None:
    # The loader waits after its first batch until the transformer has seen it: a stage-by-
    # stage run would wait forever (10 s, then the loader fails).
    Counter.gates["load"] = Opener.opens
    load = counter("load", 50)
    pipeline = Pipeline(
        "streams", [[load], [Opener("pass", {})], [Sink("sink", {"source_bloc": "pass"})]]
    )
    result = pipeline.run(batch_size=10)
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert Sink.written["sink"] == list(range(50))
    assert result.blocs["load"].batches_out == 5
    assert result.blocs["pass"].batches_in == 5
    assert result.blocs["sink"].rows_in == 50


def test_a_first_wave_bloc_gets_all_rows_at_once_and_starts_after_its_stage() -> None:
    pipeline = Pipeline(
        "sorting", [[counter("load", 25)], [Sorter("sort", {})], [Sink("sink", {})]]
    )
    result = pipeline.run(batch_size=10)
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert Sorter.calls == [25]
    assert Sink.written["sink"] == list(range(24, -1, -1))
    assert result.blocs["sort"].batches_out == 3  # its one list, cut to the batch size


def test_the_diamond_reads_spilled_input_in_stage_order_without_deadlock() -> None:
    pipeline = Pipeline(
        "diamond",
        [
            [counter("load", 3000)],
            [Opener("a", {}), create_bloc("b", "example_transformer", {"factor": 2})],
            [Sink("agg", {})],
        ],
    )
    result = pipeline.run(batch_size=7)
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert Sink.written["agg"] == list(range(3000)) + [2 * n for n in range(3000)]


def test_a_bloc_can_set_its_own_batch_size() -> None:
    result = Pipeline("sized", [[counter("load", 100, batch_size=30)]]).run(batch_size=10)
    assert result.blocs["load"].batches_out == 4


def test_an_upstream_failure_leaves_the_csv_target_as_it_was(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("old\n")
    Counter.fail_after["load"] = 40
    export = create_bloc("export", "csv_exporter", {"file_path": str(target)})
    result = Pipeline("broken", [[counter("load", 100)], [export]]).run(batch_size=10)
    assert result.status is RunStatus.FAILED
    assert result.error == "bloc 'load' failed: RuntimeError: load broke at row 40"
    assert result.blocs["export"].status is BlocStatus.SKIPPED
    assert result.blocs["export"].error_message == (
        "stopped before it finished because bloc 'load' failed"
    )
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_a_failure_in_an_earlier_stage_stops_a_streaming_exporter_before_it_commits(
    tmp_path: Path,
) -> None:
    # 'export' streams from 'load'; 'check' (stage 2) fails after 'load' finished. The
    # exporter has every row by then, yet must not rename its file.
    target = tmp_path / "out.csv"
    export = create_bloc(
        "export", "csv_exporter", {"file_path": str(target), "source_bloc": "load"}
    )
    check = counter("check", 100)
    Counter.fail_after["check"] = 0
    result = Pipeline("late", [[counter("load", 100)], [check], [export]]).run(batch_size=10)
    assert result.status is RunStatus.FAILED
    assert result.blocs["export"].status is BlocStatus.SKIPPED
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_transformer_returning_a_non_list_for_one_batch_fails_naming_it() -> None:
    result = Pipeline(
        "bad", [[counter("load", 100)], [BadBatch("shaky", {})], [Sink("sink", {})]]
    ).run(batch_size=10)
    assert result.status is RunStatus.FAILED
    assert result.error == (
        "bloc 'shaky' failed: BlocError: bloc 'shaky' (test_bad_batch) returned str for batch "
        "3; run() must return a list of dicts (return [] for no rows)"
    )
    assert "sink" not in Sink.written


def test_cancelling_mid_stream_stops_every_bloc_and_commits_nothing(tmp_path: Path) -> None:
    token = CancelToken()
    gate = threading.Event()  # never opens: the loader waits after its first batch
    Counter.gates["load"] = gate
    target = tmp_path / "out.csv"

    class CancelOnFirstBatch(RunListener):
        def bloc_progress(self, context: RunContext, result: BlocResult) -> None:
            if result.name == "export" and result.rows_in:
                token.cancel()
                gate.set()

    export = create_bloc("export", "csv_exporter", {"file_path": str(target)})
    pipeline = Pipeline("cancelled", [[counter("load", 1000)], [Opener("pass", {})], [export]])
    result = pipeline.run(batch_size=10, cancel_token=token, listeners=[CancelOnFirstBatch()])
    assert result.status is RunStatus.CANCELLED
    assert {name: bloc.status for name, bloc in result.blocs.items()} == {
        "load": BlocStatus.CANCELLED,
        "pass": BlocStatus.CANCELLED,
        "export": BlocStatus.CANCELLED,
    }
    assert result.blocs["load"].rows_out < 1000
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_retry_restarts_the_stream_from_its_source_and_writes_once() -> None:
    Counter.fail_after["load"] = 30
    pipeline = Pipeline(
        "retried", [[counter("load", 100, retries=2, retry_delay=0.001)], [Sink("sink", {})]]
    )
    result = pipeline.run(batch_size=10)
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.blocs["load"].attempts == 2
    assert result.blocs["sink"].attempts == 1
    assert Sink.written["sink"] == list(range(100))  # once, not 30 rows + 100


def test_outputs_keep_small_results_and_say_why_a_large_one_is_missing() -> None:
    pipeline = Pipeline("kept", [[counter("small", 5), counter("large", 20_000)]])
    result = pipeline.run()
    assert result.outputs["small"] == [{"n": n} for n in range(5)]
    with pytest.raises(KeyError, match="passed on 20000 rows, more than the 10000 a run keeps"):
        result.outputs["large"]
    assert len(pipeline.run(keep_outputs=True).outputs["large"]) == 20_000
    kept_none = pipeline.run(keep_outputs=False, batch_size=1000)
    assert kept_none.outputs == {}
    with pytest.raises(
        KeyError,
        match=r"bloc 'small' passed on 5 rows, but this run kept none \(keep_outputs=False, as "
        r"in every run started by the scheduler.*pipeline.run\(keep_outputs=True\)",
    ):
        kept_none.outputs["small"]
    large = kept_none.blocs["large"]
    assert (large.rows_out, large.batches_out) == (20_000, 20)
    with pytest.raises(KeyError, match="no output for bloc 'nope'; blocs with kept rows: none"):
        kept_none.outputs["nope"]


def test_progress_reaches_listeners_while_rows_flow() -> None:
    seen: list[tuple[str, int]] = []
    gate = threading.Event()
    Counter.gates["load"] = gate

    class Watch(RunListener):
        def bloc_progress(self, context: RunContext, result: BlocResult) -> None:
            seen.append((result.name, result.rows_out))
            gate.set()

    result = Pipeline("watched", [[counter("load", 30)], [Opener("pass", {})]]).run(
        batch_size=10, listeners=[Watch()]
    )
    assert result.status is RunStatus.SUCCEEDED
    assert ("load", 10) in seen  # counted while the loader still waited at its gate


def test_bounded_memory_csv_to_transformer_to_csv(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "in.csv", 200_000)
    load = create_bloc(
        "load", "csv_loader", {"file_path": str(source), "types": {"id": "int", "amount": "int"}}
    )
    double = create_bloc("double", "example_transformer", {"factor": 2})
    export = create_bloc("export", "csv_exporter", {"file_path": str(tmp_path / "out.csv")})
    pipeline = Pipeline("bounded", [[load], [double], [export]])
    tracemalloc.start()
    try:
        result = pipeline.run(batch_size=1000, keep_outputs=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.status is RunStatus.SUCCEEDED, result.error
    assert result.blocs["export"].rows_in == 200_000
    # Every row in memory at once (as a list of dicts) takes far more than this bound.
    full = _size_of_rows(source)
    assert full > 40_000_000
    assert peak < 4_000_000, f"peak {peak:,} bytes; all the rows take {full:,}"
    with (tmp_path / "out.csv").open() as handle:
        lines = handle.read().splitlines()
    assert lines[:2] == ["id,amount", "0,0"]
    assert lines[-1] == "399998,1998"


def _size_of_rows(source: Path) -> int:
    """What all the rows take as one list of dicts, from the size of their first tenth."""
    sample = source.with_name("sample.csv")
    with source.open() as handle, sample.open("w") as out:
        lines = handle.readlines()
        out.writelines(lines[: 1 + (len(lines) - 1) // 10])
    tracemalloc.start()
    try:
        rows = create_bloc(
            "all", "csv_loader", {"file_path": str(sample), "types": {"id": "int", "amount": "int"}}
        ).run(RunContext("all"), [])
        size = tracemalloc.get_traced_memory()[0]
        del rows
    finally:
        tracemalloc.stop()
        sample.unlink()
    return size * 10
