"""The background service: started detached, found again through a pid file, stopped by signal.

``th2etl --background`` starts the same command in a new session (it survives the terminal that
started it), stdin from ``/dev/null``, stdout and stderr appended to a log file. The state
folder (``--state-dir``, else ``TH2ETL_HOME``, else ``~/.th2etl``) holds:

* ``th2etl.pid``: JSON with the PID, the command, the start time and the log file;
* ``th2etl-service.log``: what the service printed.

One background service per state folder. The service removes its pid file when it exits
cleanly; ``status`` and ``stop`` recognise a stale file (dead process, or a PID reused by
another program) and remove it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from th2etl.exceptions import ConfigurationError, Th2etlError

__all__ = [
    "PID_FILE_VARIABLE",
    "READY_FILE_VARIABLE",
    "ServiceInfo",
    "ServiceState",
    "mark_ready",
    "read_service",
    "remove_own_pid_file",
    "start_background",
    "state_dir",
    "stop_service",
]

PID_FILE_NAME = "th2etl.pid"
LOG_FILE_NAME = "th2etl-service.log"
READY_FILE_NAME = "th2etl.ready"
PID_FILE_VARIABLE = "TH2ETL_PID_FILE"
"""Set in the detached service's environment: the pid file it removes when it exits."""
READY_FILE_VARIABLE = "TH2ETL_READY_FILE"
"""Set in the detached service's environment: the file it creates once it serves."""

# `--background` returns as soon as the service says it is ready (or has died, which is then
# reported with its log); a service slower than this is reported as started, not ready yet.
STARTUP_TIMEOUT = 20.0


def state_dir(
    explicit: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Path:
    """The folder of the pid and log files: ``explicit``, else ``TH2ETL_HOME``, else
    ``~/.th2etl``."""
    env = os.environ if environ is None else environ
    if explicit:
        return Path(explicit).expanduser()
    if env.get("TH2ETL_HOME", "").strip():
        return Path(env["TH2ETL_HOME"].strip()).expanduser()
    return Path.home() / ".th2etl"


@dataclass(frozen=True)
class ServiceInfo:
    """What the pid file says about a background service."""

    pid: int
    command: list[str]
    started_at: str
    log_file: str
    pid_file: Path


class ServiceState(StrEnum):
    """What a state folder's pid file says, once checked against the live processes."""

    RUNNING = "running"
    STOPPED = "stopped"
    STALE = "stale"


def _alive(pid: int, command: Sequence[str]) -> bool:
    """True when ``pid`` is a live process (not a zombie) running ``command``, as far as we
    can tell."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, belongs to someone else: not ours to judge, treat as running
    proc = Path(f"/proc/{pid}")
    if not proc.exists():
        return True  # no /proc (macOS): the signal check is all we have
    try:
        stat = (proc / "stat").read_text()
        # The state letter follows the parenthesised command name, which may contain spaces.
        if stat[stat.rindex(")") + 2 :].startswith(("Z", "X")):
            return False
        cmdline = (proc / "cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return False
    # A recycled PID runs another program: the recorded arguments must all be there.
    wanted = [arg.encode() for arg in command[1:]]
    return all(arg in cmdline for arg in wanted)


def read_service(directory: Path) -> tuple[ServiceState, ServiceInfo | None]:
    """The service's state in ``directory`` (``running``, ``stopped``, ``stale``) and its pid file.

    A stale pid file is removed.
    """
    pid_file = directory / PID_FILE_NAME
    try:
        data: dict[str, Any] = json.loads(pid_file.read_text())
        info = ServiceInfo(
            pid=int(data["pid"]),
            command=[str(arg) for arg in data["command"]],
            started_at=str(data.get("started_at", "?")),
            log_file=str(data.get("log_file", "")),
            pid_file=pid_file,
        )
    except FileNotFoundError:
        return ServiceState.STOPPED, None
    except (OSError, ValueError, KeyError, TypeError):
        with contextlib.suppress(OSError):
            pid_file.unlink()
        return ServiceState.STALE, None
    if _alive(info.pid, info.command):
        return ServiceState.RUNNING, info
    with contextlib.suppress(OSError):
        pid_file.unlink()
    return ServiceState.STALE, info


def start_background(
    command: Sequence[str], directory: Path, extra_env: Mapping[str, str]
) -> tuple[ServiceInfo, bool]:
    """Start ``command`` detached with ``extra_env`` added to this environment; write the pid
    file; wait until the service says it is ready, at most :data:`STARTUP_TIMEOUT` seconds.

    Returns the pid file's info and whether the service said it was ready. Raises
    :class:`Th2etlError` when a service already runs from ``directory`` or when the new process
    exits before it is ready (the message quotes its log).
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot create the state folder {directory}: {exc.strerror or exc}; choose another "
            "with --state-dir or TH2ETL_HOME"
        ) from exc
    state, info = read_service(directory)
    if state == ServiceState.RUNNING and info is not None:
        raise Th2etlError(
            f"a th2etl service already runs in the background from {directory} (PID {info.pid}, "
            f"started {info.started_at}); stop it with 'th2etl stop' or use another --state-dir"
        )
    pid_file = directory / PID_FILE_NAME
    log_file = directory / LOG_FILE_NAME
    ready_file = directory / READY_FILE_NAME
    with contextlib.suppress(FileNotFoundError):
        ready_file.unlink()
    env = {
        **os.environ,
        **extra_env,
        PID_FILE_VARIABLE: str(pid_file),
        READY_FILE_VARIABLE: str(ready_file),
    }
    with open(log_file, "ab") as log, open(os.devnull, "rb") as devnull:
        start_offset = log.tell()  # the log of earlier starts is not this start's story
        log.write(f"--- {datetime.now(UTC).isoformat()} starting: {' '.join(command)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            list(command),
            stdin=devnull,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    info = ServiceInfo(
        pid=process.pid,
        command=list(command),
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        log_file=str(log_file),
        pid_file=pid_file,
    )
    tmp = pid_file.with_suffix(".tmp")
    tmp.write_text(
        json.dumps(
            {
                "pid": info.pid,
                "command": info.command,
                "started_at": info.started_at,
                "log_file": info.log_file,
            }
        )
    )
    tmp.replace(pid_file)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    code = process.poll()
    while code is None and not ready_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
        code = process.poll()
    if code is None:
        # The service outlives this process on purpose; Popen would warn that it still runs.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            del process
        return info, ready_file.exists()
    with contextlib.suppress(OSError):
        pid_file.unlink()
    tail = _tail(log_file, start_offset)
    raise Th2etlError(
        f"the background service exited while starting, with status {code}; its log "
        f"{log_file} ends with:\n{tail}"
    )


def _tail(path: Path, offset: int = 0, lines: int = 15) -> str:
    try:
        with open(path, "rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
    except OSError:
        return "(log unreadable)"
    return "\n".join(text.splitlines()[-lines:])


def stop_service(
    directory: Path, timeout: float, force: bool = False
) -> tuple[str, ServiceInfo | None]:
    """Stop the background service of ``directory``: SIGTERM to its session, wait ``timeout``.

    Returns (what happened, the pid file's info): ``stopped``, ``not running``, ``stale``,
    ``killed`` (with ``force``, after the timeout) or ``still running``.
    """
    state, info = read_service(directory)
    if state != ServiceState.RUNNING or info is None:
        return ("stale" if state == ServiceState.STALE else "not running"), info
    _signal(info.pid, signal.SIGTERM)
    if _wait_gone(info, timeout):
        _remove(info.pid_file, info.pid)
        return "stopped", info
    if not force:
        return "still running", info
    _signal(info.pid, signal.SIGKILL)
    _wait_gone(info, 5.0)
    _remove(info.pid_file, info.pid)
    return "killed", info


def _signal(pid: int, signum: signal.Signals) -> None:
    # The service leads its own session and process group: its children get the signal too.
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def _wait_gone(info: ServiceInfo, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(info.pid, info.command):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True


def _remove(pid_file: Path, pid: int) -> None:
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        if int(json.loads(pid_file.read_text())["pid"]) == pid:
            pid_file.unlink()


def mark_ready(environ: Mapping[str, str] | None = None) -> None:
    """In the detached service, once it serves: tell the starting command it is up."""
    env = os.environ if environ is None else environ
    path = env.get(READY_FILE_VARIABLE)
    if path:
        with contextlib.suppress(OSError):
            Path(path).touch()


def remove_own_pid_file(environ: Mapping[str, str] | None = None) -> None:
    """In the detached service, at exit: remove the pid file if it still names this process."""
    env = os.environ if environ is None else environ
    path = env.get(PID_FILE_VARIABLE)
    if path:
        _remove(Path(path), os.getpid())
    ready = env.get(READY_FILE_VARIABLE)
    if ready:
        with contextlib.suppress(OSError):
            Path(ready).unlink()


def python_command(*args: str) -> list[str]:
    """``python -m th2etl.runner ARGS`` with this interpreter."""
    return [sys.executable, "-m", "th2etl.runner", *args]
