"""Composition root: settings -> store -> service -> UI -> serve.

Run `python app.py`; it honours GRADIO_SERVER_NAME and GRADIO_SERVER_PORT.
One process owns DATA_DIR (annotator/datadir_lock.py), so it runs one uvicorn
worker. Exit code 2: the app could not start, and the one line it printed
names the setting to change.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import os
import socket
import sys
from typing import NoReturn

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

# Requests still being handled at a stop get this long to finish; open streams do not wait for it.
GRACEFUL_S = 10
# Short requests in flight when a stop begins get this long before the open streams are closed.
STREAM_GRACE_S = 0.3


def listen_socket(host: str, port: int) -> socket.socket:
    """Bind host:port before anything else starts; raise SystemExit(2) with a message naming the setting."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn: "localhost" is 127.0.0.1
        family, kind, proto, _, address = socket.getaddrinfo(host, port, family=family, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        _refuse(f"GRADIO_SERVER_NAME={host!r} is not an address this machine can listen on ({exc.strerror or exc}); "
                f"set it to 127.0.0.1 (this machine only) or 0.0.0.0 (every interface).")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            _refuse(f"GRADIO_SERVER_PORT={port}: port {port} on {host} is already in use by another program. Stop "
                    f"it, or set GRADIO_SERVER_PORT to a free port (for example GRADIO_SERVER_PORT={port + 1}).")
        _refuse(f"cannot listen on {host}:{port} ({exc.strerror or exc}); check GRADIO_SERVER_NAME and "
                f"GRADIO_SERVER_PORT (a port below 1024 needs privileges: use 7860).")
    sock.set_inheritable(True)
    return sock


def _refuse(message: str) -> NoReturn:
    print(f"annotator cannot start: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def _server_class():
    import uvicorn

    class QuickStopServer(uvicorn.Server):
        """uvicorn that prints the URL once it listens, and stops at once with tabs open.

        Every open tab holds Gradio's heartbeat stream (and the queue's) open.
        uvicorn's graceful shutdown waits for every response to finish, so with
        one tab open it waited the whole timeout and then cancelled the streams
        with a `CancelledError` traceback. Here, once the requests in flight
        have had STREAM_GRACE_S, the connections whose response has started but
        not ended (the streams) are closed: the app sees the client go, as when a
        tab closes. Requests still being handled keep GRACEFUL_S.
        """

        def __init__(self, config: uvicorn.Config, banner: str) -> None:
            super().__init__(config)
            self.banner = banner

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started:
                print(self.banner, flush=True)

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            for server in self.servers:
                server.close()
            for connection in list(self.server_state.connections):
                connection.shutdown()
            await asyncio.sleep(STREAM_GRACE_S)
            for connection in list(self.server_state.connections):
                cycle = getattr(connection, "cycle", None)
                if cycle is not None and cycle.response_started and not cycle.response_complete:
                    connection.transport.close()
            await super().shutdown(sockets)

    return QuickStopServer


def main() -> int:
    from annotator.config import ConfigError, log_level

    try:
        level = log_level()
    except ConfigError as exc:
        _refuse(str(exc))
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # the database, its WAL, snapshots, the lock, recovery and download files: readable by this user only
    os.umask(0o077)
    host = os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0" if os.environ.get("SPACE_ID") else "127.0.0.1")
    raw_port = os.environ.get("GRADIO_SERVER_PORT", "7860").strip()
    if not raw_port.isascii() or not raw_port.isdigit() or not 0 < int(raw_port) < 65536:
        _refuse(f"GRADIO_SERVER_PORT={raw_port!r} is not a port number; set it to a number from 1 to 65535 "
                f"(7860 by default).")
    port = int(raw_port)
    sock = listen_socket(host, port)  # before the work of starting: a busy port fails at once

    from annotator.datadir_lock import DataDirBusyError
    from annotator.export.restore import RestoreError
    from annotator.model import StoreError
    from annotator.runtime import Runtime
    from annotator.snapshot import SnapshotError

    try:
        runtime = Runtime.open()
    except (ConfigError, StoreError, RestoreError, SnapshotError, DataDirBusyError) as exc:
        sock.close()
        print(f"annotator cannot start: {exc}", file=sys.stderr)
        return 2

    import uvicorn

    from annotator.ui.server import create_app

    app = create_app(runtime)
    # Everything built so far lives as long as the process: keep it out of the collector's scans, and
    # collect less often, so a crowd's clicks do not pay for long full collections.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    # httptools and uvloop (requirements.txt), named so a missing one fails here instead of costing CPU
    config = uvicorn.Config(app, loop="uvloop", http="httptools", log_level="warning",
                            timeout_graceful_shutdown=GRACEFUL_S)
    banner = f"annotator: {runtime.task.title!r} on http://{host}:{port} (DATA_DIR={runtime.settings.data_dir})"
    try:
        _server_class()(config, banner).run(sockets=[sock])
    finally:
        runtime.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
