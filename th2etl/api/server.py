"""Serving the API with uvicorn, and the rule about where it may listen without a key."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from collections.abc import Callable, Mapping
from typing import Any

from th2etl._extras import require_extra
from th2etl.exceptions import ConfigurationError

__all__ = ["api_url", "bind_socket", "check_bind", "is_loopback", "serve", "service_api_key"]

logger = logging.getLogger("th2etl.api")
_warned_old_name = False


def service_api_key(environ: Mapping[str, str] | None = None) -> str | None:
    """The service's API key: ``TH2ETL_API_KEY``, else ``API_KEY`` (th2etl 0.0.x's name, with a
    warning logged once per process), else None (no key)."""
    global _warned_old_name
    env = os.environ if environ is None else environ
    key = env.get("TH2ETL_API_KEY", "").strip()
    if key:
        return key
    old = env.get("API_KEY", "").strip()
    if not old:
        return None
    if not _warned_old_name:
        _warned_old_name = True
        logger.warning(
            "the API key is read from API_KEY, th2etl 0.0.x's name for it; rename it to "
            "TH2ETL_API_KEY (API_KEY is read only while TH2ETL_API_KEY is unset)"
        )
    return old


def api_url(host: str, port: int) -> str:
    """The URL of the API on ``host``:``port``; an IPv6 address is bracketed (``[::1]``)."""
    host = host.strip()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_key: str | None, insecure_no_auth: bool = False) -> None:
    """Refuse to listen on a non-loopback ``host`` without an API key (unless told to)."""
    if api_key or is_loopback(host):
        return
    if insecure_no_auth:
        logger.warning(
            "the API listens on %s WITHOUT an API key (--insecure-no-auth): anyone who can reach "
            "this address can change and run pipelines; set TH2ETL_API_KEY to require a key",
            host,
        )
        return
    raise ConfigurationError(
        f"refusing to serve the API on {host!r} without an API key: anyone reaching that "
        "address could change and run pipelines. Set TH2ETL_API_KEY (e.g. "
        "TH2ETL_API_KEY=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')), "
        "listen on 127.0.0.1, or pass --insecure-no-auth to accept the risk"
    )


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, or a :class:`ConfigurationError` saying why not."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigurationError(
            f"--host {host!r} is not an address of this machine ({exc.strerror}); use e.g. "
            "127.0.0.1 or 0.0.0.0"
        ) from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigurationError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port "
            "(or stop what uses it)"
        ) from exc
    sock.set_inheritable(True)
    return sock


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    insecure_no_auth: bool = False,
    on_ready: Callable[[], None] | None = None,
    **app_options: Any,
) -> None:
    """Run the API (and the scheduler, unless ``start_scheduler=False``) until SIGINT/SIGTERM,
    its runs in worker processes unless ``TH2ETL_EXECUTOR`` (or ``executor=``) says otherwise.

    ``on_ready`` is called once the server accepts requests; ``app_options`` go to
    :func:`~th2etl.api.app.create_app`.
    """
    uvicorn = require_extra("uvicorn", "api", "serving the th2etl REST API")
    from th2etl.api.app import create_app
    from th2etl.api.security import allowed_hosts_from_env

    check_bind(host, app_options.get("api_key") or service_api_key(), insecure_no_auth)
    sock = bind_socket(host, port)
    try:
        # A service executes its runs in worker processes unless TH2ETL_EXECUTOR says otherwise.
        app_options.setdefault("executor", os.environ.get("TH2ETL_EXECUTOR") or "process")
        app = create_app(bound_host=host, **app_options)
        # log_config=None: keep th2etl's logging (configure_logging); uvicorn's loggers go to
        # the console and to api.log under LOG_DIR.
        config = uvicorn.Config(app, log_config=None, lifespan="on", timeout_graceful_shutdown=30)
        server = _server_class(uvicorn, on_ready)(config)
        url = api_url(host, port)
        logger.info("serving the th2etl API on %s (dashboard at %s/ui, docs at /docs)", url, url)
        if not is_loopback(host) and not allowed_hosts_from_env():
            logger.info(
                "requests must name this service by an IP address or %r; to use another DNS "
                "name (or a reverse proxy's), list it in TH2ETL_ALLOWED_HOSTS",
                socket.gethostname(),
            )
        server.run(sockets=[sock])
    finally:
        sock.close()


def _server_class(uvicorn: Any, on_ready: Callable[[], None] | None) -> Any:
    class Server(uvicorn.Server):  # type: ignore[misc]
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if on_ready is not None and not self.should_exit:
                on_ready()

    return Server
