"""Server-side render time and transfer size of every dashboard page, with a long run history.

    .venv/bin/python scripts/bench_ui.py [--runs 10000] [--requests 200] [--dsn ...]

In a PostgreSQL schema of its own (``th2etl_bench_ui_<random>``, dropped at the end; the
database comes from ``--dsn``, ``TH2ETL_BENCH_DATABASE_URL`` or
``postgresql://postgres@127.0.0.1:5432/test``): 5 pipelines of 4 blocs in 3 stages, 5 triggers
and schedulers, and ``--runs`` recorded runs spread over the last 30 days (each with its 4 bloc
records and a log; 1 in 20 failed), written through the storage API.

The API with the dashboard is served by a real uvicorn server on 127.0.0.1, in this process,
behind an ASGI timer that measures each request from its arrival to the last byte of its
answer: the server-side time. Each page (overview, pipeline, an older page of its history, a
run, schedulers) is fetched ``--requests`` times in turn with keep-alive; the reference is the
JSON API's ``GET /runs?pipeline=...&limit=20``, measured the same way in the same rounds.
Targets: every page p95 < 100 ms and < 200 KB. Prints p50 / p95 / max, bytes, the ratio of
each page's p95 to the reference's, and the peak RSS.
"""

from __future__ import annotations

import argparse
import http.client
import os
import resource
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DEFAULT_DSN = os.environ.get(
    "TH2ETL_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
P95_TARGET_MS = 100.0
SIZE_TARGET = 200_000
PIPELINES = 5


class Timer:
    """ASGI middleware: seconds from a request's arrival to its last body byte, by path."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.times: dict[str, list[float]] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        key = scope["path"] + (
            "?" + scope["query_string"].decode() if scope["query_string"] else ""
        )

        async def timed_send(message: Any) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.times.setdefault(key, []).append(time.perf_counter() - started)

        await self.app(scope, receive, timed_send)


def seed(storage: Any, runs: int) -> dict[str, str]:
    """Definitions and ``runs`` finished runs; returns the URLs to measure."""
    from th2etl.pipelines.result import BlocResult, BlocStatus, RunStatus

    for p in range(PIPELINES):
        names = [f"p{p}_load", f"p{p}_double", f"p{p}_triple", f"p{p}_export"]
        storage.create_bloc(names[0], "example_transformer")
        for name in names[1:]:
            storage.create_bloc(name, "example_transformer", config={"factor": 2})
        storage.create_pipeline(f"pipeline_{p}", [[names[0]], names[1:3], [names[3]]])
        storage.create_trigger(f"trigger_{p}", f"pipeline_{p}", f"{p * 7} 2 * * *", "Europe/Paris")
        storage.create_scheduler(f"scheduler_{p}", f"pipeline_{p}", f"trigger_{p}")
    now = datetime.now(UTC)
    step = timedelta(days=30) / runs
    last_id = ""
    written = 0
    while written < runs:
        with storage.transaction():
            for _ in range(min(500, runs - written)):
                p = written % PIPELINES
                started = now - timedelta(days=30) + step * written
                run_id = uuid.uuid4().hex
                failed = written % 20 == 7
                storage.start_run(run_id, f"pipeline_{p}", started_at=started)
                blocs = [(f"p{p}_load", 1), (f"p{p}_double", 2), (f"p{p}_triple", 2)]
                blocs.append((f"p{p}_export", 3))
                log = [f"{started.isoformat()} run {run_id} of pipeline 'pipeline_{p}' started"]
                for position, (name, stage) in enumerate(blocs):
                    begin = started + timedelta(seconds=stage)
                    bad = failed and stage == 3
                    storage.record_bloc_run(
                        run_id,
                        BlocResult(
                            name=name,
                            bloc_type="example_transformer",
                            stage=stage,
                            status=BlocStatus.FAILED if bad else BlocStatus.SUCCEEDED,
                            attempts=1,
                            started_at=begin,
                            finished_at=begin + timedelta(seconds=0.8),
                            duration=0.8,
                            rows_in=1000 * (stage > 1),
                            rows_out=0 if bad else 1000,
                            error_type="ValueError" if bad else None,
                            error_message="bad row 17" if bad else None,
                        ),
                        position,
                    )
                    log.append(f"{begin.isoformat()} stage {stage} bloc '{name}' finished")
                storage.append_run_log(run_id, "\n".join(log) + "\n")
                storage.finish_run(
                    run_id,
                    RunStatus.FAILED if failed else RunStatus.SUCCEEDED,
                    finished_at=started + timedelta(seconds=4),
                    error="bloc failed: bad row 17" if failed else None,
                )
                last_id = run_id
                written += 1
    older = storage.list_runs(pipeline_name="pipeline_0", limit=41)[-1].started_at
    before = quote(older.isoformat(), safe="")
    return {
        "overview": "/ui",
        "pipeline": "/ui/pipelines/pipeline_0",
        "pipeline, page 3": f"/ui/pipelines/pipeline_0?before={before}",
        "run": f"/ui/runs/{last_id}",
        "schedulers": "/ui/schedulers",
        "reference: GET /runs?limit=20": "/runs?pipeline=pipeline_0&limit=20",
    }


def serve(app: Any) -> tuple[Any, threading.Thread, int]:
    import socket

    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise SystemExit("uvicorn did not start")
        time.sleep(0.05)
    return server, thread, port


def measure(port: int, pages: dict[str, str], requests: int, timer: Timer) -> dict[str, int]:
    sizes: dict[str, int] = {}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for _ in range(requests):
        for url in pages.values():
            connection.request("GET", url)
            answer = connection.getresponse()
            body = answer.read()
            if answer.status != 200:
                raise SystemExit(f"GET {url}: HTTP {answer.status}: {body[:300]!r}")
            sizes[url] = len(body) + sum(len(k) + len(v) + 4 for k, v in answer.getheaders())
    connection.close()
    return sizes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    args = parser.parse_args()

    import psycopg
    from psycopg import sql

    from th2etl.api import create_app
    from th2etl.storage import PostgresStorage

    schema = f"th2etl_bench_ui_{uuid.uuid4().hex[:8]}"
    storage = PostgresStorage(args.dsn, schema=schema)
    try:
        began = time.perf_counter()
        pages = seed(storage, args.runs)
        print(f"seeded {args.runs:,} runs in {time.perf_counter() - began:.1f} s ({schema})")
        timer = Timer(create_app(storage, start_scheduler=False, api_key=""))
        server, thread, port = serve(timer)
        try:
            measure(port, pages, 5, timer)  # warm up: connections, caches, imports
            timer.times.clear()
            sizes = measure(port, pages, args.requests, timer)
        finally:
            server.should_exit = True
            thread.join(30)
    finally:
        storage.close()
        with psycopg.connect(args.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))

    reference = pages["reference: GET /runs?limit=20"]
    ref_p95 = statistics.quantiles(timer.times[reference], n=20)[18] * 1000
    print(f"\n{'page':32} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'bytes':>9} {'p95/ref':>8}")
    ok = True
    for name, url in pages.items():
        times = sorted(t * 1000 for t in timer.times[url])
        p95 = statistics.quantiles(times, n=20)[18]
        print(
            f"{name:32} {statistics.median(times):8.1f} {p95:8.1f} {times[-1]:8.1f} "
            f"{sizes[url]:9,} {p95 / ref_p95:8.2f}"
        )
        if not name.startswith("reference"):
            ok = ok and p95 < P95_TARGET_MS and sizes[url] < SIZE_TARGET
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS {peak:.0f} MB; targets: p95 < {P95_TARGET_MS:.0f} ms, < {SIZE_TARGET:,} B")
    print("all pages within the targets" if ok else "SOME PAGE MISSES A TARGET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
