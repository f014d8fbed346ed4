"""uvicorn's h11 connection handler, with the request timeouts and connection cap it lacks.

uvicorn closes idle keep-alive connections, but gives a client all the time it wants to
send a request's headers and body: 300 clients each sending a header byte now and then
(slowloris) hold 300 sockets and, under a 256-descriptor limit, lock every other client
out. `guarded_protocol(limits)` makes a protocol class that gives each request
`Limits.header_timeout` seconds for its headers and then `Limits.body_timeout` for its
body (408 with a JSON reason, then the connection is closed), and keeps at most
`Limits.max_connections` open: past it, a new connection closes the one that has waited
longest in the middle of its request headers (a stalled client: a real one sends them at
once), else the longest-idle one that has sent nothing for a while (an idle keep-alive),
or is answered 503 when there is neither. Stalled clients go earlier: past three quarters
of the cap, each new connection closes one, so slowloris cannot fill the last quarter and
bursts of new clients still find room. (`ferkit.serve.listener` keeps the cap and the
connections asyncio accepts before the protocol sees them under the open-file limit.)
"""

from __future__ import annotations

import json

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from ferkit.serve.limits import Limits

_WAITING = (h11.IDLE, h11.SEND_BODY)  # the client still owes part of its request
_STALLED_S = 0.25  # partial headers this old: a stalled client, not a slow event loop
_IDLE_S = 2.0  # no byte for this long: an idle connection (it may not have been read yet)
_HIGH_WATER = 0.75  # past this share of the cap, each new connection closes a stalled one


def guarded_protocol(limits: Limits) -> type[H11Protocol]:
    """An H11Protocol subclass enforcing `limits` (pass it to uvicorn as `http=`)."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"limits": limits})


class GuardedH11Protocol(H11Protocol):
    limits: Limits = Limits()

    def connection_made(self, transport) -> None:  # noqa: ANN001 (asyncio's signature)
        super().connection_made(transport)
        self._phase, self._deadline, self._since, self._partial = "", None, self.loop.time(), False
        self._arm("headers", self.limits.header_timeout)
        cap = self.limits.max_connections
        if len(self.connections) > cap:
            if not self._make_room(idle_too=True):
                self._refuse(503, f"server busy: {cap} connections open")
        elif len(self.connections) > cap * _HIGH_WATER:
            self._make_room(idle_too=False)  # a stalled one goes before the cap is reached

    def data_received(self, data: bytes) -> None:
        self._partial = True
        super().data_received(data)
        if self._phase == "headers" and self.conn.their_state is h11.SEND_BODY:
            self._arm("body", self.limits.body_timeout)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm("headers", self.limits.header_timeout)  # the next request's

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(exc)

    def _arm(self, phase: str, seconds: float) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._phase, self._since, self._partial = phase, self.loop.time(), False
        self._deadline = self.loop.call_later(seconds, self._expired, seconds)

    def _expired(self, seconds: float) -> None:
        self._deadline = None
        if self._waiting():
            self._refuse(408, f"request {self._phase} not received within {seconds:g} s")
        elif self._open() and self.conn.their_state is h11.SEND_BODY:
            self.transport.close()  # answered early (a 413): the rest of its body never came

    def _open(self) -> bool:
        """Whether this connection is still open and HTTP (not upgraded to a websocket)."""
        return not self.transport.is_closing() and self.transport.get_protocol() is self

    def _waiting(self) -> bool:
        """Whether this connection is waiting for the client's request, not yet answered."""
        return (
            self._open() and self.conn.their_state in _WAITING
            and self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE)
        )  # fmt: skip

    def _make_room(self, idle_too: bool) -> bool:
        """Close a stalled connection, else (`idle_too`) an idle one (see the module
        docstring); False if there is none."""
        now = self.loop.time()
        waiting = [
            other for other in self.connections
            if isinstance(other, GuardedH11Protocol) and other is not self
            and other._phase == "headers" and other._waiting()
        ]  # fmt: skip
        stalled = [c for c in waiting if c._partial and now - c._since > _STALLED_S]
        idle = [c for c in waiting if idle_too and not c._partial and now - c._since > _IDLE_S]
        if stalled:
            min(stalled, key=lambda c: c._since)._refuse(503, "closed to make room (stalled)")
        elif idle:
            min(idle, key=lambda c: c._since).transport.close()  # no request to answer
        return bool(stalled or idle)

    def _refuse(self, status: int, detail: str) -> None:
        """Answer `status` with a JSON reason outside h11's bookkeeping, and close."""
        body = json.dumps({"detail": detail}).encode()
        reason = {408: b"Request Timeout", 503: b"Service Unavailable"}[status]
        head = (
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n" % (status, reason, len(body))
        )
        self.transport.write(head + body)
        self.transport.close()
