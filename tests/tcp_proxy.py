"""A TCP proxy the test starts and stops, so "the database goes away" without anyone touching
the shared PostgreSQL server: whoever connects through the proxy loses its connections."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable
from functools import partial


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``target``.

    ``start()`` listens (on a free port the first time, on the same port after a ``stop()``);
    ``stop()`` drops every connection and refuses new ones. As a context manager it is started
    on entry and stopped on exit. ``upstream_ports`` finds exactly the PostgreSQL backends that
    serve this proxy's clients, for ``pg_terminate_backend``; a subclass that overrides
    ``relay()`` can hold back or drop what passes.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._sockets: list[socket.socket] = []
        self._pumps: list[threading.Thread] = []
        self._upstream_ports: set[int] = set()
        self._lock = threading.Lock()

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._accept_thread = threading.Thread(
            target=self._accept, args=(listener,), name="test-tcp-proxy", daemon=True
        )
        self._accept_thread.start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stop() closed the listener
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            # Without it, Nagle's algorithm holds each small query back for ~40 ms.
            for sock in (client, upstream):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets += [client, upstream]
                self._upstream_ports.add(upstream.getsockname()[1])
                for loop in self.relay(client, upstream):
                    pump = threading.Thread(target=loop, daemon=True)
                    pump.start()
                    self._pumps.append(pump)

    def relay(self, client: socket.socket, upstream: socket.socket) -> list[Callable[[], None]]:
        """The loops that carry one connection's bytes, each run in a thread of its own: by
        default, every byte both ways. A subclass overrides this to tamper with the traffic."""
        return [partial(self.pump, client, upstream), partial(self.pump, upstream, client)]

    @staticmethod
    def pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            # The other direction's recv() then ends too; stop() closes both sockets.
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_RDWR)

    @property
    def upstream_ports(self) -> set[int]:
        """Local ports of the proxy's connections to the target: in PostgreSQL, the
        ``client_port`` of exactly the backends serving this proxy's clients."""
        with self._lock:
            return set(self._upstream_ports)

    def stop(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        # Once the accept loop has ended no connection can be added behind our back.
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=10)
            self._accept_thread = None
        with self._lock:
            sockets, self._sockets = self._sockets, []
            pumps, self._pumps = self._pumps, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for pump in pumps:
            pump.join(timeout=10)

    def __enter__(self) -> TcpProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
