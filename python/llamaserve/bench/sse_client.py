"""A lean HTTP/1.1 client for the load generator: one keep-alive connection per simulated
client, a JSON POST, and the data of the response's server-sent events as they arrive.

It does a fraction of a general client's work per event, so the load generator takes less
CPU from the server it measures when both share a machine.
"""
from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from urllib.parse import urlsplit


class HTTPError(Exception):
    """The exchange failed: a malformed response, or the connection broke."""


class StatusError(HTTPError):
    """The server answered with a status other than 200."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body[:200].decode('utf-8', 'replace')}")
        self.status = status


class Connection:
    """One keep-alive connection; post_events() may be called again once a response ends."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.tls = parts.scheme == "https"
        self.base_path = parts.path.rstrip("/")
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._fixed_headers = (f"Host: {parts.netloc}\r\nContent-Type: application/json\r\n"
                               f"Accept: text/event-stream\r\n{extra}").encode("latin-1")
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._served = 0  # responses read whole on the current connection
        self.resent = False  # the last request went out twice (see post_events)

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass

    async def post_events(self, path: str, body: bytes) -> AsyncIterator[bytes]:
        """POST `body`; yield the data of each server-sent event. A kept-alive connection
        the server has meanwhile closed is reopened and the request sent once more: the
        server never saw it. Raises StatusError or HTTPError."""
        request = (f"POST {self.base_path}{path} HTTP/1.1\r\n".encode("latin-1") + self._fixed_headers
                   + f"Content-Length: {len(body)}\r\n\r\n".encode("latin-1") + body)
        self.resent = False
        status_line = await self._send(request)
        if not status_line and self._served:
            await self.close()
            self.resent = True
            status_line = await self._send(request)
        if not status_line:
            await self.close()
            raise HTTPError("the server closed the connection without responding")
        try:
            status = _status(status_line)
            headers = await self._read_headers()
            if status != 200:
                raise StatusError(status, b"".join([piece async for piece in self._body(headers)]))
            async for data in _events(self._body(headers)):
                yield data
        except BaseException:
            await self.close()  # a response read partly leaves the connection unusable
            raise
        self._served += 1

    async def _send(self, request: bytes) -> bytes:
        if self._reader is not None:
            await asyncio.sleep(0)  # let the loop take in a close that has already arrived
            if self._reader.at_eof():  # e.g. llama-server closes after each streamed response
                await self.close()
        if self._writer is None:
            context = ssl.create_default_context() if self.tls else None
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port, ssl=context)
            self._served = 0
        assert self._reader is not None
        try:
            self._writer.write(request)
            await self._writer.drain()
            return await self._reader.readline()
        except (ConnectionError, OSError):
            return b""

    async def _read_headers(self) -> dict[bytes, bytes]:
        assert self._reader is not None
        headers = {}
        while (line := await self._reader.readline()) not in (b"\r\n", b"\n"):
            if not line:
                raise HTTPError("the connection closed inside the response headers")
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        return headers

    async def _body(self, headers: dict[bytes, bytes]) -> AsyncIterator[bytes]:
        reader = self._reader
        assert reader is not None
        try:
            if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
                while size := int((await reader.readline()).split(b";")[0], 16):
                    yield (await reader.readexactly(size + 2))[:-2]
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
            elif b"content-length" in headers:
                yield await reader.readexactly(int(headers[b"content-length"]))
            else:  # the body ends with the connection
                while piece := await reader.read(65536):
                    yield piece
                await self.close()
                return
        except (ValueError, asyncio.IncompleteReadError, ConnectionError) as exc:
            raise HTTPError(f"broken response body: {exc!r}") from exc
        if headers.get(b"connection", b"").lower() == b"close":
            await self.close()


def _status(status_line: bytes) -> int:
    parts = status_line.split()
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise HTTPError(f"not an HTTP response: {status_line[:80]!r}")
    return int(parts[1])


async def _events(pieces: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The data of each event in a text/event-stream body, however it is split."""
    pending = b""
    async for piece in pieces:
        pending += piece
        if b"\r" in pending:
            pending = pending.replace(b"\r\n", b"\n")
        *complete, pending = pending.split(b"\n\n")
        for event in complete:
            for line in event.split(b"\n"):
                if line.startswith(b"data:"):
                    yield line[5:].lstrip(b" ")
