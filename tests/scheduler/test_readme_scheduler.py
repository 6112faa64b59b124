"""The README's Scheduler and Output Storage snippets: the seed's examples run as written (in a
real process, stopped by SIGTERM), and their fake-clock variants give exact results."""

from __future__ import annotations

import ast
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from tests.conftest import subprocess_env
from tests.readme import code_blocks, run_snippet

WRAPPER = """
import runpy, signal, sys, threading, time

def ready():
    while signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        time.sleep(0.001)
    print("ready", flush=True)

threading.Thread(target=ready, daemon=True).start()
runpy.run_path(sys.argv[1], run_name="__main__")
print("stopped cleanly", flush=True)
"""


def blocks() -> list[str]:
    return code_blocks("Scheduler")


def run_until_sigterm(snippet: str, folder: Path, env: dict[str, str]) -> str:
    (folder / "snippet.py").write_text(snippet)
    (folder / "wrapper.py").write_text(WRAPPER)
    process = subprocess.Popen(
        [sys.executable, "wrapper.py", "snippet.py"],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    first = process.stdout.readline().strip()
    if first != "ready":
        _, err = process.communicate(timeout=30)
        raise AssertionError(f"the snippet did not start its scheduler: {first!r} {err}")
    process.terminate()  # SIGTERM
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return out


@pytest.mark.slow
@pytest.mark.parametrize(
    "index", [0, 1, 3], ids=["CronScheduler", "SchedulerManager", "schedule_pipeline"]
)
def test_seed_examples_run_as_written(index: int, tmp_path: Path) -> None:
    snippet = blocks()[index]
    assert snippet.rstrip().endswith(".start()")
    out = run_until_sigterm(snippet, tmp_path, subprocess_env())
    assert out.strip() == "stopped cleanly"


@pytest.mark.slow
@pytest.mark.postgres
def test_seed_database_example_runs_as_written(
    tmp_path: Path, postgres: Any, pg_schema: str
) -> None:
    snippet = blocks()[2]
    assert "load_scheduler_manager(storage)" in snippet
    env = subprocess_env(DATABASE_URL=postgres.url, DATABASE_SCHEMA=pg_schema)
    out = run_until_sigterm(snippet, tmp_path, env)
    assert out.strip() == "stopped cleanly"
    with psycopg.connect(postgres.url) as conn:  # it migrated the schema it was given
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = %s", (pg_schema,)
        ).fetchone()
    assert tables is not None and tables[0] > 0


def test_policy_snippet_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    namespace = run_snippet(blocks()[4], tmp_path, "policies")
    scheduler = namespace["scheduler"]
    assert (scheduler.missed.value, scheduler.overlap.value, scheduler.max_catch_up) == (
        "all",
        "skip",
        3,
    )
    times = [datetime.fromisoformat(t) for t in ast.literal_eval(capsys.readouterr().out)]
    paris = ZoneInfo("Europe/Paris")
    assert len(times) == 3
    assert {(t.astimezone(paris).hour, t.astimezone(paris).minute) for t in times} == {(6, 0)}
    assert {t.astimezone(paris).weekday() for t in times} <= {0, 1, 2, 3, 4}


def test_fake_clock_snippet_gives_exact_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("pipelines_logs_dir", raising=False)
    monkeypatch.delenv("PIPELINES_LOGS_DIR", raising=False)
    namespace = run_snippet(blocks()[5], tmp_path, "fake_clock")
    assert len(namespace["hourly"]) == 24 and len(namespace["done"]) == 24 + 288
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "24 288"
    assert lines[1] == "2026-01-01 01:00:00+00:00 succeeded"


def test_output_storage_snippet_writes_the_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (snippet,) = code_blocks("Output Storage")
    run_snippet(snippet, tmp_path, "output")
    assert capsys.readouterr().out.strip() == "['example_output.csv', 'result.json', 'run.log']"
    folder = tmp_path / "runs" / "five_minute_scheduler" / "20260101_000500"
    assert "succeeded" in (folder / "result.json").read_text()
