"""A tiny hand-written MQTT 5 client for black-box tests.

Builds MQTT 5 packets byte by byte — including the ones real clients refuse to send (QoS 2,
Topic Alias 0, a Subscription Identifier, oversized packets, AUTH) — and decodes what the
broker sends back (CONNACK, PUBLISH, PUBACK, SUBACK, UNSUBACK, DISCONNECT, AUTH) with their
properties. Independent of the broker's codec and of paho; the socket plumbing is
mqttraw.RawClient's.

The decoder is strict on purpose: an unknown property identifier, a property that is not
allowed on that packet, or a property other than User Property given twice raises
`MalformedFromBroker`, so a broker encoding bug fails the test instead of passing unnoticed.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field

from mqttraw import (
    CONNACK, CONNECT, DISCONNECT, PINGREQ, PINGRESP, PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL,
    SUBACK, SUBSCRIBE, TYPE_NAMES, UNSUBACK, UNSUBSCRIBE, Closed, RawClient, encode_bytes,
    encode_remaining_length, encode_str,
)

AUTH = 15
TYPE_NAMES_5 = dict(TYPE_NAMES)
TYPE_NAMES_5[AUTH] = "AUTH"

DEFAULT_TIMEOUT = 10.0

# -- property identifiers (MQTT 5 §2.2.2.2) ----------------------------------------------------

PAYLOAD_FORMAT_INDICATOR = 0x01
MESSAGE_EXPIRY_INTERVAL = 0x02
CONTENT_TYPE = 0x03
RESPONSE_TOPIC = 0x08
CORRELATION_DATA = 0x09
SUBSCRIPTION_IDENTIFIER = 0x0B
SESSION_EXPIRY_INTERVAL = 0x11
ASSIGNED_CLIENT_IDENTIFIER = 0x12
SERVER_KEEP_ALIVE = 0x13
AUTHENTICATION_METHOD = 0x15
AUTHENTICATION_DATA = 0x16
REQUEST_PROBLEM_INFORMATION = 0x17
WILL_DELAY_INTERVAL = 0x18
REQUEST_RESPONSE_INFORMATION = 0x19
RESPONSE_INFORMATION = 0x1A
SERVER_REFERENCE = 0x1C
REASON_STRING = 0x1F
RECEIVE_MAXIMUM = 0x21
TOPIC_ALIAS_MAXIMUM = 0x22
TOPIC_ALIAS = 0x23
MAXIMUM_QOS = 0x24
RETAIN_AVAILABLE = 0x25
USER_PROPERTY = 0x26
MAXIMUM_PACKET_SIZE = 0x27
WILDCARD_SUBSCRIPTION_AVAILABLE = 0x28
SUBSCRIPTION_IDENTIFIER_AVAILABLE = 0x29
SHARED_SUBSCRIPTION_AVAILABLE = 0x2A

# id: (name, wire type, packets it may appear on); "will" = the will properties of CONNECT
_BYTE, _U16, _U32, _VARINT, _STR, _BIN, _PAIR = "byte", "u16", "u32", "varint", "str", "bin", "pair"
PROPERTIES = {
    0x01: ("PayloadFormatIndicator", _BYTE, {PUBLISH, "will"}),
    0x02: ("MessageExpiryInterval", _U32, {PUBLISH, "will"}),
    0x03: ("ContentType", _STR, {PUBLISH, "will"}),
    0x08: ("ResponseTopic", _STR, {PUBLISH, "will"}),
    0x09: ("CorrelationData", _BIN, {PUBLISH, "will"}),
    0x0B: ("SubscriptionIdentifier", _VARINT, {PUBLISH, SUBSCRIBE}),
    0x11: ("SessionExpiryInterval", _U32, {CONNECT, CONNACK, DISCONNECT}),
    0x12: ("AssignedClientIdentifier", _STR, {CONNACK}),
    0x13: ("ServerKeepAlive", _U16, {CONNACK}),
    0x15: ("AuthenticationMethod", _STR, {CONNECT, CONNACK, AUTH}),
    0x16: ("AuthenticationData", _BIN, {CONNECT, CONNACK, AUTH}),
    0x17: ("RequestProblemInformation", _BYTE, {CONNECT}),
    0x18: ("WillDelayInterval", _U32, {"will"}),
    0x19: ("RequestResponseInformation", _BYTE, {CONNECT}),
    0x1A: ("ResponseInformation", _STR, {CONNACK}),
    0x1C: ("ServerReference", _STR, {CONNACK, DISCONNECT}),
    0x1F: ("ReasonString", _STR, {CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK,
                                  DISCONNECT, AUTH}),
    0x21: ("ReceiveMaximum", _U16, {CONNECT, CONNACK}),
    0x22: ("TopicAliasMaximum", _U16, {CONNECT, CONNACK}),
    0x23: ("TopicAlias", _U16, {PUBLISH}),
    0x24: ("MaximumQoS", _BYTE, {CONNACK}),
    0x25: ("RetainAvailable", _BYTE, {CONNACK}),
    0x26: ("UserProperty", _PAIR, {CONNECT, CONNACK, PUBLISH, "will", PUBACK, PUBREC, PUBREL,
                                   PUBCOMP, SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, DISCONNECT,
                                   AUTH}),
    0x27: ("MaximumPacketSize", _U32, {CONNECT, CONNACK}),
    0x28: ("WildcardSubscriptionAvailable", _BYTE, {CONNACK}),
    0x29: ("SubscriptionIdentifierAvailable", _BYTE, {CONNACK}),
    0x2A: ("SharedSubscriptionAvailable", _BYTE, {CONNACK}),
}
NAME_TO_ID = {v[0]: k for k, v in PROPERTIES.items()}

# -- reason codes used by the tests ----------------------------------------------------------

SUCCESS = 0x00
NO_SUBSCRIPTION_EXISTED = 0x11
UNSPECIFIED_ERROR = 0x80
MALFORMED_PACKET = 0x81
PROTOCOL_ERROR = 0x82
CLIENT_IDENTIFIER_NOT_VALID = 0x85
BAD_USER_NAME_OR_PASSWORD = 0x86
NOT_AUTHORIZED = 0x87
SERVER_SHUTTING_DOWN = 0x8B
BAD_AUTHENTICATION_METHOD = 0x8C
KEEP_ALIVE_TIMEOUT = 0x8D
SESSION_TAKEN_OVER = 0x8E
TOPIC_FILTER_INVALID = 0x8F
TOPIC_NAME_INVALID = 0x90
RECEIVE_MAXIMUM_EXCEEDED = 0x93
TOPIC_ALIAS_INVALID = 0x94
PACKET_TOO_LARGE = 0x95
ADMINISTRATIVE_ACTION = 0x98
QOS_NOT_SUPPORTED = 0x9B
SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1


class MalformedFromBroker(AssertionError):
    """The broker sent bytes that are not valid MQTT 5."""


# ---------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------

def encode_varint(n: int) -> bytes:
    return encode_remaining_length(n)


def _encode_value(kind: str, v) -> bytes:
    if kind == _BYTE:
        return bytes([v])
    if kind == _U16:
        return struct.pack("!H", v)
    if kind == _U32:
        return struct.pack("!I", v)
    if kind == _VARINT:
        return encode_varint(v)
    if kind == _STR:
        return encode_str(v)
    if kind == _BIN:
        return encode_bytes(v)
    if kind == _PAIR:
        return encode_str(v[0]) + encode_str(v[1])
    raise ValueError(kind)


def encode_properties(props) -> bytes:
    """props: a list of (id, value) in wire order (duplicates allowed, e.g. user properties),
    or a dict {id: value}. User Property values are (key, value) tuples."""
    if props is None:
        props = []
    if isinstance(props, dict):
        props = list(props.items())
    body = b""
    for pid, value in props:
        kind = PROPERTIES[pid][1]
        body += encode_varint(pid) + _encode_value(kind, value)
    return encode_varint(len(body)) + body


def packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + encode_remaining_length(len(body)) + body


@dataclass
class Will5:
    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    props: list = field(default_factory=list)  # will properties, [(id, value)]


def connect_packet(client_id: str | bytes, clean_start: bool = True, keepalive: int = 60,
                   props=None, will: Will5 | None = None, username: str | None = None,
                   password: bytes | str | None = None) -> bytes:
    flags = 0x02 if clean_start else 0
    payload = encode_str(client_id)
    if will is not None:
        flags |= 0x04 | ((will.qos & 3) << 3)
        if will.retain:
            flags |= 0x20
        payload += encode_properties(will.props) + encode_str(will.topic) + encode_bytes(will.payload)
    if username is not None:
        flags |= 0x80
        payload += encode_str(username)
    if password is not None:
        flags |= 0x40
        payload += encode_bytes(password.encode() if isinstance(password, str) else password)
    var = encode_bytes(b"MQTT") + bytes([5, flags]) + struct.pack("!H", keepalive)
    return packet(0x10, var + encode_properties(props) + payload)


def publish_packet(topic: str | bytes, payload: bytes = b"", qos: int = 0, retain: bool = False,
                   pid: int | None = None, dup: bool = False, props=None) -> bytes:
    first = 0x30 | ((qos & 3) << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
    body = encode_str(topic)
    if qos > 0:
        body += struct.pack("!H", pid if pid is not None else 1)
    return packet(first, body + encode_properties(props) + payload)


def sub_options(qos: int = 1, no_local: bool = False, retain_as_published: bool = False,
                retain_handling: int = 0) -> int:
    return (qos & 3) | (0x04 if no_local else 0) | (0x08 if retain_as_published else 0) \
        | ((retain_handling & 3) << 4)


def subscribe_packet(pid: int, filters: list[tuple[str, int]], props=None) -> bytes:
    """filters: [(filter, options byte)] (see sub_options)."""
    body = struct.pack("!H", pid) + encode_properties(props)
    for f, opts in filters:
        body += encode_str(f) + bytes([opts])
    return packet(0x82, body)


def unsubscribe_packet(pid: int, filters: list[str], props=None) -> bytes:
    body = struct.pack("!H", pid) + encode_properties(props)
    for f in filters:
        body += encode_str(f)
    return packet(0xA2, body)


def puback_packet(pid: int, reason: int = 0, props=None) -> bytes:
    if reason == 0 and not props:
        return packet(0x40, struct.pack("!H", pid))
    return packet(0x40, struct.pack("!H", pid) + bytes([reason]) + encode_properties(props))


def disconnect_packet(reason: int = 0, props=None) -> bytes:
    if reason == 0 and not props:
        return b"\xe0\x00"
    return packet(0xE0, bytes([reason]) + encode_properties(props))


def auth_packet(reason: int = 0x18, props=None) -> bytes:
    """AUTH (0x18 = Continue authentication)."""
    return packet(0xF0, bytes([reason]) + encode_properties(props))


def pingreq_packet() -> bytes:
    return b"\xc0\x00"


# ---------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------

class Reader:
    def __init__(self, data: bytes, what: str):
        self.data, self.i, self.what = data, 0, what

    def left(self) -> int:
        return len(self.data) - self.i

    def take(self, n: int) -> bytes:
        if self.i + n > len(self.data):
            raise MalformedFromBroker(f"{self.what}: truncated (need {n} bytes at {self.i}, "
                                      f"have {len(self.data)}): {self.data[:60].hex()}")
        b = self.data[self.i:self.i + n]
        self.i += n
        return b

    def byte(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack("!H", self.take(2))[0]

    def u32(self) -> int:
        return struct.unpack("!I", self.take(4))[0]

    def varint(self) -> int:
        mult, n = 1, 0
        for _ in range(4):
            b = self.byte()
            n += (b & 0x7F) * mult
            mult *= 128
            if not b & 0x80:
                return n
        raise MalformedFromBroker(f"{self.what}: variable byte integer longer than 4 bytes")

    def bin(self) -> bytes:
        return self.take(self.u16())

    def str(self) -> str:
        raw = self.bin()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise MalformedFromBroker(f"{self.what}: string is not UTF-8: {raw!r}") from e


class Props:
    """Decoded properties, in wire order."""

    def __init__(self, items: list[tuple[int, object]] | None = None):
        self.items = items or []

    def get(self, pid: int, default=None):
        for k, v in self.items:
            if k == pid:
                return v
        return default

    def __contains__(self, pid: int) -> bool:
        return any(k == pid for k, _ in self.items)

    @property
    def user_properties(self) -> list[tuple[str, str]]:
        return [v for k, v in self.items if k == USER_PROPERTY]

    def ids(self) -> list[int]:
        return [k for k, _ in self.items]

    def __bool__(self) -> bool:
        return bool(self.items)

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{PROPERTIES.get(k, (hex(k),))[0]}={v!r}" for k, v in self.items) + "}"


def decode_properties(r: Reader, where) -> Props:
    n = r.varint()
    end = r.i + n
    if end > len(r.data):
        raise MalformedFromBroker(f"{r.what}: property length {n} beyond the packet")
    items = []
    seen = set()
    while r.i < end:
        pid = r.varint()
        if pid not in PROPERTIES:
            raise MalformedFromBroker(f"{r.what}: unknown property identifier {pid:#x}")
        name, kind, allowed = PROPERTIES[pid]
        if where not in allowed:
            raise MalformedFromBroker(f"{r.what}: property {name} is not allowed here")
        if pid in seen and pid not in (USER_PROPERTY, SUBSCRIPTION_IDENTIFIER):
            raise MalformedFromBroker(f"{r.what}: property {name} appears twice")
        seen.add(pid)
        if kind == _BYTE:
            v = r.byte()
        elif kind == _U16:
            v = r.u16()
        elif kind == _U32:
            v = r.u32()
        elif kind == _VARINT:
            v = r.varint()
        elif kind == _STR:
            v = r.str()
        elif kind == _BIN:
            v = r.bin()
        else:
            v = (r.str(), r.str())
        items.append((pid, v))
    if r.i != end:
        raise MalformedFromBroker(f"{r.what}: properties overrun their length")
    return Props(items)


class Packet5:
    """One packet from the broker, decoded as MQTT 5. Fields set per type:
    CONNACK: session_present, reason, props; PUBLISH: topic, pid, props, payload, qos, dup,
    retain; PUBACK/PUBREC/PUBREL/PUBCOMP: pid, reason, props; SUBACK/UNSUBACK: pid, props,
    reasons; DISCONNECT/AUTH: reason, props."""

    def __init__(self, ptype: int, flags: int, body: bytes):
        self.type, self.flags, self.body = ptype, flags, body
        self.props = Props()
        self.reason = None
        self.reasons: list[int] = []
        self.pid = None
        self.topic = None
        self.payload = None
        self.session_present = None
        name = self.name
        r = Reader(body, name)
        if ptype == CONNACK:
            ack_flags = r.byte()
            if ack_flags & 0xFE:
                raise MalformedFromBroker(f"CONNACK: reserved flag bits set: {ack_flags:#x}")
            self.session_present = bool(ack_flags & 1)
            self.reason = r.byte()
            if r.left():  # a 3.1.1 CONNACK has no property length
                self.props = decode_properties(r, CONNACK)
        elif ptype == PUBLISH:
            self.topic = r.str()
            if self.qos == 3:
                raise MalformedFromBroker("PUBLISH with QoS 3")
            if self.qos > 0:
                self.pid = r.u16()
            self.props = decode_properties(r, PUBLISH)
            self.payload = r.take(r.left())
        elif ptype in (PUBACK, PUBREC, PUBREL, PUBCOMP):
            self.pid = r.u16()
            self.reason = r.byte() if r.left() else 0
            if r.left():
                self.props = decode_properties(r, ptype)
        elif ptype in (SUBACK, UNSUBACK):
            self.pid = r.u16()
            self.props = decode_properties(r, ptype)
            self.reasons = list(r.take(r.left()))
        elif ptype in (DISCONNECT, AUTH):
            self.reason = r.byte() if r.left() else 0
            if r.left():
                self.props = decode_properties(r, ptype)
        elif ptype == PINGRESP:
            pass
        else:
            raise MalformedFromBroker(f"the broker sent a {name} packet: {body[:40].hex()}")
        if r.left():
            raise MalformedFromBroker(f"{name}: {r.left()} trailing bytes")

    @property
    def name(self) -> str:
        return TYPE_NAMES_5.get(self.type, f"type{self.type}")

    @property
    def qos(self) -> int:
        return (self.flags >> 1) & 3

    @property
    def dup(self) -> bool:
        return bool(self.flags & 0x08)

    @property
    def retain(self) -> bool:
        return bool(self.flags & 0x01)

    # the 3.1.1 names, so mqttraw.RawClient's helpers keep working
    @property
    def return_code(self) -> int:
        return self.reason

    @property
    def granted(self) -> list[int]:
        return self.reasons

    def __repr__(self) -> str:
        if self.type == PUBLISH:
            p = self.payload or b""
            return (f"PUBLISH(topic={self.topic!r}, qos={self.qos}, dup={self.dup}, "
                    f"retain={self.retain}, pid={self.pid}, props={self.props!r}, "
                    f"payload={p[:40]!r}{'...' if len(p) > 40 else ''} [{len(p)}B])")
        if self.type == CONNACK:
            return f"CONNACK(session_present={self.session_present}, reason={self.reason:#x}, props={self.props!r})"
        if self.type in (SUBACK, UNSUBACK):
            return f"{self.name}(pid={self.pid}, reasons={[hex(c) for c in self.reasons]}, props={self.props!r})"
        if self.type in (PUBACK, PUBREC, PUBREL, PUBCOMP):
            return f"{self.name}(pid={self.pid}, reason={self.reason:#x}, props={self.props!r})"
        if self.type in (DISCONNECT, AUTH):
            return f"{self.name}(reason={self.reason:#x}, props={self.props!r})"
        return f"{self.name}(flags={self.flags:#x}, body={self.body[:40].hex()})"


class Raw5Client(RawClient):
    """One TCP connection speaking hand-built MQTT 5."""

    def _try_parse(self):
        p = super()._try_parse()
        if p is None:
            return None
        return Packet5(p.type, p.flags, p.body)

    def expect(self, ptype: int, timeout: float = DEFAULT_TIMEOUT) -> Packet5:
        p = self.read_packet(timeout)
        if p is None:
            raise Closed(f"connection closed by broker while waiting for {TYPE_NAMES_5[ptype]}")
        assert p.type == ptype, f"expected {TYPE_NAMES_5[ptype]}, got {p!r}"
        return p

    def _expect_skipping_publishes(self, ptype: int, timeout: float) -> Packet5:
        deadline = time.monotonic() + timeout
        while True:
            p = self.read_packet(max(0.0, deadline - time.monotonic()))
            if p is None:
                raise Closed(f"connection closed by broker while waiting for {TYPE_NAMES_5[ptype]}"
                             f" (received: {self.received})")
            if p.type == PUBLISH:
                self.pending.append(p)
                continue
            assert p.type == ptype, f"expected {TYPE_NAMES_5[ptype]}, got {p!r}"
            return p

    # -- MQTT operations ---------------------------------------------------------------

    def connect(self, client_id: str | bytes, clean_start: bool = True, keepalive: int = 60,
                props=None, will: Will5 | None = None, timeout: float = DEFAULT_TIMEOUT,
                **kw) -> Packet5:
        """Sends an MQTT 5 CONNECT and returns the CONNACK (any reason code)."""
        self.send(connect_packet(client_id, clean_start, keepalive, props, will, **kw))
        return self.expect(CONNACK, timeout)

    def connect_ok(self, client_id: str | bytes, **kw) -> Packet5:
        ack = self.connect(client_id, **kw)
        assert ack.reason == 0, f"CONNACK {ack!r} for {client_id!r}"
        return ack

    def subscribe_ack(self, filters, qos: int = 1, props=None,
                      timeout: float = DEFAULT_TIMEOUT) -> Packet5:
        """filters: a filter string (with `qos`) or [(filter, options byte)]. Returns SUBACK."""
        if isinstance(filters, str):
            filters = [(filters, sub_options(qos))]
        pid = self.next_pid()
        self.send(subscribe_packet(pid, filters, props))
        ack = self._expect_skipping_publishes(SUBACK, timeout)
        assert ack.pid == pid, f"SUBACK for packet id {ack.pid}, expected {pid}"
        assert len(ack.reasons) == len(filters), f"{len(filters)} filters, SUBACK {ack!r}"
        return ack

    def subscribe(self, filters, qos: int = 1, props=None, timeout: float = DEFAULT_TIMEOUT) -> list[int]:
        return self.subscribe_ack(filters, qos, props, timeout).reasons

    def unsubscribe_ack(self, filters, props=None, timeout: float = DEFAULT_TIMEOUT) -> Packet5:
        if isinstance(filters, str):
            filters = [filters]
        pid = self.next_pid()
        self.send(unsubscribe_packet(pid, filters, props))
        ack = self._expect_skipping_publishes(UNSUBACK, timeout)
        assert ack.pid == pid, f"UNSUBACK for packet id {ack.pid}, expected {pid}"
        assert len(ack.reasons) == len(filters), f"{len(filters)} filters, UNSUBACK {ack!r}"
        return ack

    def unsubscribe(self, filters, props=None, timeout: float = DEFAULT_TIMEOUT) -> list[int]:
        return self.unsubscribe_ack(filters, props, timeout).reasons

    def publish(self, topic: str | bytes, payload: bytes = b"", qos: int = 0, retain: bool = False,
                props=None, timeout: float = DEFAULT_TIMEOUT) -> Packet5 | None:
        """Publishes; for QoS 1 waits for the matching PUBACK and returns it (any reason)."""
        pid = self.next_pid() if qos else None
        self.send(publish_packet(topic, payload, qos, retain, pid, props=props))
        if qos == 1:
            ack = self._expect_skipping_publishes(PUBACK, timeout)
            assert ack.pid == pid, f"PUBACK for {ack.pid}, expected {pid}"
            return ack
        return None

    def next_publish(self, timeout: float = DEFAULT_TIMEOUT) -> Packet5:
        if self.pending:
            return self.pending.pop(0)
        return self.expect(PUBLISH, timeout)

    def publishes_within(self, seconds: float) -> list[Packet5]:
        """Every PUBLISH that arrives within `seconds` (plus any already pending); fails on
        any other packet or a close."""
        got = list(self.pending)
        self.pending.clear()
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return got
            try:
                p = self.read_packet(left)
            except TimeoutError:
                return got
            if p is None:
                raise Closed(f"connection closed while collecting publishes (got {got})")
            assert p.type == PUBLISH, f"expected only PUBLISH, got {p!r}"
            got.append(p)

    def puback(self, pid: int, reason: int = 0) -> None:
        self.send(puback_packet(pid, reason))

    def ping(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.send(pingreq_packet())
        self._expect_skipping_publishes(PINGRESP, timeout)

    def disconnect(self, reason: int = 0, props=None) -> None:
        try:
            self.send(disconnect_packet(reason, props))
        except OSError:
            pass

    def server_disconnect(self, timeout: float = DEFAULT_TIMEOUT) -> Packet5 | None:
        """Waits for the broker to end the connection. Returns its DISCONNECT packet (the
        connection must then be closed by the broker too), or None if it closed without one.
        PUBLISHes on the way go to self.pending; any other packet fails. Raises
        AssertionError if the connection is still open at `timeout`."""
        deadline = time.monotonic() + timeout
        disconnect = None
        while True:
            left = deadline - time.monotonic()
            try:
                p = self.read_packet(max(0.0, left))
            except TimeoutError:
                what = f"after DISCONNECT {disconnect!r}" if disconnect else "(no DISCONNECT)"
                raise AssertionError(f"connection still open {timeout}s later {what}; "
                                     f"received: {self.received}") from None
            if p is None:
                return disconnect
            if disconnect is not None:
                raise AssertionError(f"packet after the broker's DISCONNECT: {p!r}")
            if p.type == PUBLISH:
                self.pending.append(p)
            elif p.type == DISCONNECT:
                disconnect = p
            else:
                raise AssertionError(f"expected DISCONNECT or close, got {p!r}")

    def expect_server_disconnect(self, reasons, timeout: float = DEFAULT_TIMEOUT) -> Packet5:
        """The broker sends DISCONNECT with one of `reasons` (int or collection) and closes."""
        if isinstance(reasons, int):
            reasons = {reasons}
        d = self.server_disconnect(timeout)
        want = ", ".join(f"{r:#x}" for r in sorted(reasons))
        assert d is not None, f"the broker closed the connection without DISCONNECT (expected " \
                              f"reason {want}); received: {self.received}"
        assert d.reason in reasons, f"DISCONNECT reason {d.reason:#x}, expected {want}: {d!r}"
        return d
