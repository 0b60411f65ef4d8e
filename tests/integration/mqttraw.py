"""A tiny hand-written MQTT 3.1.1 client for black-box tests.

Builds packets byte by byte (so tests can also build wrong ones) and reads one packet at a
time with a timeout. Independent of the broker's codec and of paho.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

# Packet types
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14

TYPE_NAMES = {
    1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL",
    7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK",
    12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT",
}

DEFAULT_TIMEOUT = 10.0


# ---------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------

def encode_remaining_length(n: int) -> bytes:
    if n < 0 or n > 268_435_455:
        raise ValueError(f"remaining length out of range: {n}")
    out = bytearray()
    while True:
        byte = n % 128
        n //= 128
        if n:
            byte |= 0x80
        out.append(byte)
        if not n:
            return bytes(out)


def encode_bytes(b: bytes) -> bytes:
    return struct.pack("!H", len(b)) + b


def encode_str(s: str | bytes) -> bytes:
    if isinstance(s, str):
        s = s.encode("utf-8")
    return encode_bytes(s)


def packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + encode_remaining_length(len(body)) + body


@dataclass
class Will:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False


def connect_packet(
    client_id: str | bytes,
    clean_session: bool = True,
    keepalive: int = 60,
    will: Will | None = None,
    username: str | None = None,
    password: bytes | str | None = None,
    protocol_name: bytes = b"MQTT",
    protocol_level: int = 4,
    reserved_flag: bool = False,
) -> bytes:
    flags = 0
    if reserved_flag:
        flags |= 0x01
    if clean_session:
        flags |= 0x02
    payload = encode_str(client_id)
    if will is not None:
        flags |= 0x04 | ((will.qos & 3) << 3)
        if will.retain:
            flags |= 0x20
        payload += encode_str(will.topic) + encode_bytes(will.payload)
    if username is not None:
        flags |= 0x80
        payload += encode_str(username)
    if password is not None:
        flags |= 0x40
        payload += encode_bytes(password.encode() if isinstance(password, str) else password)
    var = encode_bytes(protocol_name) + bytes([protocol_level, flags]) + struct.pack("!H", keepalive)
    return packet(0x10, var + payload)


def publish_packet(
    topic: str | bytes,
    payload: bytes = b"",
    qos: int = 0,
    retain: bool = False,
    pid: int | None = None,
    dup: bool = False,
) -> bytes:
    first = 0x30 | ((qos & 3) << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
    body = encode_str(topic)
    if qos > 0:
        body += struct.pack("!H", pid if pid is not None else 1)
    return packet(first, body + payload)


def subscribe_packet(pid: int, filters: list[tuple[str, int]], first_byte: int = 0x82) -> bytes:
    body = struct.pack("!H", pid)
    for f, q in filters:
        body += encode_str(f) + bytes([q])
    return packet(first_byte, body)


def unsubscribe_packet(pid: int, filters: list[str]) -> bytes:
    body = struct.pack("!H", pid)
    for f in filters:
        body += encode_str(f)
    return packet(0xA2, body)


def puback_packet(pid: int) -> bytes:
    return packet(0x40, struct.pack("!H", pid))


def pingreq_packet() -> bytes:
    return b"\xc0\x00"


def disconnect_packet() -> bytes:
    return b"\xe0\x00"


# ---------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------

@dataclass
class Packet:
    type: int
    flags: int
    body: bytes

    @property
    def name(self) -> str:
        return TYPE_NAMES.get(self.type, f"type{self.type}")

    # CONNACK
    @property
    def session_present(self) -> bool:
        assert self.type == CONNACK, self
        return bool(self.body[0] & 1)

    @property
    def return_code(self) -> int:
        assert self.type == CONNACK, self
        return self.body[1]

    # PUBLISH
    @property
    def qos(self) -> int:
        return (self.flags >> 1) & 3

    @property
    def dup(self) -> bool:
        return bool(self.flags & 0x08)

    @property
    def retain(self) -> bool:
        return bool(self.flags & 0x01)

    @property
    def topic(self) -> str:
        assert self.type == PUBLISH, self
        (n,) = struct.unpack("!H", self.body[:2])
        return self.body[2:2 + n].decode("utf-8")

    @property
    def pid(self) -> int | None:
        if self.type == PUBLISH:
            if self.qos == 0:
                return None
            (n,) = struct.unpack("!H", self.body[:2])
            return struct.unpack("!H", self.body[2 + n:4 + n])[0]
        return struct.unpack("!H", self.body[:2])[0]

    @property
    def payload(self) -> bytes:
        assert self.type == PUBLISH, self
        (n,) = struct.unpack("!H", self.body[:2])
        start = 2 + n + (2 if self.qos > 0 else 0)
        return self.body[start:]

    # SUBACK
    @property
    def granted(self) -> list[int]:
        assert self.type == SUBACK, self
        return list(self.body[2:])

    def __repr__(self) -> str:
        if self.type == PUBLISH:
            try:
                return (f"PUBLISH(topic={self.topic!r}, qos={self.qos}, dup={self.dup}, "
                        f"retain={self.retain}, pid={self.pid}, payload={self.payload[:40]!r}"
                        f"{'...' if len(self.payload) > 40 else ''} [{len(self.payload)}B])")
            except Exception:  # malformed
                pass
        return f"{self.name}(flags={self.flags:#x}, body={self.body[:40].hex()})"


class Closed(Exception):
    """The peer closed the connection (EOF or reset) while a packet was expected."""


class RawClient:
    """One TCP connection speaking hand-built MQTT."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = DEFAULT_TIMEOUT):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.eof = False
        self.received: list[Packet] = []  # every packet read, in order
        self.pending: list[Packet] = []  # PUBLISHes read while waiting for an ack
        self._next_pid = 1

    # -- plumbing ----------------------------------------------------------------------

    def next_pid(self) -> int:
        pid = self._next_pid
        self._next_pid = self._next_pid % 65535 + 1
        return pid

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> None:
        """Read more bytes into buf; sets eof on close/reset; raises TimeoutError at deadline."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out waiting for data from broker")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("timed out waiting for data from broker") from None
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            chunk = b""
        if not chunk:
            self.eof = True
        else:
            self.buf += chunk

    def _try_parse(self) -> Packet | None:
        if len(self.buf) < 2:
            return None
        mult, length, i = 1, 0, 1
        while True:
            if i >= len(self.buf):
                return None
            b = self.buf[i]
            length += (b & 0x7F) * mult
            mult *= 128
            i += 1
            if not b & 0x80:
                break
            if i > 4:
                raise ValueError(f"broker sent a bad remaining length: {bytes(self.buf[:8]).hex()}")
        if len(self.buf) < i + length:
            return None
        first = self.buf[0]
        body = bytes(self.buf[i:i + length])
        del self.buf[:i + length]
        return Packet(first >> 4, first & 0x0F, body)

    def read_packet(self, timeout: float = DEFAULT_TIMEOUT) -> Packet | None:
        """The next packet, or None if the broker closed the connection.

        Raises TimeoutError if nothing complete arrives within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            p = self._try_parse()
            if p is not None:
                self.received.append(p)
                return p
            if self.eof:
                return None
            self._fill(deadline)

    def expect(self, ptype: int, timeout: float = DEFAULT_TIMEOUT) -> Packet:
        p = self.read_packet(timeout)
        if p is None:
            raise Closed(f"connection closed by broker while waiting for {TYPE_NAMES[ptype]}")
        assert p.type == ptype, f"expected {TYPE_NAMES[ptype]}, got {p!r}"
        return p

    def closed_within(self, seconds: float) -> bool:
        """True if the broker closes the connection within `seconds` (packets read on the way
        are kept in self.received)."""
        return self.wait_closed(seconds) is not None

    def wait_closed(self, seconds: float) -> float | None:
        """Seconds until the broker closed the connection, or None if still open."""
        start = time.monotonic()
        deadline = start + seconds
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                if self.read_packet(left) is None:
                    return time.monotonic() - start
        except TimeoutError:
            return None

    def no_packet_within(self, seconds: float) -> Packet | None:
        """Returns the packet if one arrives within `seconds`, else None (connection open)."""
        try:
            return self.read_packet(seconds)
        except TimeoutError:
            return None

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self) -> None:
        """Close abruptly with a TCP RST (SO_LINGER 0): no DISCONNECT, no FIN handshake."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()

    # -- MQTT operations ---------------------------------------------------------------

    def connect(self, client_id: str | bytes, clean_session: bool = True, keepalive: int = 60,
                will: Will | None = None, timeout: float = DEFAULT_TIMEOUT, **kw) -> Packet:
        """Sends CONNECT and returns the CONNACK packet (any return code)."""
        self.send(connect_packet(client_id, clean_session, keepalive, will, **kw))
        return self.expect(CONNACK, timeout)

    def connect_ok(self, client_id: str | bytes, **kw) -> Packet:
        ack = self.connect(client_id, **kw)
        assert ack.return_code == 0, f"CONNACK return code {ack.return_code} for {client_id!r}"
        return ack

    def subscribe(self, filters: list[tuple[str, int]] | str, qos: int = 0,
                  timeout: float = DEFAULT_TIMEOUT) -> list[int]:
        """Sends SUBSCRIBE, waits for its SUBACK (PUBLISHes arriving first are kept in
        self.pending) and returns the granted QoS list."""
        if isinstance(filters, str):
            filters = [(filters, qos)]
        pid = self.next_pid()
        self.send(subscribe_packet(pid, filters))
        ack = self._expect_skipping_publishes(SUBACK, timeout)
        assert ack.pid == pid, f"SUBACK for packet id {ack.pid}, expected {pid}"
        return ack.granted

    def unsubscribe(self, filters: list[str] | str, timeout: float = DEFAULT_TIMEOUT) -> None:
        if isinstance(filters, str):
            filters = [filters]
        pid = self.next_pid()
        self.send(unsubscribe_packet(pid, filters))
        ack = self._expect_skipping_publishes(UNSUBACK, timeout)
        assert ack.pid == pid

    def _expect_skipping_publishes(self, ptype: int, timeout: float) -> Packet:
        deadline = time.monotonic() + timeout
        while True:
            p = self.read_packet(max(0.0, deadline - time.monotonic()))
            if p is None:
                raise Closed(f"connection closed by broker while waiting for {TYPE_NAMES[ptype]}")
            if p.type == PUBLISH:
                self.pending.append(p)
                continue
            assert p.type == ptype, f"expected {TYPE_NAMES[ptype]}, got {p!r}"
            return p

    def publish(self, topic: str | bytes, payload: bytes = b"", qos: int = 0,
                retain: bool = False, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Publishes; for QoS 1 waits for the matching PUBACK."""
        pid = self.next_pid() if qos else None
        self.send(publish_packet(topic, payload, qos, retain, pid))
        if qos == 1:
            ack = self._expect_skipping_publishes(PUBACK, timeout)
            assert ack.pid == pid, f"PUBACK for {ack.pid}, expected {pid}"

    def next_publish(self, timeout: float = DEFAULT_TIMEOUT) -> Packet:
        if self.pending:
            return self.pending.pop(0)
        return self.expect(PUBLISH, timeout)

    def puback(self, pid: int) -> None:
        self.send(puback_packet(pid))

    def ping(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.send(pingreq_packet())
        self._expect_skipping_publishes(PINGRESP, timeout)

    def disconnect(self) -> None:
        try:
            self.send(disconnect_packet())
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
