"""`WS /api/stream`: live recognition of a client's camera over one websocket.

Protocol (every server message is JSON with a "type"):

    server → {"type": "hello", "model": {...}, "limits": {...}, "smoothing": {...}}
    client → binary message: one encoded frame (JPEG, PNG or WebP)
    server → {"type": "result", "seq", "index", "time_s", "width", "height", "faces",
              "latency_ms", "dropped"}               one per processed frame
           | {"type": "dropped", "seq", "reason": "rate" | "queue", "detail"}
           | {"type": "error", "seq", "status", "detail"}   (bad frame; the stream goes on)
    client → text message: {"smoothing": "ema" | "mean" | "none", "alpha"?, "window"?}
    server → {"type": "config", "smoothing": {...}}     (or an "error")

`seq` numbers the client's binary messages from 1, so every frame gets exactly one answer
and a client can keep one frame in flight. Each connection has its own tracker (stable face
ids) and smoother, so two viewers never mix faces. A frame rate above `Limits.max_fps`
(token bucket, bursts of two) is answered "dropped" at once, and at most
`Limits.queue_size` frames wait: when a new one arrives the oldest waiting frame is dropped,
so answers describe the present instead of falling further and further behind.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from contextlib import suppress

from starlette.websockets import WebSocket, WebSocketDisconnect

from ferkit.errors import FerkitError
from ferkit.infer.smoothing import SmoothingConfig, TrackSmoother
from ferkit.infer.tracking import IoUTracker, TrackingConfig
from ferkit.serve.engine import Engine
from ferkit.serve.limits import Rejected

log = logging.getLogger(__name__)

BUSY = 1013  # websocket close code "try again later"
_BURST = 2.0  # frames a client may send back to back before the rate cap applies
_SMOOTHING_KEYS = {"smoothing", "alpha", "window"}


async def serve_stream(websocket: WebSocket, engine: Engine) -> None:
    """Run one connection to its end; refuse it (1013) when `max_streams` are open."""
    await websocket.accept()
    if engine.streams >= engine.limits.max_streams:
        reason = f"server busy: {engine.streams} streams open (limit {engine.limits.max_streams})"
        await websocket.close(code=BUSY, reason=reason)
        return
    engine.streams += 1
    try:
        await StreamSession(websocket, engine).run()
    finally:
        engine.streams -= 1


class StreamSession:
    """The state of one connection: tracker, smoother, frame queue and counters."""

    def __init__(self, websocket: WebSocket, engine: Engine) -> None:
        recognizer = engine.recognizer
        self.ws, self.engine, self.limits = websocket, engine, engine.limits
        self.tracker = IoUTracker(recognizer.tracking or TrackingConfig())
        self.smoother = TrackSmoother(recognizer.smoothing)
        self.queue: deque[tuple[int, float, bytes]] = deque()
        self.wakeup = asyncio.Event()
        self.seq = self.processed = self.dropped = 0
        self.start = self.last_arrival = time.monotonic()
        self.tokens = _BURST
        self._send_lock = asyncio.Lock()

    async def run(self) -> None:
        worker = asyncio.create_task(self._work())
        try:
            await self._send(
                type="hello", model=self.engine.describe(), limits=self.limits.to_dict(),
                smoothing=vars(self.smoother.config),
            )  # fmt: skip
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("bytes") is not None:
                    await self._offer(message["bytes"])
                elif message.get("text") is not None:
                    await self._configure(message["text"])
        except WebSocketDisconnect:
            return
        finally:
            worker.cancel()
            with suppress(asyncio.CancelledError):
                await worker

    async def _offer(self, data: bytes) -> None:
        """Admit a frame to the queue, or answer at once why it was dropped."""
        self.seq += 1
        now = time.monotonic()
        if len(data) > self.limits.max_frame_bytes:
            await self._send(
                type="error", seq=self.seq, status=413,
                detail=f"frame {self.seq} is {len(data)} bytes, more than the "
                f"{self.limits.max_frame_bytes}-byte limit",
            )  # fmt: skip
            return
        elapsed, self.last_arrival = now - self.last_arrival, now
        self.tokens = min(_BURST, self.tokens + elapsed * self.limits.max_fps)
        if self.tokens < 1.0:
            await self._drop(self.seq, "rate", f"more than {self.limits.max_fps:g} frames/s")
            return
        self.tokens -= 1.0
        if len(self.queue) >= self.limits.queue_size:
            old_seq, _, _ = self.queue.popleft()
            await self._drop(old_seq, "queue", "a newer frame arrived before it was processed")
        self.queue.append((self.seq, now - self.start, data))
        self.wakeup.set()

    async def _work(self) -> None:
        """Process waiting frames one at a time, newest-first survivors in arrival order."""
        while True:
            while not self.queue:
                self.wakeup.clear()
                await self.wakeup.wait()
            seq, time_s, data = self.queue.popleft()
            began = time.perf_counter()
            try:
                (height, width), result = await self.engine.track(
                    data, f"frame {seq}", self.processed, time_s, self.tracker, self.smoother
                )
            except Rejected as error:
                await self._send(type="error", seq=seq, status=error.status, detail=error.message)
                continue
            except Exception as error:  # keep the stream alive; the log has the traceback
                log.exception("frame %d of a stream failed", seq)
                detail = f"frame {seq}: internal error ({type(error).__name__})"
                await self._send(type="error", seq=seq, status=500, detail=detail)
                continue
            self.processed += 1
            await self._send(
                type="result", seq=seq, index=result.index, time_s=round(time_s, 4),
                width=width, height=height, faces=[f.to_dict() for f in result.faces],
                latency_ms=round(1000 * (time.perf_counter() - began), 2), dropped=self.dropped,
            )  # fmt: skip

    async def _configure(self, text: str) -> None:
        """Apply a smoothing change; the tracks' smoothing history restarts."""
        try:
            request = json.loads(text)
            if not isinstance(request, dict):
                raise ValueError("expected a JSON object")
            unknown = set(request) - _SMOOTHING_KEYS
            if unknown:
                raise ValueError(f"unknown keys {sorted(unknown)}; use {sorted(_SMOOTHING_KEYS)}")
            current = vars(self.smoother.config)
            config = SmoothingConfig(
                method=request.get("smoothing", current["method"]),
                window=int(request.get("window", current["window"])),
                alpha=float(request.get("alpha", current["alpha"])),
            )
        except (ValueError, TypeError, OverflowError, FerkitError) as error:
            await self._send(type="error", seq=None, status=422, detail=f"bad config: {error}")
            return
        self.smoother = TrackSmoother(config)
        await self._send(type="config", smoothing=vars(config))

    async def _drop(self, seq: int, reason: str, detail: str) -> None:
        self.dropped += 1
        await self._send(type="dropped", seq=seq, reason=reason, detail=detail)

    async def _send(self, **message) -> None:
        """Send one JSON message; the receive loop and the worker both send, one at a time."""
        async with self._send_lock:
            with suppress(WebSocketDisconnect, RuntimeError):  # the client has gone
                await self.ws.send_json(message)
