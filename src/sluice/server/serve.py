"""``sluice serve``: bind the port, start the project's services and run uvicorn until SIGINT or SIGTERM.

On a signal the server ends every event stream at once (clients reconnect with ``Last-Event-ID``), stops
accepting requests, cancels the active run, stops its workers and exits cleanly (status 0).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn

from sluice.errors import SluiceError
from sluice.project.model import Project
from sluice.server.app import create_app
from sluice.server.serve_settings import CONTROL_TOKEN_ENV
from sluice.server.services import ServerSettings, Services

log = logging.getLogger("sluice.server")
GRACEFUL_SHUTDOWN_S = 10


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free port); a clear error when it is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SluiceError(f"cannot listen on {host}:{port}: {exc.strerror}; choose another port with --port") from exc
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class SluiceServer(uvicorn.Server):
    """uvicorn's server, ending the event streams first when asked to stop, and exiting cleanly on signals."""

    def __init__(self, config: uvicorn.Config, services: Services) -> None:
        super().__init__(config)
        self.services = services

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # uvicorn re-raises the signal after shutting down, which would end the process with an error status.
        if self.should_exit:
            self.force_exit = True
        self.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.services.close_streams()
        await super().shutdown(sockets)


def server_config(app: object, log_level: str = "warning") -> uvicorn.Config:
    """uvicorn's settings for Sluice: its logs go through Sluice's handlers; requests are logged by the app;
    HTTP/1.1 is httptools' with each response in one write (:mod:`sluice.server.corked`) when httptools is
    installed, uvicorn's choice otherwise."""
    try:
        from sluice.server.corked import CorkedHttpToolsProtocol

        http: Any = CorkedHttpToolsProtocol
    except ImportError:  # httptools is optional in uvicorn; h11 then
        http = "auto"
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        http=http,
        log_config=None,
        access_log=False,
        log_level=log_level.lower(),
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        lifespan="on",
    )


def route_uvicorn_logs() -> None:
    """Send uvicorn's own log records through the handlers ``setup_logging`` gave Sluice."""
    sluice_logger = logging.getLogger("sluice")
    uvicorn_logger = logging.getLogger("uvicorn")
    uvicorn_logger.handlers = list(sluice_logger.handlers)
    uvicorn_logger.setLevel(sluice_logger.level)
    uvicorn_logger.propagate = False
    for name in ("uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True


def warn_open_control(project: Project, host: str, token: str | None = None) -> None:
    """Log a warning when the server listens beyond loopback without a control token: anyone who reaches the
    port may start and cancel runs (``POST /orchestrate``, ``POST /runs/{id}/cancel``; docs/api.md); the
    other control endpoints only read."""
    if token is not None or host == "localhost":
        return
    with contextlib.suppress(ValueError):  # a host name: warn
        if ipaddress.ip_address(host).is_loopback:
            return
    log.warning(
        "sluice serve listens on %s without a control token: anyone who reaches the port can start and cancel runs "
        "(POST /orchestrate, /runs/{id}/cancel); set %s (or serve: control_token_env or control_token_file in sluice.yaml) "
        "to require 'Authorization: Bearer <token>' (docs/api.md)%s",
        host,
        CONTROL_TOKEN_ENV,
        "; the data API checks its own credentials" if project.api is not None else "",
    )


def serve_project(
    project: Project,
    settings: ServerSettings,
    host: str = "127.0.0.1",
    port: int = 8000,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve ``project`` until interrupted. Raises SluiceError for user errors (port taken, bad backend URL)."""
    sock = bind(host, port)
    services = Services(project, settings)
    try:
        services.start()
    except BaseException:
        sock.close()
        raise
    route_uvicorn_logs()
    warn_open_control(project, host, settings.control_token)
    server = SluiceServer(server_config(create_app(services), logging.getLevelName(logging.getLogger("sluice").level)), services)
    if on_ready is not None:
        on_ready(url_of(sock))
    try:
        server.run(sockets=[sock])
    finally:
        services.stop()
        sock.close()
