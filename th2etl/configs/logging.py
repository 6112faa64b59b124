"""Logging set up from environment variables: :func:`configure_logging`.

* ``LOG_LEVEL``: the global level (``DEBUG``, ``INFO``, ``WARNING``, ``ERROR``, ``CRITICAL``);
  default ``INFO``.
* ``LOG_LEVELS``: levels per logger, ``logger:LEVEL`` separated by commas, e.g.
  ``th2etl.scheduler:INFO,th2etl:WARNING``; the most specific logger wins, as usual.
* ``LOG_DIR``: a folder (created if needed) that gets one file per main module
  (``scheduler.log``, ``api.log``, ``storage.log``, ``pipelines.log``, ``blocs.log``,
  ``helpers.log``, ``runner.log``) plus ``th2etl.log`` with every record.
* ``LOG_MAX_BYTES``: a file in ``LOG_DIR`` is rotated when it would grow past this size
  (bytes, or with a unit: ``10MB``, ``512KB``, ``1GB``); default ``10MB``, ``0`` never rotates.
* ``LOG_BACKUP_COUNT``: how many rotated files to keep (``scheduler.log.1`` is the newest);
  default 5. Rotation is safe with several processes writing the same folder
  (:mod:`th2etl.configs._rotation`).

Records always go to the console (stderr) too. The configuration is checked entirely before
anything changes, so a bad value is an error at start-up and leaves logging as it was.

>>> configure_logging({"LOG_LEVEL": "WARNING"})  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from th2etl.exceptions import ConfigurationError

__all__ = [
    "LEVELS",
    "MODULE_LOG_FILES",
    "LoggingConfig",
    "configure_logging",
    "parse_logging_config",
    "reset_logging",
]

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMAT = "%(asctime)s %(levelname)-8s %(name)s: %(message)s"

MODULE_LOG_FILES: dict[str, tuple[str, ...]] = {
    "scheduler.log": ("th2etl.scheduler",),
    "api.log": ("th2etl.api", "uvicorn"),
    "storage.log": ("th2etl.storage",),
    "pipelines.log": ("th2etl.pipelines",),
    "blocs.log": ("th2etl.blocs",),
    "helpers.log": ("th2etl.helpers",),
    "runner.log": ("th2etl.runner", "th2etl.cli"),
}
"""File name in ``LOG_DIR`` -> the logger names (and their children) it receives."""

ALL_LOG_FILE = "th2etl.log"
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUP_COUNT = 5
_SIZE_UNITS = {"": 1, "B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}

# Handlers and levels this module set, so a second call replaces them instead of adding more.
_MARK = "_th2etl_handler"
_configured_levels: set[str] = set()
_root_level_before: list[int] = []


@dataclass(frozen=True)
class LoggingConfig:
    """What :func:`configure_logging` applies, parsed and checked."""

    level: str = "INFO"
    levels: dict[str, str] = field(default_factory=dict)
    log_dir: Path | None = None
    max_bytes: int = DEFAULT_MAX_BYTES
    backup_count: int = DEFAULT_BACKUP_COUNT


def _level(value: str, where: str, example: str) -> str:
    level = value.strip().upper()
    if level not in LEVELS:
        raise ConfigurationError(
            f"{where}: {value.strip()!r} is not a log level; use one of {', '.join(LEVELS)} "
            f"(e.g. {example})"
        )
    return level


def parse_logging_config(environ: Mapping[str, str] | None = None) -> LoggingConfig:
    """Read ``LOG_LEVEL``, ``LOG_LEVELS`` and ``LOG_DIR``; raise :class:`ConfigurationError`
    naming the variable, the entry and the fix when one cannot be used."""
    env = os.environ if environ is None else environ
    raw_level = env.get("LOG_LEVEL", "").strip() or "INFO"
    level = _level(raw_level, "LOG_LEVEL", "LOG_LEVEL=INFO")
    levels: dict[str, str] = {}
    for entry in env.get("LOG_LEVELS", "").split(","):
        if not entry.strip():
            continue
        name, colon, value = entry.strip().rpartition(":")
        if not colon or not name.strip() or not value.strip():
            raise ConfigurationError(
                f"LOG_LEVELS entry {entry.strip()!r} is not logger:LEVEL; write entries like "
                "th2etl.scheduler:DEBUG separated by commas, e.g. "
                "LOG_LEVELS=th2etl.scheduler:INFO,th2etl:WARNING"
            )
        levels[name.strip()] = _level(
            value, f"LOG_LEVELS entry {entry.strip()!r}", f"{name.strip()}:DEBUG"
        )
    raw_dir = env.get("LOG_DIR", "").strip()
    return LoggingConfig(
        level=level,
        levels=levels,
        log_dir=Path(raw_dir) if raw_dir else None,
        max_bytes=_size(env.get("LOG_MAX_BYTES", "").strip()),
        backup_count=_count(env.get("LOG_BACKUP_COUNT", "").strip()),
    )


def _size(text: str) -> int:
    if not text:
        return DEFAULT_MAX_BYTES
    match = re.fullmatch(r"(\d+)\s*([KMG]?B?)", text.upper())
    if match is None:
        raise ConfigurationError(
            f"LOG_MAX_BYTES {text!r} is not a size; use bytes or a number with KB, MB or GB, "
            "e.g. LOG_MAX_BYTES=10MB (0 never rotates)"
        )
    unit = match[2] if match[2] in _SIZE_UNITS else match[2] + "B"
    return int(match[1]) * _SIZE_UNITS[unit]


def _count(text: str) -> int:
    if not text:
        return DEFAULT_BACKUP_COUNT
    if not text.isdigit():
        raise ConfigurationError(
            f"LOG_BACKUP_COUNT {text!r} is not a number of files; use a whole number, e.g. "
            "LOG_BACKUP_COUNT=5 (0 keeps no rotated file)"
        )
    return int(text)


class _PrefixFilter(logging.Filter):
    """Lets through the records of some loggers and of their children."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        name = record.name
        return any(name == p or name.startswith(p + ".") for p in self.prefixes)


def reset_logging() -> None:
    """Remove (and close) the handlers :func:`configure_logging` added and undo its levels."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, _MARK, False):
            root.removeHandler(handler)
            handler.close()
    for name in _configured_levels:
        logging.getLogger(name).setLevel(logging.NOTSET)
    _configured_levels.clear()
    if _root_level_before:
        root.setLevel(_root_level_before.pop())


def _file_handler(
    path: Path, formatter: logging.Formatter, config: LoggingConfig
) -> logging.FileHandler:
    from th2etl.configs._rotation import RotatingLogFile

    try:
        handler = RotatingLogFile(path, config.max_bytes, config.backup_count)
    except OSError as exc:
        raise ConfigurationError(
            f"LOG_DIR: cannot write the log file {path}: {exc.strerror or exc}; point LOG_DIR "
            "at a writable folder or unset it"
        ) from exc
    handler.setFormatter(formatter)
    return handler


def configure_logging(environ: Mapping[str, str] | None = None) -> LoggingConfig:
    """Configure logging from ``environ`` (default ``os.environ``) and return what was applied.

    Idempotent: calling it again replaces the handlers it added before, never duplicates them.
    """
    config = parse_logging_config(environ)
    formatter = logging.Formatter(FORMAT)
    handlers: list[logging.Handler] = []
    try:
        if config.log_dir is not None:
            try:
                config.log_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigurationError(
                    f"LOG_DIR={str(config.log_dir)!r} cannot be created: {exc.strerror or exc}; "
                    "point LOG_DIR at a writable folder or unset it"
                ) from exc
            handlers.append(_file_handler(config.log_dir / ALL_LOG_FILE, formatter, config))
            for filename, prefixes in MODULE_LOG_FILES.items():
                module_handler = _file_handler(config.log_dir / filename, formatter, config)
                module_handler.addFilter(_PrefixFilter(prefixes))
                handlers.append(module_handler)
    except ConfigurationError:
        for opened in handlers:
            opened.close()
        raise
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(formatter)
    handlers.append(console)

    reset_logging()
    root = logging.getLogger()
    _root_level_before.append(root.level)
    for handler in handlers:
        setattr(handler, _MARK, True)
        root.addHandler(handler)
    root.setLevel(config.level)
    # th2etl's own loggers follow LOG_LEVEL even when the root was set otherwise before.
    logging.getLogger("th2etl").setLevel(config.level)
    _configured_levels.add("th2etl")
    for name, level in config.levels.items():
        logging.getLogger(name).setLevel(level)
        _configured_levels.add(name)
    return config
