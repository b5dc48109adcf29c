"""The listening sockets of `serve`, bound before any model loads: a busy port or an address
this machine does not have fails at once, in one line that names the flag. `--host` takes
several addresses separated by commas (llama-server's `127.0.0.1,::1`)."""
from __future__ import annotations

import errno
import socket

BACKLOG = 2048  # uvicorn's default


def hosts_of(host: str) -> list[str]:
    """The addresses --host names (IPv6 ones may be written in brackets)."""
    hosts = [part.strip().removeprefix("[").removesuffix("]") for part in host.split(",")]
    return [h for h in hosts if h] or ["127.0.0.1"]


def bind(host: str, port: int) -> list[socket.socket]:
    """One listening socket per address; ValueError naming the flag when one cannot be had."""
    sockets: list[socket.socket] = []
    try:
        for address in hosts_of(host):
            sockets.append(_bind_one(address, port))
            port = port or sockets[0].getsockname()[1]  # --port 0: one free port for every address
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _bind_one(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError):
        raise ValueError(f"--host: {host!r} is neither an IP address nor a name this machine "
                         "resolves") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:  # ::1 beside 127.0.0.1, not over it
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise ValueError(_bind_error(host, port, exc)) from None
    sock.setblocking(False)
    return sock


def _bind_error(host: str, port: int, exc: OSError) -> str:
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return f"--port: {where} is already in use (another server, or an earlier llamaserve still running)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"--host: {host} is not an address of this machine"
    if exc.errno == errno.EACCES:
        return f"--port: {where} needs privileges this process does not have (ports below 1024)"
    return f"--host/--port: cannot listen on {where}: {exc.strerror or exc}"
