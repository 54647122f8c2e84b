"""Loopback ports: free ones for the servers a test or a benchmark starts (dev server, SMTP),
and whether one `loanflow up` needs is taken, and by what."""

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


def port_taken(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could not listen on `port` now. Bound the way servers bind (address
    reuse on), so a port left in TIME_WAIT by a stopped server counts as free."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
        return False


def speaks_smtp(port: int, host: str = "127.0.0.1", timeout: float = 2) -> bool:
    """Whether the program on `port` greets like an SMTP server (`220 ...`)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            return sock.recv(4).startswith(b"220")
    except OSError:
        return False
