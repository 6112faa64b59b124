"""A fork server for a Dask worker: run children start in milliseconds, and can be killed.

A nanny's worker is a daemonic process, so :mod:`multiprocessing` (and its forkserver) refuses
to start children there, and forking the threaded worker itself is unsafe. Spawning a fresh
interpreter per run costs about 250 ms of CPU (importing th2etl). So each worker process starts,
on its first run, one *forker*: ``python -m th2etl.executors._forker FD``, a single-threaded
process with th2etl's worker code, storage backends and built-in blocs imported, which forks
one child per run.

Protocol, over an ``AF_UNIX`` ``SOCK_SEQPACKET`` pair (one message per packet):

* worker -> forker: ``b"fork"`` carrying one file descriptor, the child's end of the run's
  socket (the child reads its :class:`~th2etl.executors._worker.WorkerSpec` there, then runs
  :func:`th2etl.executors._worker.main`);
* forker -> worker: ``b"pid N"`` answering each fork, in order, and ``b"exit N CODE"`` when a
  child ends (CODE negative: killed by that signal), since only the forker can reap them.

The worker closing its end (it died) ends the forker; its children notice on their own
sockets, whose other ends the dead worker held, and stop.
"""

from __future__ import annotations

import contextlib
import gc
import os
import queue
import selectors
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future

__all__ = ["ForkedChild", "Forker", "forker"]

PRELOAD = (
    "th2etl.executors._worker",
    "th2etl.storage.postgres",
    "th2etl.storage.sqlite",
    "th2etl.blocs.files",
    "th2etl.blocs.examples",
    "th2etl.blocs.http",
    "th2etl.blocs.postgres",
)
"""Imported once by the forkserver (process executor) and by this forker (Dask workers),
so that every worker starts with them."""


class ForkedChild:
    """A child of the forker, with the face of a :class:`multiprocessing.Process` that
    :class:`~th2etl.executors.process._ProcessHandle` supervises."""

    def __init__(self, pid: int, exit_code: Future[int], forget: Callable[[int], None]) -> None:
        self.pid = pid
        self._exit = exit_code
        self._forget = forget
        try:
            self.sentinel = os.pidfd_open(pid)  # readable once the process ends
        except ProcessLookupError:  # it ended (and was reaped) already
            self.sentinel, write = os.pipe()
            os.close(write)  # a read end at EOF: always readable

    def terminate(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    def join(self) -> None:
        with contextlib.suppress(TimeoutError):
            self._exit.result(timeout=10)  # the forker reports it right after the end

    @property
    def exitcode(self) -> int | None:
        return self._exit.result() if self._exit.done() else None

    def close(self) -> None:
        os.close(self.sentinel)
        self._forget(self.pid)


class Forker:
    """The worker's side: starts the forker process and asks it for children."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "th2etl.executors._forker", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        self._sock = ours
        self._lock = threading.Lock()
        self._pids: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._exits: dict[int, Future[int]] = {}
        self._exits_lock = threading.Lock()
        threading.Thread(target=self._read, name="th2etl-forker", daemon=True).start()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def fork(self, conn_fd: int) -> ForkedChild:
        """A new child reading its spec from ``conn_fd`` (sent, not closed, here)."""
        with self._lock:
            socket.send_fds(self._sock, [b"fork"], [conn_fd])
            pid = self._pids.get(timeout=30)
        if pid is None:
            raise OSError("the run forker of this Dask worker has ended")
        return ForkedChild(pid, self._exit_of(pid), self._forget)

    def _exit_of(self, pid: int) -> Future[int]:
        with self._exits_lock:
            return self._exits.setdefault(pid, Future())

    def _forget(self, pid: int) -> None:
        with self._exits_lock:
            self._exits.pop(pid, None)

    def _read(self) -> None:
        while True:
            try:
                message = self._sock.recv(64)
            except OSError:
                message = b""
            if not message:
                self._pids.put(None)
                return
            words = message.split()
            if words[0] == b"pid":
                self._pids.put(int(words[1]))
            else:
                self._exit_of(int(words[1])).set_result(int(words[2]))


_forker_lock = threading.Lock()
_forker: Forker | None = None


def forker() -> Forker:
    """This process's forker, started on first use and again if it died."""
    global _forker
    with _forker_lock:
        if _forker is None or not _forker.alive:
            _forker = Forker()
        return _forker


def _serve(sock: socket.socket) -> None:
    """The forker's loop: fork on request, report every child's end."""
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the worker's to handle
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            if key.fileobj is sock:
                message, fds, _, _ = socket.recv_fds(sock, 64, 1)
                if not message:
                    return  # the worker is gone
                pid = os.fork()
                if pid == 0:
                    selector.close()
                    sock.close()
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    for fd in (wake_r, wake_w):
                        os.close(fd)
                    try:
                        _child(fds[0])
                    finally:
                        os._exit(1)
                for fd in fds:
                    os.close(fd)
                sock.send(f"pid {pid}".encode())
            else:
                with contextlib.suppress(BlockingIOError):
                    os.read(wake_r, 512)
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            sock.send(f"exit {pid} {os.waitstatus_to_exitcode(status)}".encode())


def _child(fd: int) -> None:
    from multiprocessing.connection import Connection

    from th2etl.executors import _worker

    conn = Connection(fd)
    try:
        spec = conn.recv()
    except (EOFError, OSError):
        os._exit(1)
    _worker.main(conn, spec)  # exits the process


def main() -> None:
    """``python -m th2etl.executors._forker FD``."""
    import importlib

    sock = socket.socket(fileno=int(sys.argv[1]))
    for module in PRELOAD:
        importlib.import_module(module)
    # Out of the collector's sight: a child's collections do not touch (and copy) the pages
    # of what it inherited.
    gc.collect()
    gc.freeze()
    _serve(sock)


if __name__ == "__main__":
    main()
