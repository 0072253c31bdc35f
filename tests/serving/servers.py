"""The REST API under uvicorn in a thread of the test process, configured as `ferlab api` configures it."""

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from ferlab.serving.server import server_config


@contextmanager
def running(app) -> Iterator[str]:
    """`app` (from `create_app`) served on a free loopback port until the block ends; its URL."""
    server = uvicorn.Server(server_config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def connect(url: str, data: bytes, timeout: float = 5) -> socket.socket:
    """A raw connection to `url` that has sent `data`: for requests httpx refuses to send (stalled, cut short)."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    sock.sendall(data)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (socket.timeout where it does not)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)
