"""Resumable chat streams, llama-server's: a streamed chat request with an X-Conversation-Id
header keeps generating when its client drops (a page reload, a phone going to sleep), and any
client holding the id reattaches with GET /v1/stream?conv_id=ID&from=N (the bytes of the event
stream from offset N, then live ones), or stops it with DELETE /v1/stream?conv_id=ID.

Each session keeps the last MAX_BYTES of its events (older bytes drop first; reading from
before them is a 400) and is forgotten TTL seconds after it ends. There is no listing: an id is
the only way to a session (POST /v1/streams/lookup tells the state of ids the caller names)."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from llamaserve.server.errors import ApiError, invalid

log = logging.getLogger("llamaserve.server")

HEADER = "x-conversation-id"
MAX_BYTES = 4 * 1024 * 1024
TTL = 300.0  # seconds a finished session stays readable
MAX_SESSIONS = 256
MAX_ID = 512


class Session:
    """One generation's event stream: written by its producer task, read from any offset."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.dropped = 0  # bytes dropped from the front (offsets stay absolute)
        self.ended_at: float | None = None
        self.task: asyncio.Task[None] | None = None
        self._more = asyncio.Event()

    @property
    def end(self) -> int:
        return self.dropped + len(self.data)

    def append(self, chunk: bytes) -> None:
        self.data += chunk
        if len(self.data) > MAX_BYTES:
            cut = len(self.data) - MAX_BYTES
            del self.data[:cut]
            self.dropped += cut
        self._wake()

    def finish(self) -> None:
        self.ended_at = time.monotonic()
        self._wake()

    def _wake(self) -> None:
        self._more.set()
        self._more = asyncio.Event()

    async def read(self, offset: int) -> AsyncIterator[bytes]:
        """The bytes from `offset` on, as they come, until the stream ends."""
        while True:
            if offset < self.dropped:
                return  # fell behind what the buffer keeps: the reader asks again
            if offset < self.end:
                chunk = bytes(self.data[offset - self.dropped:])
                offset += len(chunk)
                yield chunk
                continue
            if self.ended_at is not None:
                return
            await self._more.wait()


class StreamSessions:
    def __init__(self) -> None:
        self.sessions: dict[str, Session] = {}

    def start(self, conv_id: str, events: AsyncIterator[bytes]) -> Session:
        """Run `events` to its end whoever reads it; a session under the same id is replaced
        (its generation stopped)."""
        self._forget_old()
        if conv_id not in self.sessions and len(self.sessions) >= MAX_SESSIONS:
            raise ApiError(503, "OVERLOADED", f"more than {MAX_SESSIONS} resumable streams at once",
                           "retry later, or without X-Conversation-Id", {"Retry-After": "5"})
        self.stop(conv_id)
        session = self.sessions[conv_id] = Session()
        session.task = asyncio.get_running_loop().create_task(self._produce(session, events))
        return session

    @staticmethod
    async def _produce(session: Session, events: AsyncIterator[bytes]) -> None:
        try:
            async for chunk in events:
                session.append(chunk)
        except asyncio.CancelledError:
            pass  # stopped (DELETE): the generation ends with the stream's closing below
        except Exception:  # noqa: BLE001 - the family stream sends its errors as events; anything else is a bug
            log.exception("a resumable stream failed")
        finally:
            with contextlib.suppress(Exception):
                await events.aclose()  # type: ignore[attr-defined]
            session.finish()

    def find(self, conv_id: str) -> Session:
        self._forget_old()
        session = self.sessions.get(conv_id)
        if session is None:
            raise ApiError(404, "NOT_FOUND", "no stream with that conv_id (it ended over "
                           f"{TTL:g}s ago, was stopped, or never started)")
        return session

    def stop(self, conv_id: str) -> None:
        """Stop the session's generation (if it still runs) and forget it; idempotent."""
        session = self.sessions.pop(conv_id, None)
        if session is not None and session.task is not None and not session.task.done():
            session.task.cancel()

    def state(self, conv_id: str) -> dict[str, object] | None:
        session = self.sessions.get(conv_id)
        if session is None:
            return None
        return {"conv_id": conv_id, "done": session.ended_at is not None, "bytes": session.end,
                "first_byte": session.dropped}

    def _forget_old(self) -> None:
        now = time.monotonic()
        for conv_id, session in list(self.sessions.items()):
            if session.ended_at is not None and now - session.ended_at > TTL:
                del self.sessions[conv_id]


def conv_id(value: str | None, name: str = "conv_id") -> str:
    if not value:
        raise invalid(f"{name}: required")
    if len(value) > MAX_ID or not value.isprintable():
        raise invalid(f"{name}: at most {MAX_ID} printable characters")
    return value


def offset(value: str | None, session: Session) -> int:
    """`from`: a byte offset into the session's stream (by default its first byte still kept: 0 until
    older bytes are dropped)."""
    if value is None:
        return session.dropped
    if not value.isdigit() or len(value) > 15:
        raise invalid("from: must be a byte offset (a whole number)")
    at = int(value)
    if at < session.dropped:
        raise invalid(f"from: the stream keeps its bytes from {session.dropped} on (the older ones dropped)")
    return at
