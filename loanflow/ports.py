"""Free loopback ports for the servers a test or a benchmark starts (dev server, SMTP)."""

from __future__ import annotations

import socket
from contextlib import ExitStack


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports nothing listens on right now. All are held open until
    all are chosen: asked one at a time, the kernel may hand out a port it just released (a
    bench's SMTP sink once took the dev server's port this way)."""
    with ExitStack() as held:
        ports = []
        for _ in range(count):
            sock = held.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def free_port() -> int:
    return free_ports(1)[0]
