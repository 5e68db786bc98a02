"""A real uvicorn server for tests: an ASGI app on a free port of 127.0.0.1, in a thread, stopped afterwards."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn


@contextlib.contextmanager
def serving(app: Any, *, wait: float = 30, graceful: float | None = None) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 and yield its URL; `wait` bounds the start and the stop (seconds), `graceful` is
    uvicorn's `timeout_graceful_shutdown`. Fails the test when the server does not start or does not stop."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    shutdown = {} if graceful is None else {"timeout_graceful_shutdown": graceful}
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", **shutdown))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + wait
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=wait)
        sock.close()
    assert not thread.is_alive(), "the server did not stop"
