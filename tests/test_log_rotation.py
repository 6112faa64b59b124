"""Log files in LOG_DIR rotate by size (LOG_MAX_BYTES, LOG_BACKUP_COUNT), also with several
processes writing the same folder."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import subprocess_env
from th2etl.configs.logging import configure_logging, parse_logging_config, reset_logging
from th2etl.exceptions import ConfigurationError


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    reset_logging()


def _lines(folder: Path, name: str) -> list[str]:
    return [
        line
        for path in sorted(folder.glob(f"{name}*"))
        if not path.name.endswith(".lock")
        for line in path.read_text().splitlines()
    ]


def test_files_rotate_by_size_keeping_the_backup_count(tmp_path: Path) -> None:
    configure_logging({"LOG_DIR": str(tmp_path), "LOG_MAX_BYTES": "2KB", "LOG_BACKUP_COUNT": "2"})
    logger = logging.getLogger("th2etl.scheduler")
    for number in range(200):
        logger.warning("line %04d %s", number, "x" * 40)
    names = sorted(p.name for p in tmp_path.glob("scheduler.log*") if p.suffix != ".lock")
    assert names == ["scheduler.log", "scheduler.log.1", "scheduler.log.2"]
    assert all((tmp_path / name).stat().st_size <= 2048 for name in names)
    newest = (tmp_path / "scheduler.log").read_text().splitlines()
    assert newest[-1].endswith("line 0199 " + "x" * 40)
    assert "line 0199" in (tmp_path / "th2etl.log").read_text()


_WRITER = """
import logging, sys
from th2etl.configs.logging import configure_logging
configure_logging()
logger = logging.getLogger("th2etl.runner")
for number in range(int(sys.argv[2])):
    logger.warning("writer %s line %05d", sys.argv[1], number)
"""


@pytest.mark.slow
def test_processes_writing_one_folder_lose_and_tear_no_line(tmp_path: Path) -> None:
    env = subprocess_env(
        LOG_DIR=str(tmp_path), LOG_MAX_BYTES="16KB", LOG_BACKUP_COUNT="100", LOG_LEVEL="WARNING"
    )
    count = 1500
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, name, str(count)], env=env)
        for name in ("a", "b", "c")
    ]
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0, 0]
    lines = _lines(tmp_path, "runner.log")
    expected = {f"writer {w} line {n:05d}" for w in "abc" for n in range(count)}
    assert sorted(line.split(": ", 1)[1] for line in lines) == sorted(expected)
    files = [p for p in tmp_path.glob("runner.log*") if p.suffix != ".lock"]
    assert len(files) > 3
    assert all(path.stat().st_size <= 16 * 1024 for path in files)


def test_bad_rotation_settings_are_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"LOG_MAX_BYTES '10 megs' is not a size; use"):
        parse_logging_config({"LOG_MAX_BYTES": "10 megs"})
    with pytest.raises(ConfigurationError, match=r"LOG_BACKUP_COUNT 'five' is not a number of"):
        parse_logging_config({"LOG_BACKUP_COUNT": "five"})
    config = parse_logging_config({"LOG_MAX_BYTES": "10MB", "LOG_BACKUP_COUNT": "0"})
    assert (config.max_bytes, config.backup_count) == (10 * 1024 * 1024, 0)
    assert parse_logging_config({"LOG_MAX_BYTES": "512k"}).max_bytes == 512 * 1024
