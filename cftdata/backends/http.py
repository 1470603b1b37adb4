"""The one HTTP transport of the online backends: keep-alive HTTP/1.1 on asyncio streams.

Chosen by measurement (``benchmarks/transports.py``, README "Performance"): against a local server it
costs well under 0.1 ms of client CPU per request, against 1.6 ms for the ``openai`` SDK and 2.6 ms
for plain ``httpx``, so one core drives thousands of requests a minute.

What it does: ``http`` and ``https`` (certificates verified with the system store, which honours
``SSL_CERT_FILE``), keep-alive connection reuse (a connection the server closed while idle is
retried once on a new one), chunked, gzip and deflate bodies, 1xx interim answers, bodies delimited
by EOF, and proxies from the environment like every other HTTP client (``HTTPS_PROXY`` /
``HTTP_PROXY`` / ``ALL_PROXY``, ``NO_PROXY`` exceptions, ``user:password@`` credentials): plain
``http`` targets go through the proxy in absolute form, ``https`` targets through a ``CONNECT``
tunnel. What it does not: HTTP/2, redirects, cookies, ``https://`` or SOCKS proxies. Timeouts are
the caller's (cancel the call; the connection is then dropped, never reused). Every failure below
HTTP is raised as :class:`TransportError`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import socket
import ssl
import urllib.request
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit


class TransportError(ConnectionError):
    """The exchange failed below HTTP: refused, reset, closed early, TLS, proxy, or a garbled response."""


@dataclass
class HTTPResponse:
    """Status, headers (lower-case names) and the whole body."""

    status: int
    headers: dict[str, str]
    body: bytes
    reason: str = ""


@dataclass(frozen=True)
class Proxy:
    """An ``http://`` proxy: where it listens and the ``Proxy-Authorization`` header it wants, if any."""

    host: str
    port: int
    authorization: str | None = None

    @classmethod
    def parse(cls, url: str) -> Proxy:
        if "://" not in url:
            url = "http://" + url
        u = urlsplit(url)
        if u.scheme != "http" or not u.hostname:
            raise ValueError(f"only http:// proxies are supported, not {url.split('@')[-1]!r}")
        auth = None
        if u.username is not None:
            creds = f"{unquote(u.username)}:{unquote(u.password or '')}".encode()
            auth = "Basic " + base64.b64encode(creds).decode()
        return cls(u.hostname, u.port or 80, auth)


def proxy_for(url: str) -> Proxy | None:
    """The proxy the environment names for ``url`` (what curl, requests and httpx would use), or None."""
    u = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    chosen = proxies.get(u.scheme) or proxies.get("all")
    if not chosen or urllib.request.proxy_bypass_environment(u.netloc.rpartition("@")[2], proxies):
        return None
    return Proxy.parse(chosen)


class _Stale(Exception):
    """A reused keep-alive connection was closed by the server before it answered."""


class HTTPClient:
    """Keep-alive HTTP/1.1 requests to one origin (see the module docstring).

    ``proxy``: ``"env"`` (default) reads the environment; ``None`` goes direct; or a :class:`Proxy`.
    """

    def __init__(self, base_url: str, headers: Mapping[str, str] | None = None, max_idle: int = 512,
                 proxy: Proxy | str | None = "env") -> None:
        u = urlsplit(base_url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.scheme = u.scheme
        self.host = u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.proxy = proxy_for(base_url) if proxy == "env" else proxy
        assert self.proxy is None or isinstance(self.proxy, Proxy)
        self._ssl = ssl.create_default_context() if u.scheme == "https" else None
        self._prefix = u.path.rstrip("/")
        self._query = u.query
        netloc = u.netloc.rpartition("@")[2]
        # Through a proxy, plain-http requests name the whole URL (absolute form); https ones are tunnelled.
        self._absolute = f"http://{netloc}" if self.proxy is not None and self._ssl is None else ""
        base = {"Host": netloc, "User-Agent": "cftdata", "Accept": "application/json",
                "Accept-Encoding": "gzip, deflate", **(headers or {})}
        if self._absolute and self.proxy is not None and self.proxy.authorization:
            base["Proxy-Authorization"] = self.proxy.authorization
        self._head_lines = "".join(f"{k}: {v}\r\n" for k, v in base.items())
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._max_idle = max_idle

    async def request(self, method: str, path: str, body: bytes = b"",
                      content_type: str = "application/json") -> HTTPResponse:
        """Send one request (``path`` is appended to the base URL's path) and read the whole answer."""
        target = self._absolute + self._prefix + path + (f"?{self._query}" if self._query else "")
        head = (f"{method} {target} HTTP/1.1\r\n{self._head_lines}Content-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode("latin-1")
        while self._idle:
            conn = self._idle.pop()
            if conn[0].at_eof() or conn[1].is_closing():
                conn[1].close()
                continue
            try:
                return await self._exchange(conn, method, head + body, reused=True)
            except _Stale:
                continue
        return await self._exchange(await self._connect(), method, head + body, reused=False)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            if self.proxy is None:
                return await asyncio.open_connection(
                    self.host, self.port, ssl=self._ssl, server_hostname=self.host if self._ssl else None,
                    limit=2**20)
            if self._ssl is None:
                return await asyncio.open_connection(self.proxy.host, self.proxy.port, limit=2**20)
            sock = await asyncio.get_running_loop().run_in_executor(None, self._tunnel)
            return await asyncio.open_connection(sock=sock, ssl=self._ssl, server_hostname=self.host, limit=2**20)
        except TransportError:
            raise
        except (OSError, EOFError, ValueError) as e:
            where = f"{self.host}:{self.port}" + (f" via proxy {self.proxy.host}:{self.proxy.port}" if self.proxy else "")
            raise TransportError(f"connect to {where} failed: {type(e).__name__}") from e

    def _tunnel(self) -> socket.socket:
        """A socket to the origin through the proxy's ``CONNECT`` (blocking: run in a thread; rare)."""
        assert self.proxy is not None
        sock = socket.create_connection((self.proxy.host, self.proxy.port), timeout=60)
        try:
            auth = f"Proxy-Authorization: {self.proxy.authorization}\r\n" if self.proxy.authorization else ""
            sock.sendall(f"CONNECT {self.host}:{self.port} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                         f"{auth}\r\n".encode("latin-1"))
            buf = b""
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(4096)
                if not chunk or len(buf) > 65536:
                    raise TransportError("the proxy closed the connection during CONNECT")
                buf += chunk
            status, reason, _, _ = _parse_head(buf.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")
            if status != 200:
                raise TransportError(f"the proxy refused CONNECT {self.host}:{self.port}: {status} {reason}")
            sock.settimeout(None)
            sock.setblocking(False)
            return sock
        except BaseException:
            sock.close()
            raise

    async def _exchange(self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], method: str,
                        data: bytes, reused: bool) -> HTTPResponse:
        reader, writer = conn
        keep = False
        got_head = False
        try:
            writer.write(data)
            await writer.drain()
            while True:
                raw = await reader.readuntil(b"\r\n\r\n")
                got_head = True
                status, reason, headers, version = _parse_head(raw)
                if status >= 200 or status == 101:
                    break  # skip 1xx interim answers
            keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
            if method == "HEAD" or status in (204, 304):
                body = b""
            elif "chunked" in headers.get("transfer-encoding", "").lower():
                body = await _read_chunked(reader)
            elif "content-length" in headers:
                body = await reader.readexactly(int(headers["content-length"]))
            else:
                body = await reader.read()
                keep = False
            encoding = headers.get("content-encoding", "").lower()
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            return HTTPResponse(status, headers, body, reason)
        except (OSError, EOFError, asyncio.LimitOverrunError, ValueError, zlib.error) as e:
            keep = False
            if reused and not got_head and isinstance(e, (ConnectionError, EOFError)):
                raise _Stale from None
            raise TransportError(type(e).__name__) from e
        except BaseException:
            keep = False
            raise
        finally:
            if keep and len(self._idle) < self._max_idle:
                self._idle.append(conn)
            else:
                writer.close()

    async def aclose(self) -> None:
        """Close the idle connections."""
        idle, self._idle = self._idle, []
        for _, w in idle:
            w.close()
        for _, w in idle:
            with contextlib.suppress(Exception):
                await w.wait_closed()


def _parse_head(raw: bytes) -> tuple[int, str, dict[str, str], str]:
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise ValueError(f"not an HTTP status line: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
    return int(parts[1]), parts[2] if len(parts) > 2 else "", headers, parts[0]


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return b"".join(chunks)
        chunks.append((await reader.readexactly(size + 2))[:-2])
