"""Requests per second of the th2etl API next to a bare FastAPI app serving the same JSON.

    .venv/bin/python scripts/bench_api.py [--duration 5] [--rounds 2] [--pipelines 1000]

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

ROOT = Path(__file__).resolve().parent.parent
ENDPOINTS = ("/health", "/pipelines")


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


# -- load generation ------------------------------------------------------------------------------


def load_wrk(url: str, duration: float, connections: int) -> tuple[float, int]:
    output = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration:g}s", url],
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
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="measurements per server and path")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--pipelines", type=int, default=1000)
    parser.add_argument(
        "--load",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator (auto: wrk when installed)",
    )
    parser.add_argument("--database-url", help="PostgreSQL URL (default: a temporary SQLite file)")
    parser.add_argument("--serve-bare", nargs=2, metavar=("PORT", "BODIES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        serve_bare(int(args.serve_bare[0]), Path(args.serve_bare[1]))
        return 0

    use_wrk = args.load == "wrk" or (args.load == "auto" and shutil.which("wrk") is not None)
    load = load_wrk if use_wrk else load_python
    workdir = Path(tempfile.mkdtemp(prefix="th2etl-bench-"))
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_", "TH2ETL_", "LOG_"))
    }
    env.update(
        {"PYTHONPATH": str(ROOT), "LOG_LEVEL": "WARNING", "TH2ETL_HOME": str(workdir / "state")}
    )
    if args.database_url:
        env["DATABASE_URL"] = args.database_url
        env["DATABASE_SCHEMA"] = f"th2etl_bench_{os.getpid()}"
    else:
        env["TH2ETL_SQLITE_PATH"] = str(workdir / "bench.db")
    processes: list[subprocess.Popen[bytes]] = []
    try:
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
        return 0 if ok else 1
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if args.database_url:
            import psycopg

            with psycopg.connect(args.database_url, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{env["DATABASE_SCHEMA"]}" CASCADE')
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
