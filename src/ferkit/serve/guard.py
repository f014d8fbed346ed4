"""Which web pages may use the API: `OriginGuard`, an ASGI middleware.

A browser lets any page it shows POST a multipart form or open a websocket to any address,
loopback included, without asking the server first (no CORS preflight): a site the user
visits could make their `ferkit serve` decode images for it, or connect to the live
stream. Browsers name the page's origin in the `Origin` header, so state-changing requests
(POST, PUT, PATCH, DELETE) and websocket handshakes are refused (403, JSON) when their
Origin is neither the server's own (its host:port equals the Host header) nor allowed with
`--cors`. Requests without an Origin (curl, scripts, the page's own GETs) pass: no other
site's page made them. A server listening on loopback also answers only Host names that
are loopback, so a DNS-rebinding page (evil.example made to resolve to 127.0.0.1, which
would look same-origin) is refused as well.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from urllib.parse import urlsplit

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket

_UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


class OriginGuard:
    def __init__(self, app, allowed_origins: Sequence[str] = ()) -> None:
        self.app = app
        self.allowed = {origin.rstrip("/").lower() for origin in allowed_origins}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] in ("http", "websocket"):
            problem = self.problem(scope)
            if problem:
                return await _deny(scope, receive, send, problem)
        await self.app(scope, receive, send)

    def problem(self, scope) -> str | None:
        """Why this request is refused, or None."""
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "").lower()
        server = scope.get("server") or ("", 0)
        if is_loopback(server[0]) and not is_loopback(_hostname(host)):
            return f"host {host!r} is not this server's loopback address (DNS rebinding?)"
        origin = headers.get("origin")
        if origin is None or (scope["type"] == "http" and scope["method"] not in _UNSAFE):
            return None
        origin = origin.rstrip("/").lower()
        if origin in self.allowed or urlsplit(origin).netloc == host:
            return None
        return (
            f"origin {origin!r} may not use this API; start the server with "
            f"--cors {origin} to allow it"
        )


async def _deny(scope, receive, send, detail: str) -> None:
    response = JSONResponse({"detail": detail}, status_code=403)
    if scope["type"] == "http":
        return await response(scope, receive, send)
    websocket = WebSocket(scope, receive, send)
    if "websocket.http.response" in scope.get("extensions", {}):
        return await websocket.send_denial_response(response)
    await websocket.close(code=1008, reason=detail[:120])  # policy violation


def _hostname(host: str) -> str:
    """The name part of a Host header: 'localhost:8000' → 'localhost', '[::1]:80' → '::1'."""
    return urlsplit(f"//{host}").hostname or ""


def is_loopback(host: str) -> bool:
    """Whether a host name or address can only mean this machine."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
