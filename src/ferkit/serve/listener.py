"""The listening socket of `ferkit serve`: connections never exhaust the open-file limit.

Every TCP connection holds a file descriptor from the moment it is accepted, and the
process's RLIMIT_NOFILE (`ulimit -n`: often 1024, 256 in the issue's slowloris run) caps
them together with the model files, logs and uploads spooled to disk. When `accept()`
fails with EMFILE, asyncio logs a traceback and stops accepting anyone for a second, so
even `/api/health` goes unanswered. asyncio accepts up to `ACCEPT_BURST` connections per
wake-up and only a loop iteration or two later hands them to the protocol, whose
connection cap (`ferkit.serve.protocol`) therefore cannot by itself keep the count down.
Two things do:

- `descriptor_budget()` at start-up raises the soft limit towards the hard one as far as
  the configured cap needs, counts the descriptors already open (model, logs, event loop),
  keeps `RESERVE` for files the server opens later, and derives a `ceiling` of connections
  and the protocol's cap `max_connections`, where it starts closing stalled clients to
  make room, `4 × ACCEPT_BURST` below it (the connections of the last few wake-ups that
  the protocol has not seen yet, or has closed but asyncio not yet released).
- `GuardedListener`, the listening socket handed to uvicorn: asyncio accepts through its
  `accept()`, which counts the accepted connections whose descriptor is still open and, at
  the ceiling, sheds a new one at the door (a JSON 503, then close) instead of accepting
  past the limit.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import weakref
from dataclasses import dataclass

from ferkit.errors import FerkitError

log = logging.getLogger(__name__)

ACCEPT_BURST = 16  # connections asyncio accepts per wake-up (uvicorn's `backlog`)
LISTEN_QUEUE = 1024  # connections the kernel may hold before accept(); they cost no descriptor
RESERVE = 32  # descriptors kept for uploads spooled to disk, static and model files, logs
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s"
)


@dataclass(frozen=True)
class DescriptorBudget:
    """limit: the soft RLIMIT_NOFILE in force (None where there is none); in_use:
    descriptors open at start-up; ceiling: most connections open at once (counted at
    accept); max_connections: the protocol's cap, below the ceiling by room for bursts."""

    limit: int | None
    in_use: int
    ceiling: int
    max_connections: int


def open_descriptors() -> int | None:
    """How many descriptors this process holds now (None where the OS does not say)."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(folder)) - 1  # listdir's own descriptor
        except OSError:
            continue
    return None


def descriptor_budget(wanted: int) -> DescriptorBudget:
    """The budget for a server configured for `wanted` connections (see the module
    docstring); raises the soft open-file limit if the hard one allows and it is needed."""
    in_use = open_descriptors()
    in_use = 64 if in_use is None else in_use
    margin = 4 * ACCEPT_BURST  # accepted, not yet seen by the protocol, or closing
    try:
        import resource
    except ImportError:  # Windows: no such limit
        return DescriptorBudget(None, in_use, wanted + margin, wanted)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = in_use + RESERVE + margin + wanted
    infinite = resource.RLIM_INFINITY
    if soft != infinite and soft < needed and (hard == infinite or soft < hard):
        raised = needed if hard == infinite else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):
            pass
    if soft == infinite:
        return DescriptorBudget(None, in_use, wanted + margin, wanted)
    ceiling = soft - in_use - RESERVE
    if ceiling < 2:
        raise FerkitError(
            f"the open-file limit ({soft}, ulimit -n) leaves no room for connections: "
            f"{in_use} descriptors are in use and {RESERVE} are kept for files; raise it"
        )
    cap = min(wanted, ceiling - min(margin, ceiling // 2))
    if cap < wanted:
        log.warning(
            "at most %d connections: the open-file limit is %d (ulimit -n) and %d are in use",
            cap, soft, in_use,
        )  # fmt: skip
    return DescriptorBudget(soft, in_use, ceiling, cap)


class GuardedListener(socket.socket):
    """A listening socket whose `accept()` never takes the connections past `ceiling`:
    beyond it, new connections are answered 503 and closed at once (see the module
    docstring). Make one with `listen_on`."""

    ceiling: int = 2**31

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._accepted: weakref.WeakSet[socket.socket] = weakref.WeakSet()
        self.shed = 0
        self._warned = -float("inf")

    def listen(self, backlog: int = LISTEN_QUEUE) -> None:
        super().listen(max(backlog, LISTEN_QUEUE))

    def open_connections(self) -> int:
        """Connections accepted here whose descriptor is still open."""
        return sum(1 for connection in list(self._accepted) if connection.fileno() != -1)

    def accept(self) -> tuple[socket.socket, object]:
        for _ in range(ACCEPT_BURST):  # until one fits; BlockingIOError: none is waiting
            connection, address = super().accept()
            if self.open_connections() < self.ceiling:
                self._accepted.add(connection)
                return connection, address
            self._shed(connection)
        raise BlockingIOError  # the rest at the next wake-up: asyncio ends this burst

    def _shed(self, connection: socket.socket) -> None:
        """Answer 503 as far as the socket takes it without waiting, and close."""
        self.shed += 1
        body = b'{"detail": "server busy: %d connections open"}' % self.ceiling
        try:
            connection.setblocking(False)
            connection.recv(65536)  # what the client sent already: closing then sends FIN, not RST
        except OSError:
            pass
        try:
            connection.send(_BUSY % (len(body), body))
        except OSError:
            pass
        connection.close()
        now = time.monotonic()
        if now - self._warned > 60:
            self._warned = now
            log.warning("%d connections open: new ones are refused (503) at the door", self.ceiling)


def listen_on(host: str, port: int, ceiling: int) -> GuardedListener:
    """A `GuardedListener` bound to host:port (IPv4 or IPv6) and listening."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = GuardedListener(family, socket.SOCK_STREAM)
    listener.ceiling = ceiling
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        raise FerkitError(f"cannot listen on {host}:{port}: {error.strerror}") from None
    listener.listen(LISTEN_QUEUE)  # connections queue from now on, before the loop runs
    return listener
