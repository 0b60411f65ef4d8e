"""A tiny hand-written WebSocket client (RFC 6455) for black-box tests: sends an HTTP
upgrade (any path, query and headers, optionally over TLS with chosen ALPN), returns the
raw HTTP answer, and after a 101 carries MQTT in masked binary frames (a RawClient).

Independent of the broker and of paho's WebSocket code."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import ssl
import struct
import time
from dataclasses import dataclass, field

from mqttraw import RawClient

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def new_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


@dataclass
class HttpAnswer:
    status_line: str
    status: int
    headers: dict = field(default_factory=dict)  # lowercased names
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def __str__(self) -> str:
        return f"{self.status_line!r} headers={self.headers} body={self.body[:200]!r}"


def open_stream(port: int, host: str = "127.0.0.1", tls_ctx: ssl.SSLContext | None = None,
                server_hostname: str = "localhost", timeout: float = 10.0):
    raw = socket.create_connection((host, port), timeout=timeout)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls_ctx is None:
        return raw
    try:
        return tls_ctx.wrap_socket(raw, server_hostname=server_hostname)
    except BaseException:
        raw.close()
        raise


def upgrade_headers(key: str | None = None, host: str = "localhost",
                    subprotocol: str | None = "mqtt") -> list[tuple[str, str]]:
    h = [("Host", host), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
         ("Sec-WebSocket-Key", key or new_key()), ("Sec-WebSocket-Version", "13")]
    if subprotocol:
        h.append(("Sec-WebSocket-Protocol", subprotocol))
    return h


def read_http_head(sock, timeout: float = 10.0) -> tuple[HttpAnswer, bytes]:
    """Reads an HTTP response head (and, without an upgrade, the body up to
    Content-Length or EOF). Returns the answer and bytes read past it."""
    deadline = time.monotonic() + timeout
    buf = b""
    while b"\r\n\r\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no complete HTTP answer within {timeout}s; got {buf[:300]!r}")
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError) as e:
            raise ConnectionError(f"connection closed before an HTTP answer ({e!r}); got {buf!r}")
        if not chunk:
            raise ConnectionError(f"connection closed before an HTTP answer; got {buf!r}")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status_line = lines[0]
    parts = status_line.split(" ", 2)
    assert parts[0].startswith("HTTP/1."), f"not an HTTP answer: {status_line!r}"
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    ans = HttpAnswer(status_line, int(parts[1]), headers)
    if ans.status != 101:
        n = int(headers.get("content-length", "-1"))
        body = rest
        while n < 0 or len(body) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except (OSError, ssl.SSLError):
                break
            if not chunk:
                break
            body += chunk
        ans.body = body
        rest = b""
    return ans, rest


def http_request(port: int, target: str, headers: list[tuple[str, str]] | None = None,
                 method: str = "GET", tls_ctx: ssl.SSLContext | None = None,
                 request_line: str | None = None, timeout: float = 10.0):
    """Sends one request; returns (answer, socket, leftover bytes). The caller closes."""
    sock = open_stream(port, tls_ctx=tls_ctx, timeout=timeout)
    line = request_line or f"{method} {target} HTTP/1.1"
    hdrs = headers if headers is not None else [("Host", "localhost")]
    req = line + "\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs) + "\r\n"
    sock.sendall(req.encode("latin-1"))
    try:
        ans, rest = read_http_head(sock, timeout)
    except BaseException:
        sock.close()
        raise
    return ans, sock, rest


def http_status(port: int, target: str, headers=None, **kw) -> HttpAnswer:
    ans, sock, _ = http_request(port, target, headers, **kw)
    sock.close()
    return ans


class WsRawClient(RawClient):
    """MQTT (mqttraw.RawClient) over an upgraded WebSocket: every send is one masked binary
    frame; received binary frames are unwrapped. A close frame or EOF counts as closed."""

    def __init__(self, sock, leftover: bytes = b""):
        self.sock = sock
        self.buf = bytearray()
        self.eof = False
        self.received = []
        self.pending = []
        self._next_pid = 1
        self.frames = bytearray(leftover)
        self.close_frame: bytes | None = None

    def send(self, data: bytes) -> None:
        self.sock.sendall(frame(0x2, data))

    def _frame_out(self) -> bool:
        """Moves complete frames from self.frames to self.buf; True if anything happened."""
        progressed = False
        while True:
            f = parse_frame(self.frames)
            if f is None:
                return progressed
            opcode, payload, used = f
            del self.frames[:used]
            progressed = True
            if opcode in (0x0, 0x2):
                self.buf += payload
            elif opcode == 0x9:  # ping → pong
                try:
                    self.sock.sendall(frame(0xA, payload))
                except OSError:
                    pass
            elif opcode == 0x8:
                self.close_frame = payload
                self.eof = True
                return True
            elif opcode == 0x1:
                raise AssertionError(f"broker sent a text frame: {payload[:80]!r}")

    def _fill(self, deadline: float) -> None:
        if self._frame_out():
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out waiting for data from broker")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("timed out waiting for data from broker") from None
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError, ssl.SSLError):
            chunk = b""
        if not chunk:
            self.eof = True
        else:
            self.frames += chunk
            self._frame_out()

    def close(self) -> None:
        try:
            self.sock.sendall(frame(0x8, struct.pack("!H", 1000)))
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


def frame(opcode: int, payload: bytes) -> bytes:
    """A client frame: FIN, masked."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def parse_frame(buf: bytearray):
    """(opcode, payload, bytes used) of the first complete frame, or None."""
    if len(buf) < 2:
        return None
    opcode = buf[0] & 0x0F
    masked = buf[1] & 0x80
    n = buf[1] & 0x7F
    i = 2
    if n == 126:
        if len(buf) < 4:
            return None
        n = struct.unpack("!H", bytes(buf[2:4]))[0]
        i = 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n = struct.unpack("!Q", bytes(buf[2:10]))[0]
        i = 10
    assert not masked, "a server must not mask its frames (RFC 6455 5.1)"
    if len(buf) < i + n:
        return None
    return opcode, bytes(buf[i:i + n]), i + n


def ws_connect(port: int, target: str = "/mqtt", extra_headers: list[tuple[str, str]] | None = None,
               tls_ctx: ssl.SSLContext | None = None, subprotocol: str | None = "mqtt",
               host_header: str = "localhost", timeout: float = 10.0):
    """Upgrade request; returns (answer, WsRawClient or None). On anything but 101 the
    socket is closed and the client is None."""
    key = new_key()
    headers = upgrade_headers(key, host_header, subprotocol) + list(extra_headers or [])
    ans, sock, rest = http_request(port, target, headers, tls_ctx=tls_ctx, timeout=timeout)
    if ans.status != 101:
        sock.close()
        return ans, None
    assert ans.header("sec-websocket-accept") == accept_key(key), \
        f"wrong Sec-WebSocket-Accept: {ans}"
    return ans, WsRawClient(sock, rest)
