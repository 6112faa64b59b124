"""Retention: th2etl prune, TH2ETL_RUN_RETENTION_DAYS and the daily pass, on both backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.cli.conftest import Cli
from th2etl.clock import FakeClock
from th2etl.configs.settings import get_settings
from th2etl.exceptions import ConfigurationError, ValidationError
from th2etl.pipelines.result import BlocResult, BlocStatus
from th2etl.retention import DailyRetention, parse_age, prune

NOW = datetime.now(UTC).replace(microsecond=0)
OLD = NOW - timedelta(days=40)


def _run(cli: Cli, run_id: str, started: datetime, status: str | None, **tick: object) -> None:
    if tick:
        claimed = cli.storage.claim_run(
            "nightly",
            tick["at"],
            pipeline_name="sales",
            trigger_name=None,
            instance_id=None,
            now=started,
            run_id=run_id,
        )
        assert claimed is not None
        cli.storage.start_run(run_id, "sales", started_at=started, scheduler_name="nightly")
    else:
        cli.storage.start_run(run_id, "sales", started_at=started)
    cli.storage.record_bloc_run(run_id, BlocResult("load", "csv_loader", 1, BlocStatus.SUCCEEDED))
    cli.storage.append_run_log(run_id, f"log of {run_id}\n")
    if status:
        cli.storage.finish_run(
            run_id, status, finished_at=started + timedelta(minutes=1), error=None
        )


def _history(cli: Cli, logs: Path) -> None:
    """Old: a manual run, two ticks (one still running); recent: a manual run."""
    _run(cli, "old-manual", OLD, "failed")
    _run(cli, "old-tick", OLD, "succeeded", at=OLD)
    _run(cli, "old-running", OLD + timedelta(hours=1), None, at=OLD + timedelta(hours=1))
    _run(cli, "new-manual", NOW - timedelta(days=1), "succeeded")
    for at in (OLD, OLD + timedelta(hours=1), NOW - timedelta(days=1)):
        folder = logs / "nightly" / at.strftime("%Y%m%d_%H%M%S")
        folder.mkdir(parents=True)
        (folder / "run.log").write_text("x")


def _ids(cli: Cli) -> list[str]:
    return sorted(run.run_id for run in cli.storage.list_runs(limit=100))


def test_prune_deletes_ended_old_runs_keeps_running_ones_and_the_ticks(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    logs = tmp_path / "runs"
    monkeypatch.setenv("PIPELINES_LOGS_DIR", str(logs))
    _history(cli, logs)

    code, out, _ = cli("prune", "--older-than", "30d", "--dry-run")
    assert code == 0
    assert out.startswith("would delete 2 run(s) that ended and started before ")
    assert "and 1 output folder(s); 1 scheduler tick(s) are kept as taken" in out
    assert len(_ids(cli)) == 4 and (logs / "nightly" / OLD.strftime("%Y%m%d_%H%M%S")).exists()

    code, out, _ = cli("prune", "--older-than", "30d")
    assert code == 0 and out.startswith("deleted 2 run(s)")
    assert _ids(cli) == ["new-manual", "old-running"]
    assert sorted(p.name for p in (logs / "nightly").iterdir()) == sorted(
        at.strftime("%Y%m%d_%H%M%S") for at in (OLD + timedelta(hours=1), NOW - timedelta(days=1))
    )
    # The pruned tick stays taken: a claim (a backfill, a catch-up) inserts nothing.
    again = cli.storage.claim_run(
        "nightly", OLD, pipeline_name="sales", trigger_name=None, instance_id=None, now=NOW
    )
    assert again is None
    assert cli.storage.latest_scheduled_time("nightly") == OLD + timedelta(hours=1)
    assert cli("prune", "--older-than", "30d")[1].startswith("deleted 0 run(s)")


def test_prune_goes_in_batches(cli: Cli) -> None:
    for number in range(7):
        _run(cli, f"r{number}", OLD + timedelta(minutes=number), "succeeded")
    result = prune(cli.storage, timedelta(days=30), now=NOW, batch_size=3)
    assert (result.runs, result.ticks, _ids(cli)) == (7, 0, [])


def test_the_daily_pass_prunes_by_its_clock_and_survives_an_outage(cli: Cli) -> None:
    _run(cli, "old", OLD, "succeeded")
    clock = FakeClock(start=OLD + timedelta(days=20))
    daily = DailyRetention(lambda: cli.storage, 30, clock=clock)  # closed, then reconnects
    assert daily.run_once() is not None and _ids(cli) == ["old"]
    clock.advance(timedelta(days=11))
    result = daily.run_once()
    assert result is not None and result.runs == 1 and _ids(cli) == []

    def unreachable() -> object:
        raise ConfigurationError("no database")

    assert DailyRetention(unreachable, 30).run_once() is None


@pytest.mark.parametrize("text", ["30", "30 days", "0d", "-3d", "1y", ""])
def test_a_malformed_age_is_refused_with_examples(text: str) -> None:
    with pytest.raises(
        ValidationError,
        match=r"is not an age; write a whole number above 0 and "
        r"a unit \(s, m, h, d or w\), e.g. 30d, 12h, 2w or 90m",
    ):
        parse_age(text)


def test_prune_without_an_age_or_with_a_bad_one_says_how(cli: Cli) -> None:
    code, _, err = cli("prune")
    assert code == 2
    assert "th2etl prune needs an age: give --older-than (e.g. --older-than 30d) or set " in err
    with pytest.raises(SystemExit):
        cli("prune", "--older-than", "a month")
    assert "--older-than 'a month' is not an age;" in cli.capsys.readouterr().err
    assert parse_age("2w") == timedelta(days=14) and parse_age("90m") == timedelta(minutes=90)


def test_retention_days_setting() -> None:
    assert get_settings({"TH2ETL_RUN_RETENTION_DAYS": "30"}).run_retention_days == 30
    assert get_settings({}).run_retention_days is None
    with pytest.raises(
        ConfigurationError,
        match=r"TH2ETL_RUN_RETENTION_DAYS '30d' is not a number of days; use a whole number "
        r"above 0, e.g. 30, or unset it to keep every run",
    ):
        get_settings({"TH2ETL_RUN_RETENTION_DAYS": "30d"})
