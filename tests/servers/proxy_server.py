"""A forwarding HTTP proxy on 127.0.0.1, as corporate networks put in front of clients.

``CONNECT host:port`` opens a tunnel (how https goes through a proxy); any other request names its
target in absolute form (``POST http://host:port/path``) and is forwarded as sent over a connection to
that host (the fault server accepts absolute-form targets, as RFC 9112 requires of servers). Only
loopback targets are allowed. It counts what it saw: tunnels, forwarded connections, targets, and the
``Proxy-Authorization`` headers::

    with ProxyServer(require_auth="Basic dTpw") as proxy:
        proxy.url          # "http://127.0.0.1:<port>"
        proxy.tunnels      # CONNECT targets, in order
        proxy.forwarded    # absolute-form request targets of the first request of each connection
        proxy.auth_seen    # Proxy-Authorization values (None where absent)
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from urllib.parse import urlsplit

HOST = "127.0.0.1"


class ProxyServer:
    def __init__(self, require_auth: str | None = None) -> None:
        self.require_auth = require_auth
        self.tunnels: list[str] = []
        self.forwarded: list[str] = []
        self.auth_seen: list[str | None] = []
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Future | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="proxy-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def __enter__(self) -> ProxyServer:
        self._thread.start()
        self._ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(lambda: self._stop.done() or self._stop.set_result(None))
        self._thread.join(10)

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = self._loop.create_future()
            server = await asyncio.start_server(self._client, HOST, 0)
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            try:
                await self._stop
            finally:
                server.close()

        asyncio.run(main())

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        auth = headers.get("proxy-authorization")
        self.auth_seen.append(auth)
        if self.require_auth is not None and auth != self.require_auth:
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            self.tunnels.append(target)
            first = b""
        else:
            u = urlsplit(target)
            host, port = u.hostname or "", str(u.port or 80)
            self.forwarded.append(target)
            first = head
        if host not in (HOST, "localhost"):
            writer.write(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        if method == "CONNECT":
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
        else:
            up_writer.write(first)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True)


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
    finally:
        with contextlib.suppress(Exception):
            dst.close()
