"""What ``GET /metrics`` reports, in the Prometheus text format (extra ``api``).

* **Counters** come from this process's own events, so retention never makes them go down:
  ``th2etl_runs_total{pipeline, status}`` (runs that ended), ``th2etl_bloc_rows_total{pipeline,
  bloc, direction="in"|"out"}``, the histograms ``th2etl_run_duration_seconds{pipeline}`` and
  ``th2etl_scheduler_lag_seconds{scheduler}`` (from a tick's due time to its run's start).
  Every run this process records is counted: the storage's run recorder reports to
  :data:`METRICS` (attach :class:`MetricsListener` to count runs that are not recorded), and
  a run executed in a worker process or on a Dask worker is counted by its owner when the
  worker's result comes back (:meth:`Metrics.run_ended_elsewhere`).
* **Gauges** describe now and may read the database: ``th2etl_database_up`` (1 or 0, from the
  service's health probe), ``th2etl_queued_manual_runs`` (manual runs waiting in the database)
  and ``th2etl_manual_runs_active`` (manual runs executing in this process).

This module keeps plain counters (no import of ``prometheus_client``, so recording costs
nothing at import); :func:`exposition` turns them and the gauges into the text format.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from th2etl.pipelines.listener import RunListener

if TYPE_CHECKING:
    from th2etl.pipelines.context import RunContext
    from th2etl.pipelines.pipeline import Pipeline
    from th2etl.pipelines.result import BlocResult, RunResult

__all__ = ["DURATION_BUCKETS", "LAG_BUCKETS", "METRICS", "Metrics", "MetricsListener", "exposition"]

DURATION_BUCKETS = (0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0)
LAG_BUCKETS = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)


@dataclass
class _Histogram:
    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def observe(self, value: float) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        counts = self.counts or [0] * (len(self.bounds) + 1)
        running, result = 0, []
        for bound, count in zip([*map(str, self.bounds), "+Inf"], counts, strict=True):
            running += count
            result.append((bound, float(running)))
        return result


class Metrics:
    """This process's counters and histograms (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.runs: dict[tuple[str, str], int] = defaultdict(int)
        self.rows: dict[tuple[str, str, str], int] = defaultdict(int)
        self.durations: dict[str, _Histogram] = {}
        self.lags: dict[str, _Histogram] = {}

    def run_started(self, context: RunContext, pipeline: Pipeline, lag: float | None) -> None:
        if lag is not None and context.scheduler_name:
            with self._lock:
                histogram = self.lags.setdefault(context.scheduler_name, _Histogram(LAG_BUCKETS))
                histogram.observe(max(lag, 0.0))

    def bloc_finished(self, context: RunContext, result: BlocResult) -> None:
        with self._lock:
            self.rows[(context.pipeline_name, result.name, "in")] += result.rows_in
            self.rows[(context.pipeline_name, result.name, "out")] += result.rows_out

    def run_finished(self, result: RunResult) -> None:
        with self._lock:
            self.runs[(result.pipeline_name, result.status.value)] += 1
            histogram = self.durations.setdefault(
                result.pipeline_name, _Histogram(DURATION_BUCKETS)
            )
            histogram.observe(max(result.duration, 0.0))

    def run_ended_elsewhere(self, result: RunResult) -> None:
        """Count a run that executed in another process (a worker), whose recorder counted it
        there: its scheduler lag, its blocs' rows and its end, from the result the worker sent
        back."""
        with self._lock:
            if result.scheduler_name and result.scheduled_time is not None:
                lag = (result.started_at - result.scheduled_time).total_seconds()
                histogram = self.lags.setdefault(result.scheduler_name, _Histogram(LAG_BUCKETS))
                histogram.observe(max(lag, 0.0))
            for bloc in result.blocs.values():
                self.rows[(result.pipeline_name, bloc.name, "in")] += bloc.rows_in
                self.rows[(result.pipeline_name, bloc.name, "out")] += bloc.rows_out
        self.run_finished(result)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "runs": dict(self.runs),
                "rows": dict(self.rows),
                "durations": {k: (v.cumulative(), v.total) for k, v in self.durations.items()},
                "lags": {k: (v.cumulative(), v.total) for k, v in self.lags.items()},
            }


METRICS = Metrics()
"""This process's metrics."""


class MetricsListener(RunListener):
    """Counts a run in :data:`METRICS` (the storage's run recorder does this already)."""

    def run_started(self, context: RunContext, pipeline: Pipeline) -> None:
        METRICS.run_started(context, pipeline, None)

    def bloc_finished(self, context: RunContext, result: BlocResult) -> None:
        METRICS.bloc_finished(context, result)

    def run_finished(self, context: RunContext, result: RunResult) -> None:
        METRICS.run_finished(result)


def exposition(gauges: Callable[[], dict[str, float]], metrics: Metrics = METRICS) -> bytes:
    """The Prometheus text format of ``metrics`` and of ``gauges()`` (name -> value, read at
    each scrape)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )

    class Collector:
        def collect(self) -> Iterator[Any]:
            data = metrics.snapshot()
            runs = CounterMetricFamily(
                "th2etl_runs",
                "Runs that ended, by pipeline and status",
                labels=["pipeline", "status"],
            )
            for (pipeline, status), count in sorted(data["runs"].items()):
                runs.add_metric([pipeline, status], count)
            yield runs
            rows = CounterMetricFamily(
                "th2etl_bloc_rows",
                "Rows read (in) and produced (out) by each bloc",
                labels=["pipeline", "bloc", "direction"],
            )
            for labels, count in sorted(data["rows"].items()):
                rows.add_metric(list(labels), count)
            yield rows
            for name, doc, label, key in (
                ("th2etl_run_duration_seconds", "Run durations", "pipeline", "durations"),
                (
                    "th2etl_scheduler_lag_seconds",
                    "From a tick's due time to the start of its run",
                    "scheduler",
                    "lags",
                ),
            ):
                family = HistogramMetricFamily(name, doc, labels=[label])
                for value, (buckets, total) in sorted(data[key].items()):
                    family.add_metric([value], buckets, total)
                yield family
            for gauge, value in gauges().items():
                yield GaugeMetricFamily(gauge, _GAUGE_DOCS.get(gauge, gauge), value=value)

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())
    return generate_latest(registry)


_GAUGE_DOCS = {
    "th2etl_database_up": "1 when the database answers the service's health probe, else 0",
    "th2etl_queued_manual_runs": "Manual runs waiting in the database for a slot",
    "th2etl_manual_runs_active": "Manual runs executing in this process",
}
