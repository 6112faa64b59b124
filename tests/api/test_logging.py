"""configure_logging: LOG_LEVEL, LOG_LEVELS, LOG_DIR, and refusals at start-up."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from th2etl.configs.logging import (
    ALL_LOG_FILE,
    MODULE_LOG_FILES,
    configure_logging,
    parse_logging_config,
    reset_logging,
)
from th2etl.exceptions import ConfigurationError


def _ours() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if getattr(h, "_th2etl_handler", False)]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    reset_logging()


def test_defaults_to_info_on_the_console_only() -> None:
    config = configure_logging({})
    assert config.level == "INFO"
    assert config.log_dir is None
    assert logging.getLogger("th2etl").level == logging.INFO
    handlers = _ours()
    assert len(handlers) == 1
    assert isinstance(handlers[0], logging.StreamHandler)


def test_log_level_and_log_levels_apply_to_loggers() -> None:
    configure_logging({"LOG_LEVEL": "debug", "LOG_LEVELS": " th2etl.scheduler:error , foo:INFO"})
    assert logging.getLogger("th2etl").level == logging.DEBUG
    assert logging.getLogger("th2etl.scheduler").level == logging.ERROR
    assert logging.getLogger("foo").level == logging.INFO


def test_calling_twice_does_not_duplicate_handlers_and_forgets_old_levels(tmp_path: Path) -> None:
    configure_logging({"LOG_DIR": str(tmp_path), "LOG_LEVELS": "th2etl.api:DEBUG"})
    first = len(_ours())
    configure_logging({"LOG_DIR": str(tmp_path)})
    assert len(_ours()) == first == len(MODULE_LOG_FILES) + 2
    assert logging.getLogger("th2etl.api").level == logging.NOTSET


def test_log_dir_gets_one_file_per_module_and_everything_in_th2etl_log(tmp_path: Path) -> None:
    log_dir = tmp_path / "logs"
    configure_logging(
        {"LOG_DIR": str(log_dir), "LOG_LEVELS": "th2etl.scheduler:INFO,th2etl:WARNING"}
    )
    logging.getLogger("th2etl.scheduler.manager").info("tick fired")
    logging.getLogger("th2etl.api.app").info("api info is below WARNING")
    logging.getLogger("th2etl.api.app").warning("api warning")
    logging.getLogger("th2etl.storage").error("storage error")
    for handler in _ours():
        handler.flush()
    names = {p.name for p in log_dir.iterdir()}
    assert {"scheduler.log", "api.log", "storage.log", ALL_LOG_FILE} <= names
    scheduler = (log_dir / "scheduler.log").read_text()
    api = (log_dir / "api.log").read_text()
    everything = (log_dir / ALL_LOG_FILE).read_text()
    assert "tick fired" in scheduler and "api warning" not in scheduler
    assert "api warning" in api and "api info is below WARNING" not in api
    assert "tick fired" not in api
    assert "storage error" in (log_dir / "storage.log").read_text()
    for message in ("tick fired", "api warning", "storage error"):
        assert message in everything


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"LOG_LEVEL": "VERBOSE"}, r"LOG_LEVEL: 'VERBOSE' is not a log level; use one of DEBUG"),
        (
            {"LOG_LEVELS": "th2etl.scheduler"},
            r"LOG_LEVELS entry 'th2etl.scheduler' is not logger:LEVEL; write entries like",
        ),
        ({"LOG_LEVELS": ":DEBUG"}, r"LOG_LEVELS entry ':DEBUG' is not logger:LEVEL"),
        ({"LOG_LEVELS": "th2etl:"}, r"LOG_LEVELS entry 'th2etl:' is not logger:LEVEL"),
        (
            {"LOG_LEVELS": "th2etl:INFO,th2etl.api:LOUD"},
            r"LOG_LEVELS entry 'th2etl.api:LOUD': 'LOUD' is not a log level; .*th2etl.api:DEBUG",
        ),
    ],
)
def test_bad_values_are_refused_and_change_nothing(
    environ: dict[str, str], message: str, tmp_path: Path
) -> None:
    configure_logging({"LOG_LEVEL": "ERROR"})
    before = _ours()
    with pytest.raises(ConfigurationError, match=message):
        configure_logging({**environ, "LOG_DIR": str(tmp_path / "never")})
    assert _ours() == before
    assert logging.getLogger("th2etl").level == logging.ERROR
    assert not (tmp_path / "never").exists()


def test_unusable_log_dir_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigurationError, match=r"LOG_DIR=.*a_file.* cannot be created"):
        configure_logging({"LOG_DIR": str(blocker / "logs")})
    assert _ours() == []


def test_parse_reads_os_environ_by_default(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("LOG_LEVEL", "warning")
    assert parse_logging_config().level == "WARNING"
