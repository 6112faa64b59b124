"""Requests per second of the th2etl API next to a bare FastAPI app serving the same JSON.

    .venv/bin/python scripts/bench_api.py [--suite all|static|storage] [--duration 5]
        [--rounds 2] [--pipelines 1000] [--database-url postgresql://...]

Two suites. **storage** (needs ``--database-url``, PostgreSQL) measures what touches storage:
``GET /runs?limit=50``, ``GET /pipelines/{name}`` and ``POST /blocs`` at 1, 8 and 64
concurrent clients, against a bare FastAPI app (``--serve-bare-sql``, sync routes like
th2etl's) that runs the same SQL on a ``psycopg_pool.ConnectionPool`` of the same size and
serialises with ``json.dumps``; the answers are checked equal first. It then reports the
latency of ``POST /pipelines/{name}/run`` until the run has ``succeeded`` (a 2-bloc pipeline on
100 rows, in a worker process: the service's default), alone and under 8 clients of
``GET /runs``, and the heartbeat delay: while a long run (an ``api_loader`` waiting on a slow
local server) is running, a poller reads the service's ``last_seen`` every 20 ms; each gap
between two heartbeats minus ``TH2ETL_HEARTBEAT_INTERVAL`` (2 s here) is a delay. Peak RSS
(VmHWM) of both servers closes it. **static** is the older comparison below.

Both servers are real uvicorn processes on 127.0.0.1 with the same uvicorn settings:

* th2etl: ``python -m th2etl.runner --serve-api`` (API + scheduler, one process) on a SQLite
  database holding ``--pipelines`` pipelines (or ``--database-url`` for PostgreSQL);
* bare: a FastAPI app with one ``async def`` route per path that returns the bytes th2etl
  answered, pre-rendered: the fastest a FastAPI app can serve that JSON.

The load comes from another process: ``wrk`` when it is installed (``apt-get install wrk``),
else a threaded ``http.client`` loop with keep-alive connections. Rounds alternate between the
two servers so machine noise hits both; the medians are compared. Target: th2etl >= 0.7 x bare.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ENDPOINTS = ("/health", "/pipelines")
CONCURRENCY = (1, 8, 64)
POOL_SIZE = 10
HEARTBEAT = 2.0  # its lease is 3 s: a delay under the 1 s target never loses it
RUNS = 500  # stored runs, 2 bloc runs each
PIPELINE = "pipeline_0500"
# wrk: each request creates a bloc of a new name (tag from the command line, then thread, count).
POST_BLOCS_LUA = """
local made = 0
function setup(thread)
  made = made + 1
  thread:set("tid", made)
end
function init(args)
  tag = args[1]
  tid = wrk.thread:get("tid")
  count = 0
end
function request()
  count = count + 1
  local body = string.format(
    '{"name":"b_%s_%d_%d","bloc_type":"example_transformer","config":{"factor":2}}',
    tag, tid, count)
  return wrk.format("POST", "/blocs", {["Content-Type"] = "application/json"}, body)
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- the bare app (run in its own process by --serve-bare) ----------------------------------------


def serve_bare(port: int, bodies_file: Path) -> None:
    import uvicorn
    from fastapi import FastAPI
    from starlette.responses import Response

    bodies: dict[str, str] = json.loads(bodies_file.read_text())
    app = FastAPI()
    for path, text in bodies.items():
        payload = text.encode()

        async def endpoint(payload: bytes = payload) -> Response:
            return Response(payload, media_type="application/json")

        app.add_api_route(path, endpoint, methods=["GET"])
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")


# -- the bare SQL app (run in its own process by --serve-bare-sql) -------------------------------

_RUN = (
    "run_id, pipeline_name, status, started_at, finished_at, scheduler_name, trigger_name, "
    "scheduled_time, variables, error, owner_id, cancel_requested, started_by, cancelled_by, "
    "cancel_requested_at, queued_at, claimed_at, timeout, executor, worker, attempt"
)
_BLOC_RUN = (
    "run_id, bloc_name, bloc_type, stage, status, attempts, rows_in, rows_out, duration, "
    "started_at, finished_at, error_type, error_message, error_traceback"
)


def _jsonable(value: object) -> object:
    return value.isoformat()  # type: ignore[attr-defined]


def serve_bare_sql(port: int, url: str, schema: str) -> None:
    """Hand-written routes: the SQL th2etl sends, rows to dicts, ``json.dumps``."""
    from datetime import UTC, datetime

    import psycopg
    import uvicorn
    from fastapi import Body, FastAPI
    from psycopg import sql
    from psycopg_pool import ConnectionPool
    from starlette.responses import Response

    def table(name: str) -> str:
        with psycopg.connect(url) as conn:
            return sql.Identifier(schema, f"th2etl_{name}").as_string(conn)

    runs, bloc_runs, pipelines, blocs = (
        table(name) for name in ("runs", "bloc_runs", "pipelines", "blocs")
    )
    list_runs = (
        f"SELECT {_RUN} FROM {runs} ORDER BY started_at DESC, run_id DESC LIMIT %s",
        f"SELECT {_BLOC_RUN} FROM {bloc_runs} WHERE run_id = ANY(%s) ORDER BY run_id, position",
    )
    get_pipeline = (
        f"SELECT name, stages, description, created_at, updated_at, timeout FROM {pipelines} "
        "WHERE name = %s"
    )
    insert_bloc = (
        f"INSERT INTO {blocs} (name, bloc_type, config, description, created_at, updated_at) "
        "VALUES (%s, %s, %s, %s, %s, %s)"
    )
    pool = ConnectionPool(
        url, min_size=1, max_size=POOL_SIZE, kwargs={"options": "-c TimeZone=UTC"}, open=True
    )
    app = FastAPI()
    run_keys = _RUN.split(", ")
    bloc_keys = _BLOC_RUN.split(", ")

    def answer(content: object, status: int = 200) -> Response:
        return Response(
            json.dumps(content, default=_jsonable),
            status_code=status,
            media_type="application/json",
        )

    @app.get("/health")
    async def health() -> Response:
        return answer({"status": "ok"})

    @app.get("/runs")
    def runs_route(limit: int = 100) -> Response:
        with pool.connection() as conn:
            rows = conn.execute(list_runs[0], (limit,)).fetchall()
            ids = [row[0] for row in rows]
            blocs_of: dict[str, list[dict[str, object]]] = {}
            for bloc in conn.execute(list_runs[1], (ids,)).fetchall():
                blocs_of.setdefault(bloc[0], []).append(dict(zip(bloc_keys, bloc, strict=True)))
        answers = []
        for row in rows:
            run = dict(zip(run_keys, row, strict=True))
            finished, started = run["finished_at"], run["started_at"]
            run.update(
                definition=None,
                blocs=blocs_of.get(run["run_id"], []),
                log=None,
                logical_time=None,  # the stored runs are manual: no logical time
                instance_id=run["owner_id"],
                duration=None if finished is None else (finished - started).total_seconds(),
            )
            answers.append(run)
        return answer(answers)

    @app.get("/pipelines/{name}")
    def pipeline_route(name: str) -> Response:
        with pool.connection() as conn:
            row = conn.execute(get_pipeline, (name,)).fetchone()
        if row is None:
            return answer({"detail": f"pipeline {name!r} not found"}, 404)
        keys = ("name", "stages", "description", "created_at", "updated_at", "timeout")
        return answer(dict(zip(keys, row, strict=True)))

    @app.post("/blocs")
    def create_bloc_route(body: dict[str, Any] = Body(...)) -> Response:  # noqa: B008
        now = datetime.now(UTC)
        config = body.get("config") or {}
        values = (body["name"], body["bloc_type"], json.dumps(config), "", now, now)
        try:
            with pool.connection() as conn:
                conn.execute(insert_bloc, values)
        except psycopg.errors.UniqueViolation:
            return answer({"detail": f"bloc {body['name']!r} exists"}, 409)
        keys = ("name", "bloc_type", "config", "description", "created_at", "updated_at")
        return answer(dict(zip(keys, (*values[:2], config, "", now, now), strict=True)), 201)

    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")


# -- load generation ------------------------------------------------------------------------------


def load_wrk(
    url: str, duration: float, connections: int, script: Path | None = None, *args: str
) -> tuple[float, int]:
    command = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{duration:g}s"]
    if script is not None:
        command += ["-s", str(script)]
    output = subprocess.run(
        [*command, url, *(["--", *args] if args else [])],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    return rate, int(bad.group(1)) if bad else 0


def _python_load(url: str, duration: float, connections: int) -> tuple[float, int]:
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    deadline = time.perf_counter() + duration
    counts = [0] * connections
    errors = [0] * connections

    def worker(index: int) -> None:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        try:
            while time.perf_counter() < deadline:
                conn.request("GET", parts.path)
                response = conn.getresponse()
                response.read()
                counts[index] += 1
                if response.status != 200:
                    errors[index] += 1
        finally:
            conn.close()

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - start), sum(errors)


def load_python(url: str, duration: float, connections: int) -> tuple[float, int]:
    """The threaded loop, in a child process so it never shares a CPU slice with this one."""
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[4]); import bench_api; "
        "print(json.dumps(bench_api._python_load(sys.argv[1], float(sys.argv[2]), "
        "int(sys.argv[3]))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, url, str(duration), str(connections), str(ROOT / "scripts")],
        capture_output=True,
        text=True,
        check=True,
    )
    rate, errors = json.loads(result.stdout)
    return float(rate), int(errors)


# -- the storage suite ----------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def peak_rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", text).group(1)) / 1024  # type: ignore[union-attr]


class SlowServer:
    """An HTTP server on 127.0.0.1 whose answers wait until :meth:`release` (a long run's
    ``api_loader`` waits on it)."""

    def __init__(self) -> None:
        released = self.released = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                released.wait(600)
                body = b"[]"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def release(self) -> None:
        self.released.set()
        self.server.shutdown()


class HeartbeatPoller:
    """Reads the service owner's ``last_seen`` every 20 ms; keeps each new value."""

    def __init__(self, url: str, schema: str) -> None:
        import psycopg
        from psycopg import sql

        self.conn = psycopg.connect(url, autocommit=True)
        self.query = sql.SQL(
            "SELECT last_seen FROM {} WHERE instance_id LIKE 'api-%%' ORDER BY started_at DESC "
            "LIMIT 1"
        ).format(sql.Identifier(schema, "th2etl_instances"))
        self.seen: list[Any] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.poll, daemon=True)
        self.thread.start()

    def poll(self) -> None:
        while not self.stopping.wait(0.02):
            row = self.conn.execute(self.query).fetchone()
            if row is not None and (not self.seen or row[0] != self.seen[-1]):
                self.seen.append(row[0])

    def delays(self) -> list[float]:
        self.stopping.set()
        self.thread.join()
        self.conn.close()
        gaps = [(b - a).total_seconds() for a, b in zip(self.seen, self.seen[1:], strict=False)]
        return [gap - HEARTBEAT for gap in gaps]


def request_json(method: str, url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def populate_storage_suite(env: dict[str, str], workdir: Path, slow_port: int) -> None:
    from datetime import UTC, datetime, timedelta

    from th2etl.configs.settings import get_settings
    from th2etl.pipelines.result import BlocResult, BlocStatus, RunStatus
    from th2etl.storage import DatabaseStorage

    with (workdir / "sales.csv").open("w") as file:  # the "load" bloc of every pipeline
        file.write("id,amount\n" + "".join(f"{n},{n * 1.5}\n" for n in range(100)))
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with DatabaseStorage.from_settings(get_settings(env)) as storage:
        for number in range(RUNS):
            run_id = f"run_{number:04d}"
            at = start + timedelta(seconds=number)
            storage.start_run(run_id, "pipeline_0000", started_at=at)
            for position, bloc in enumerate(("load", "double")):
                result = BlocResult(bloc, "csv_loader", position, BlocStatus.SUCCEEDED)
                storage.record_bloc_run(run_id, result, position)
            storage.finish_run(
                run_id, RunStatus.SUCCEEDED, finished_at=at + timedelta(seconds=0.5), error=None
            )
        storage.create_bloc(
            "slow",
            "api_loader",
            config={"url": f"http://127.0.0.1:{slow_port}/slow", "timeout": 600},
        )
        storage.create_pipeline("long_run", stages=[["slow"]])


def check_same_answers(ours: str, bare: str) -> None:
    for path in ("/runs?limit=50", f"/pipelines/{PIPELINE}"):
        mine, theirs = request_json("GET", ours + path), request_json("GET", bare + path)
        if mine != theirs:
            raise SystemExit(f"GET {path}: the bare app answers differently:\n{mine}\n{theirs}")
    body = {"bloc_type": "example_transformer", "config": {"factor": 2}}
    mine = request_json("POST", ours + "/blocs", {"name": "check_ours", **body})
    theirs = request_json("POST", bare + "/blocs", {"name": "check_bare", **body})
    if {**mine, "name": "", "created_at": "", "updated_at": ""} != {
        **theirs,
        "name": "",
        "created_at": "",
        "updated_at": "",
    }:
        raise SystemExit(f"POST /blocs: the bare app answers differently:\n{mine}\n{theirs}")


def run_latencies(url: str, count: int) -> list[float]:
    """Seconds from each POST /pipelines/{name}/run until its run has succeeded (the run's
    finished_at, written on this host, minus the moment before the request)."""
    from datetime import datetime

    latencies = []
    for _ in range(count):
        before = time.time()
        run_id = request_json("POST", f"{url}/pipelines/pipeline_0000/run")["run_id"]
        while True:
            run = request_json("GET", f"{url}/runs/{run_id}")
            if run["status"] not in ("queued", "running"):
                break
            time.sleep(0.005)
        if run["status"] != "succeeded":
            raise SystemExit(f"run {run_id} ended {run['status']}: {run.get('error')}")
        latencies.append(datetime.fromisoformat(run["finished_at"]).timestamp() - before)
    return latencies


def storage_suite(args: argparse.Namespace, env: dict[str, str], workdir: Path) -> bool:
    if not shutil.which("wrk"):
        raise SystemExit("the storage suite needs wrk (apt-get install wrk) for POST /blocs")
    url = args.database_url
    schema = f"th2etl_bench_api_{ROOT.name}_{os.getpid()}"
    env = {
        **env,
        "DATABASE_URL": url,
        "DATABASE_SCHEMA": schema,
        "TH2ETL_HEARTBEAT_INTERVAL": str(HEARTBEAT),
        "TH2ETL_POOL_SIZE": str(POOL_SIZE),
    }
    env.pop("TH2ETL_SQLITE_PATH", None)
    slow = SlowServer()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        started = time.perf_counter()
        populate(env, args.pipelines)
        populate_storage_suite(env, workdir, slow.port)
        print(
            f"\n== storage suite: PostgreSQL schema {schema}: {args.pipelines} pipelines, {RUNS} "
            f"runs; stored in {time.perf_counter() - started:.1f}s"
        )
        ours_port, bare_port = free_port(), free_port()
        ours = subprocess.Popen(
            [sys.executable, "-m", "th2etl.runner", "--serve-api", "--port", str(ours_port)],
            env=env,
            cwd=workdir,
        )
        processes.append(ours)
        bare = subprocess.Popen(
            [sys.executable, __file__, "--serve-bare-sql", str(bare_port), url, schema],
            env=env,
            cwd=workdir,
        )
        processes.append(bare)
        ours_url, bare_url = f"http://127.0.0.1:{ours_port}", f"http://127.0.0.1:{bare_port}"
        wait_healthy(ours_url, ours)
        wait_healthy(bare_url, bare)
        check_same_answers(ours_url, bare_url)

        poller = HeartbeatPoller(url, schema)
        long_run = request_json("POST", f"{ours_url}/pipelines/long_run/run")["run_id"]
        script = workdir / "post_blocs.lua"
        script.write_text(POST_BLOCS_LUA)
        endpoints: list[tuple[str, str, Path | None]] = [
            ("GET /runs?limit=50", "/runs?limit=50", None),
            ("GET /pipelines/{name}", f"/pipelines/{PIPELINE}", None),
            ("POST /blocs", "/blocs", script),
        ]
        print(
            f"load: wrk, {args.duration:g}s x {args.rounds} rounds per server, endpoint and "
            f"concurrency; pool size {POOL_SIZE} on both; {os.cpu_count()} CPUs, load average "
            f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}"
        )
        results: dict[tuple[str, str, int], list[float]] = {}
        tags = iter(range(1_000_000))
        for label, path, lua in endpoints:
            for clients in CONCURRENCY:
                for base in (ours_url, bare_url):  # warm-up
                    load_wrk(base + path, 1.0, clients, lua, f"w{next(tags)}")
                for _ in range(args.rounds):
                    for name, base in (("ours", ours_url), ("bare", bare_url)):
                        rate, errors = load_wrk(
                            base + path, args.duration, clients, lua, f"t{next(tags)}"
                        )
                        if errors:
                            raise SystemExit(f"{name} {label}: {errors} non-2xx answers")
                        results.setdefault((name, label, clients), []).append(rate)

        idle = run_latencies(ours_url, args.runs)
        background = subprocess.Popen(
            ["wrk", "-t2", "-c8", "-d600s", f"{ours_url}/runs?limit=50"],
            stdout=subprocess.DEVNULL,
        )
        try:
            busy = run_latencies(ours_url, args.runs)
        finally:
            background.terminate()
            background.wait()
        delays = poller.delays()
        long_status = request_json("GET", f"{ours_url}/runs/{long_run}")["status"]
        if long_status == "running":
            request_json("POST", f"{ours_url}/runs/{long_run}/cancel")
        slow.release()
        rss = {
            name: peak_rss_mb(process.pid)
            for name, process in zip(("ours", "bare"), processes, strict=True)
        }

        print(
            f"\n{'endpoint':<22} {'clients':>7} {'th2etl req/s':>13} {'bare req/s':>11} "
            f"{'ratio':>6}  target >= 0.7"
        )
        ok = True
        for label, _path, _lua in endpoints:
            for clients in CONCURRENCY:
                mine = statistics.median(results[("ours", label, clients)])
                theirs = statistics.median(results[("bare", label, clients)])
                ratio = mine / theirs
                ok &= ratio >= 0.7
                print(f"{label:<22} {clients:>7} {mine:>13.0f} {theirs:>11.0f} {ratio:>6.2f}")
        for what, values in (("alone", idle), ("under 8 clients of GET /runs", busy)):
            print(
                f"\nPOST /pipelines/{{name}}/run until succeeded, {what} ({len(values)} runs, "
                f"2 blocs, 100 rows, worker process): p50 {percentile(values, 0.5) * 1000:.0f} ms,"
                f" p99 {percentile(values, 0.99) * 1000:.0f} ms"
            )
        print(
            f"heartbeat delay (gap between heartbeats - {HEARTBEAT:g}s) over the whole load, "
            f"{len(delays)} gaps, a long run running: p50 {percentile(delays, 0.5) * 1000:.0f} "
            f"ms, p99 {percentile(delays, 0.99) * 1000:.0f} ms, max {max(delays) * 1000:.0f} ms"
            "  target p99 < 1 s"
        )
        if long_status != "running":
            print(f"  the long run ended {long_status} during the load (see the log above)")
            ok = False
        ok &= percentile(delays, 0.99) < 1.0
        print(f"peak RSS: th2etl {rss['ours']:.0f} MB, bare {rss['bare']:.0f} MB")
        print(f"load average now {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        return ok
    finally:
        slow.release()
        stop(processes)
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- orchestration --------------------------------------------------------------------------------


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server at {url} exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the server at {url} was not healthy within {timeout}s")


def fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        return str(response.read().decode())


def populate(env: dict[str, str], count: int) -> None:
    sys.path.insert(0, str(ROOT))
    from th2etl.configs.settings import get_settings
    from th2etl.storage import DatabaseStorage

    with DatabaseStorage.from_settings(get_settings(env)) as storage:
        storage.create_bloc("load", "csv_loader", config={"file_path": "sales.csv"})
        storage.create_bloc("double", "example_transformer", config={"factor": 2})
        for number in range(count):
            storage.create_pipeline(
                f"pipeline_{number:04d}",
                stages=[["load"], ["double"]],
                description=f"benchmark pipeline {number}",
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--suite",
        choices=("all", "static", "storage"),
        default="all",
        help="storage needs --database-url (PostgreSQL); all skips it without one",
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="measurements per server and path")
    parser.add_argument("--connections", type=int, default=16, help="static suite's clients")
    parser.add_argument("--pipelines", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=30, help="storage suite's timed runs, twice")
    parser.add_argument(
        "--load",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="static suite's load generator (auto: wrk when installed)",
    )
    parser.add_argument("--database-url", help="PostgreSQL URL (default: a temporary SQLite file)")
    parser.add_argument("--serve-bare", nargs=2, metavar=("PORT", "BODIES"), help=argparse.SUPPRESS)
    parser.add_argument("--serve-bare-sql", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(int(args.serve_bare[0]), Path(args.serve_bare[1]))
        return 0
    if args.serve_bare_sql:
        port, url, schema = args.serve_bare_sql
        serve_bare_sql(int(port), url, schema)
        return 0
    if args.suite == "storage" and not args.database_url:
        parser.error("--suite storage needs --database-url postgresql://...")
    ok = True
    if args.suite in ("all", "static"):
        ok &= static_suite(args)
    if args.suite in ("all", "storage") and args.database_url:
        workdir = Path(tempfile.mkdtemp(prefix="th2etl-bench-"))
        try:
            ok &= storage_suite(args, base_env(workdir), workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0 if ok else 1


def base_env(workdir: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_", "TH2ETL_", "LOG_"))
    }
    env.update(
        {"PYTHONPATH": str(ROOT), "LOG_LEVEL": "WARNING", "TH2ETL_HOME": str(workdir / "state")}
    )
    return env


def static_suite(args: argparse.Namespace) -> bool:
    use_wrk = args.load == "wrk" or (args.load == "auto" and shutil.which("wrk") is not None)
    load = load_wrk if use_wrk else load_python
    workdir = Path(tempfile.mkdtemp(prefix="th2etl-bench-"))
    env = base_env(workdir)
    if args.database_url:
        env["DATABASE_URL"] = args.database_url
        env["DATABASE_SCHEMA"] = f"th2etl_bench_{os.getpid()}"
    else:
        env["TH2ETL_SQLITE_PATH"] = str(workdir / "bench.db")
    processes: list[subprocess.Popen[bytes]] = []
    try:
        print("== static suite")
        started = time.perf_counter()
        populate(env, args.pipelines)
        print(f"stored {args.pipelines} pipelines in {time.perf_counter() - started:.1f}s")

        th2etl_port, bare_port = free_port(), free_port()
        th2etl = subprocess.Popen(
            [sys.executable, "-m", "th2etl.runner", "--serve-api", "--port", str(th2etl_port)],
            env=env,
            cwd=workdir,
        )
        processes.append(th2etl)
        th2etl_url = f"http://127.0.0.1:{th2etl_port}"
        wait_healthy(th2etl_url, th2etl)
        bodies = {path: fetch(th2etl_url + path) for path in ENDPOINTS}
        assert len(json.loads(bodies["/pipelines"])) == args.pipelines
        (workdir / "bodies.json").write_text(json.dumps(bodies))
        bare = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve-bare",
                str(bare_port),
                str(workdir / "bodies.json"),
            ],
            env=env,
            cwd=workdir,
        )
        processes.append(bare)
        bare_url = f"http://127.0.0.1:{bare_port}"
        wait_healthy(bare_url, bare)
        for path in ENDPOINTS:
            assert fetch(bare_url + path) == bodies[path], f"bare {path} differs"

        print(
            f"load: {'wrk' if load is load_wrk else 'python http.client threads'}, "
            f"{args.connections} connections, {args.duration:g}s x {args.rounds} rounds each; "
            f"{os.cpu_count()} CPUs"
        )
        results: dict[tuple[str, str], list[float]] = {}
        for path in ENDPOINTS:
            for _name, url in (("th2etl", th2etl_url), ("bare", bare_url)):  # warm-up
                load(url + path, 1.0, args.connections)
            for _ in range(args.rounds):
                for name, url in (("th2etl", th2etl_url), ("bare", bare_url)):
                    rate, errors = load(url + path, args.duration, args.connections)
                    if errors:
                        raise SystemExit(f"{name} {path}: {errors} non-200 answers")
                    results.setdefault((name, path), []).append(rate)

        print(f"\n{'path':<12} {'th2etl req/s':>14} {'bare req/s':>12} {'ratio':>7}  target >= 0.7")
        ok = True
        for path in ENDPOINTS:
            ours = statistics.median(results[("th2etl", path)])
            theirs = statistics.median(results[("bare", path)])
            ratio = ours / theirs
            ok &= ratio >= 0.7
            size = len(bodies[path].encode())
            print(
                f"{path:<12} {ours:>14.0f} {theirs:>12.0f} {ratio:>7.2f}  "
                f"({size:,} bytes per answer)"
            )
        print(f"\ntotal time {time.perf_counter() - started:.0f}s")
        return ok
    finally:
        stop(processes)
        if args.database_url:
            import psycopg

            with psycopg.connect(args.database_url, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{env["DATABASE_SCHEMA"]}" CASCADE')
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
