"""A free loopback port for the servers the serving tests start."""

import socket


def free_port() -> int:
    """A port the system has just handed out on 127.0.0.1 (free unless another process takes it first)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
