"""Benchmark the HTTP blocs against local servers on 127.0.0.1.

    .venv/bin/python scripts/bench_http.py [--rows 100000] [--messages 40] [--delay 0.05]

Prints (a) api_loader rows/s for one JSON reply of ``--rows`` 6-field records, next to
urllib + json.loads doing the same request bare (the bloc's overhead); (b) run_adk_agents wall
time enriching ``--messages`` rows against an ADK-compatible server whose agent takes
``--delay`` seconds per run, at max_concurrency 1, 4 and 8.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.http_servers import AdkServer, Reply, Request, serve
from th2etl import RunContext, create_bloc


def bench_loader(rows: int) -> None:
    records = [
        {"id": n, "name": f"item {n}", "price": n * 1.5, "ok": n % 2 == 0, "tag": "x", "n": None}
        for n in range(rows)
    ]
    payload = json.dumps({"data": {"items": records}}).encode()

    def app(request: Request) -> Reply:
        return Reply(200, payload, headers={"Content-Type": "application/json"})

    with serve(app) as server:
        url = f"{server.url}/items"
        started = time.perf_counter()
        with urllib.request.urlopen(url) as response:
            bare = json.loads(response.read())["data"]["items"]
        bare_s = time.perf_counter() - started
        bloc = create_bloc("load", "api_loader", {"url": url, "records_path": "data.items"})
        started = time.perf_counter()
        out = bloc.run(RunContext("bench"), [])
        bloc_s = time.perf_counter() - started
    assert len(out) == len(bare) == rows
    print(
        f"(a) api_loader {rows} rows: {bloc_s:.3f}s ({rows / bloc_s:,.0f} rows/s); "
        f"bare urllib+json {bare_s:.3f}s; ratio bloc/bare {bloc_s / bare_s:.2f}"
    )


def bench_agents(messages: int, delay: float) -> None:
    agent = AdkServer()
    slow = agent.__call__

    def app(request: Request) -> Reply:
        reply = slow(request)
        if request.path == "/run":
            time.sleep(delay)
        return reply

    rows = [{"n": n} for n in range(messages)]
    with serve(app) as server:
        for concurrency in (1, 4, 8):
            bloc = create_bloc(
                "ask",
                "run_adk_agents",
                {
                    "base_url": server.url,
                    "agent_id": "echo_agent",
                    "user_id": "bench",
                    "message_text": "row {n}",
                    "max_concurrency": concurrency,
                },
            )
            started = time.perf_counter()
            out = bloc.run(RunContext("bench"), rows)
            took = time.perf_counter() - started
            assert len(out) == messages
            print(
                f"(b) run_adk_agents {messages} rows, agent {delay * 1000:.0f} ms/run, "
                f"max_concurrency {concurrency}: {took:.3f}s ({messages / took:.1f} rows/s)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=40)
    parser.add_argument("--delay", type=float, default=0.05)
    args = parser.parse_args()
    bench_loader(args.rows)
    bench_agents(args.messages, args.delay)


if __name__ == "__main__":
    main()
