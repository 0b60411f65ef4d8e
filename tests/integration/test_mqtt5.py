"""MQTT 5 on the broker, black-box: CONNACK properties, sessions (Clean Start, Session Expiry
Interval), reason codes and server-sent DISCONNECTs, flow control (Receive Maximum, Maximum
Packet Size), topic aliases, message expiry, forwarded properties, retained messages,
shared subscriptions, lifecycle events and wills (with Will Delay Interval).

Clients: the hand-written MQTT 5 client (mqtt5raw.Raw5Client) for exact bytes and for what
real clients refuse to send, paho-mqtt as an MQTT 5 client (paho5.Paho5), and MQTT 3.1.1
clients (mqttraw.RawClient, helpers.Paho) for the cross-version cases.

"Item N" in a docstring is the numbered check in /work/shared/IOT-FACTS-MQTT5-SHADOW.md §5.
Most tests share one default broker (module scope; every test uses its own client ids and
topics); tests that need another config, or stop the broker, start their own."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid

import pytest

import mqttraw

from conftest import Broker
from helpers import Paho, uid
from mqtt5raw import (
    ADMINISTRATIVE_ACTION, ASSIGNED_CLIENT_IDENTIFIER, AUTHENTICATION_METHOD,
    BAD_AUTHENTICATION_METHOD, CLIENT_IDENTIFIER_NOT_VALID, CONTENT_TYPE, CORRELATION_DATA,
    KEEP_ALIVE_TIMEOUT, MAXIMUM_PACKET_SIZE, MAXIMUM_QOS, MESSAGE_EXPIRY_INTERVAL,
    NO_SUBSCRIPTION_EXISTED, NOT_AUTHORIZED, PACKET_TOO_LARGE, PAYLOAD_FORMAT_INDICATOR,
    PROPERTIES, PROTOCOL_ERROR, PUBLISH, QOS_NOT_SUPPORTED, REASON_STRING, RECEIVE_MAXIMUM,
    REQUEST_PROBLEM_INFORMATION, RESPONSE_TOPIC, RETAIN_AVAILABLE, SERVER_KEEP_ALIVE,
    SERVER_SHUTTING_DOWN, SESSION_EXPIRY_INTERVAL, SESSION_TAKEN_OVER, SHARED_SUBSCRIPTION_AVAILABLE,
    SUBACK, SUBSCRIPTION_IDENTIFIER, SUBSCRIPTION_IDENTIFIER_AVAILABLE,
    SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED, TOPIC_ALIAS, TOPIC_ALIAS_INVALID, TOPIC_ALIAS_MAXIMUM,
    TOPIC_FILTER_INVALID, USER_PROPERTY, WILDCARD_SUBSCRIPTION_AVAILABLE, WILL_DELAY_INTERVAL,
    Raw5Client, Will5, auth_packet, encode_varint, publish_packet, sub_options,
    subscribe_packet,
)
from mqttraw import PUBREC, RawClient
from paho5 import Paho5, PacketTypes, props

T = 10  # every wait is bounded by this
ARN = "arn:aws:iot:us-east-1:123456789012"
CONNECTED = "$aws/events/presence/connected/"
DISCONNECTED = "$aws/events/presence/disconnected/"
DEFAULT_MAX_PACKET = 149504
SEI_300 = [(SESSION_EXPIRY_INTERVAL, 300)]
Q1 = sub_options(1)


def pname(pid: int) -> str:
    return PROPERTIES[pid][0]


# -- fixtures --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def _module_broker(tmp_path_factory):
    holder = {"n": 0, "b": None}

    def get() -> Broker:
        b = holder["b"]
        if b is None or not b.alive():
            holder["n"] += 1
            b = Broker(tmp_path_factory.mktemp(f"mqtt5-shared{holder['n']}"), {})
            holder["b"] = b.start()
        return b

    yield get
    if holder["b"] is not None:
        holder["b"].stop()


@pytest.fixture
def b5(_module_broker, request):
    """The shared default broker (restarted if an earlier test killed it)."""
    b = _module_broker()
    request.node._brokers = [b]  # the failure report shows its log tail
    return b


@pytest.fixture
def c5():
    """Client factory; everything made here is closed at teardown.
    .raw(b) → Raw5Client, .raw3(b) → mqttraw.RawClient (3.1.1), .paho(b, ...) → connected
    Paho5, .paho_new(b, ...) → unconnected Paho5, .paho3(b, ...) → connected 3.1.1 Paho."""

    class C:
        def __init__(self):
            self.all = []

        def raw(self, b) -> Raw5Client:
            return self.track(Raw5Client(b.port, b.host))

        def raw3(self, b) -> RawClient:
            return self.track(RawClient(b.port, b.host))

        def paho_new(self, b, client_id=None, **kw) -> Paho5:
            return self.track(Paho5(b.port, client_id, host=b.host, **kw))

        def paho(self, b, client_id=None, **kw) -> Paho5:
            return self.paho_new(b, client_id, **kw).connect()

        def paho3(self, b, client_id=None, **kw) -> Paho:
            return self.track(Paho(b.port, client_id, host=b.host, **kw)).connect()

        def track(self, c):
            self.all.append(c)
            return c

    c = C()
    yield c
    for x in reversed(c.all):
        try:
            x.close()
        except Exception:
            pass


# -- helpers ---------------------------------------------------------------------------------

def recv(r: Raw5Client, n: int, timeout: float = T, ack: bool = True) -> list:
    """The next `n` PUBLISHes on a raw client, each QoS 1 one acknowledged."""
    got = []
    for _ in range(n):
        p = r.next_publish(timeout)
        if ack and p.qos == 1:
            r.puback(p.pid)
        got.append(p)
    return got


def closed_cleanly(r: Raw5Client) -> None:
    """Client DISCONNECT, then the broker closes the socket."""
    r.disconnect()
    assert r.closed_within(5), "broker did not close the connection after DISCONNECT"
    r.close()


def persistent_subscriber(c5, b, cid: str, filters, sei: int = 300) -> None:
    """MQTT 5: Clean Start 0 + Session Expiry `sei`, SUBSCRIBE QoS 1, DISCONNECT."""
    r = c5.raw(b)
    ack = r.connect_ok(cid, clean_start=False, props=[(SESSION_EXPIRY_INTERVAL, sei)])
    assert ack.session_present is False, ack
    if isinstance(filters, str):
        filters = [filters]
    assert r.subscribe([(f, Q1) for f in filters]) == [1] * len(filters)
    closed_cleanly(r)


def fence(pub, topic: str) -> None:
    pub.publish(topic, b"fence", 1)


def no_reason_string_or_user_properties(p) -> None:
    assert REASON_STRING not in p.props and not p.props.user_properties, \
        f"Request Problem Information = 0, yet {p!r} carries a reason string / user properties"


# ============================================================================================
# CONNACK (items 1, 2, 14)
# ============================================================================================

def test_connack_properties_defaults(b5, c5):
    """Item 1: an MQTT 5 CONNECT gets CONNACK 0x00 with IoT Core's capability properties."""
    r = c5.raw(b5)
    ack = r.connect(uid("connack"), keepalive=60)
    assert ack.reason == 0 and ack.session_present is False, ack
    expected = {
        MAXIMUM_QOS: 1, RETAIN_AVAILABLE: 1, WILDCARD_SUBSCRIPTION_AVAILABLE: 1,
        SUBSCRIPTION_IDENTIFIER_AVAILABLE: 0, SHARED_SUBSCRIPTION_AVAILABLE: 1,
        TOPIC_ALIAS_MAXIMUM: 8, MAXIMUM_PACKET_SIZE: DEFAULT_MAX_PACKET, RECEIVE_MAXIMUM: 100,
    }
    got = {pname(k): ack.props.get(k) for k in expected}
    assert got == {pname(k): v for k, v in expected.items()}, f"CONNACK properties: {ack.props!r}"
    assert SERVER_KEEP_ALIVE not in ack.props, f"keep-alive 60 was not changed: {ack.props!r}"
    assert ASSIGNED_CLIENT_IDENTIFIER not in ack.props, ack
    assert ack.props.get(SESSION_EXPIRY_INTERVAL) in (None, 0), ack
    r.ping()


def test_connack_reflects_limits_config(broker, c5):
    """Items 1, 2, 4, 14: Topic Alias Maximum, Maximum Packet Size, Receive Maximum come from
    [limits]; Server Keep Alive is sent when the keep-alive was changed (keepalive_min 30 s,
    keepalive_max 1200 s); Session Expiry Interval is capped at `session_expiry`; an alias
    above the advertised maximum is refused (DISCONNECT 0x94)."""
    b = broker(topic_alias_maximum=3, max_packet_bytes=5000, max_payload_bytes=4000,
               max_inflight=7, keepalive_min="30s", session_expiry="2m")
    cases = [  # (keep-alive, session expiry or None) -> (Server Keep Alive, CONNACK SEI)
        ((10, None), (30, None)),
        ((0, None), (1200, None)),
        ((45, None), (None, None)),
        ((1300, None), (1200, None)),
        ((60, 0xFFFFFFFF), (None, 120)),
        ((60, 300), (None, 120)),
        ((60, 60), (None, "60 or absent")),
    ]
    for (ka, sei), (want_ka, want_sei) in cases:
        r = c5.raw(b)
        p = [(SESSION_EXPIRY_INTERVAL, sei)] if sei is not None else None
        ack = r.connect(uid("cfg"), keepalive=ka, props=p)
        what = f"keep-alive {ka}, session expiry {sei}: {ack!r}"
        assert ack.reason == 0, what
        assert ack.props.get(TOPIC_ALIAS_MAXIMUM) == 3, what
        assert ack.props.get(MAXIMUM_PACKET_SIZE) == 5000, what
        assert ack.props.get(RECEIVE_MAXIMUM) == 7, what
        assert ack.props.get(SERVER_KEEP_ALIVE) == want_ka, what
        if want_sei == "60 or absent":
            assert ack.props.get(SESSION_EXPIRY_INTERVAL) in (None, 60), what
        else:
            assert ack.props.get(SESSION_EXPIRY_INTERVAL) == want_sei, what
        r.close()

    t = f"alias/{uid('t')}"
    sub = c5.paho(b)
    sub.subscribe(t, 1)
    r = c5.raw(b)
    r.connect_ok(uid("alias3"))
    assert r.publish(t, b"three", 1, props=[(TOPIC_ALIAS, 3)]).reason == 0
    assert sub.expect(T, topic=t).payload == b"three"
    r.send(publish_packet(t, b"four", 1, pid=9, props=[(TOPIC_ALIAS, 4)]))
    r.expect_server_disconnect(TOPIC_ALIAS_INVALID, 5)
    assert sub.drain(0.3) == []


def test_session_expiry_clamped_to_account_maximum(b5, c5):
    """Item 2: Session Expiry 0xFFFFFFFF → CONNACK Session Expiry 3600 (session_expiry 1h),
    session_present 0 on Clean Start 1, and on a first Clean Start 0."""
    for clean in (True, False):
        r = c5.raw(b5)
        ack = r.connect(uid("sei"), clean_start=clean, props=[(SESSION_EXPIRY_INTERVAL, 0xFFFFFFFF)])
        assert ack.reason == 0, ack
        assert ack.session_present is False, ack
        assert ack.props.get(SESSION_EXPIRY_INTERVAL) == 3600, ack
        r.ping()
        r.close()


def test_assigned_client_identifier(b5, c5):
    """Item 14: an empty client id gets Assigned Client Identifier "$GEN/<uuid>" (unique);
    sending such an id back (or any id starting with "$") is CONNACK 0x85."""
    r1, r2 = c5.raw(b5), c5.raw(b5)
    a1, a2 = r1.connect(""), r2.connect("")
    assert a1.reason == 0 and a2.reason == 0, (a1, a2)
    ids = [a.props.get(ASSIGNED_CLIENT_IDENTIFIER) for a in (a1, a2)]
    for i in ids:
        assert i is not None and re.fullmatch(
            r"\$GEN/[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", i), \
            f"Assigned Client Identifier {i!r} is not $GEN/<uuid>: {a1!r}"
    assert ids[0] != ids[1], ids
    t = f"gen/{uid('t')}"
    assert r1.subscribe(t) == [1]
    r1.publish(t, b"mine", 1)
    assert recv(r1, 1)[0].payload == b"mine"

    for bad in (ids[0], "$own-id", f"$aws/{uid('x')}"):
        r = c5.raw(b5)
        ack = r.connect(bad)
        assert ack.reason == CLIENT_IDENTIFIER_NOT_VALID, f"client id {bad!r}: {ack!r}"
        assert r.closed_within(5), f"connection still open after CONNACK 0x85 for {bad!r}"
    r1.ping()  # the refused CONNECT with its id did not take it over
    r2.ping()


# ============================================================================================
# Sessions (items 2, 3)
# ============================================================================================

def test_resume_delivers_queued_qos1_not_qos0(b5, c5):
    """Item 3: Clean Start 0 + Session Expiry 300: reconnect → session_present 1, the
    subscription is intact, QoS 1 messages published while offline are delivered in order,
    QoS 0 ones are not."""
    cid = uid("resume")
    t = f"resume/{cid}"
    persistent_subscriber(c5, b5, cid, t)
    pub = c5.paho(b5)
    for i in range(5):
        pub.publish(t, f"m{i}".encode(), 1)
    pub.publish(t, b"qos0", 0)
    r = c5.raw(b5)
    ack = r.connect_ok(cid, clean_start=False, props=SEI_300)
    assert ack.session_present is True, ack
    got = recv(r, 5)
    assert [p.payload for p in got] == [f"m{i}".encode() for i in range(5)], got
    assert all(p.qos == 1 and p.topic == t for p in got), got
    extra = r.publishes_within(0.7)
    assert extra == [], f"QoS 0 message (or a duplicate) queued for an offline session: {extra}"
    pub.publish(t, b"live", 1)
    assert recv(r, 1)[0].payload == b"live", "subscription not intact after resume"


def test_clean_start_1_discards_session(b5, c5):
    """Items 2, 3: Clean Start 1 → session_present 0 even though a session exists; its
    queue and subscriptions are gone."""
    cid = uid("clean")
    t = f"clean/{cid}"
    persistent_subscriber(c5, b5, cid, t)
    pub = c5.paho(b5)
    pub.publish(t, b"queued", 1)
    r = c5.raw(b5)
    ack = r.connect_ok(cid, clean_start=True, props=SEI_300)
    assert ack.session_present is False, ack
    pub.publish(t, b"after", 1)
    got = r.publishes_within(0.7)
    assert got == [], f"a Clean Start 1 connection got the old session's messages: {got}"


def test_clean_start_1_with_session_expiry_persists_new_session(b5, c5):
    """Item 3 (MQTT 5 §3.1.2.4/§3.1.2.11): Clean Start 1 + Session Expiry > 0 starts a new
    session that outlives the connection — how the CRT's REJOIN_POST_SUCCESS works."""
    cid = uid("cs1sei")
    t = f"cs1/{cid}"
    r = c5.raw(b5)
    assert r.connect_ok(cid, clean_start=True, props=SEI_300).session_present is False
    assert r.subscribe(t) == [1]
    closed_cleanly(r)
    c5.paho(b5).publish(t, b"while-away", 1)
    r2 = c5.raw(b5)
    ack = r2.connect_ok(cid, clean_start=False, props=SEI_300)
    assert ack.session_present is True, ack
    assert recv(r2, 1)[0].payload == b"while-away"


def test_no_session_expiry_ends_session_at_disconnect(b5, c5):
    """Items 2, 3: Clean Start 0 without Session Expiry Interval (= 0): the session ends at
    disconnect."""
    cid = uid("sei0")
    t = f"sei0/{cid}"
    r = c5.raw(b5)
    r.connect_ok(cid, clean_start=False)
    assert r.subscribe(t) == [1]
    closed_cleanly(r)
    pub = c5.paho(b5)
    pub.publish(t, b"lost", 1)
    r2 = c5.raw(b5)
    ack = r2.connect_ok(cid, clean_start=False)
    assert ack.session_present is False, ack
    pub.publish(t, b"after", 1)
    assert r2.publishes_within(0.7) == []


def test_session_expiry_interval_elapses(b5, c5):
    """Item 3: a session with Session Expiry 2 is present 0.5 s after disconnect, gone 3 s
    after."""
    cid = uid("sei2")
    t = f"sei2/{cid}"
    persistent_subscriber(c5, b5, cid, t, sei=2)
    time.sleep(0.5)
    r = c5.raw(b5)
    assert r.connect_ok(cid, clean_start=False, props=[(SESSION_EXPIRY_INTERVAL, 2)]).session_present is True
    closed_cleanly(r)
    time.sleep(3.0)
    r2 = c5.raw(b5)
    ack = r2.connect_ok(cid, clean_start=False, props=[(SESSION_EXPIRY_INTERVAL, 2)])
    assert ack.session_present is False, f"session still present 3 s after a 2 s expiry: {ack!r}"


def test_session_expiry_capped_by_config(broker, c5):
    """Item 2: the session lasts min(Session Expiry Interval, session_expiry): 3600
    requested, session_expiry 2s → CONNACK says 2 and the session is gone 3 s later."""
    b = broker(session_expiry="2s")
    cid = uid("cap")
    r = c5.raw(b)
    ack = r.connect_ok(cid, clean_start=False, props=[(SESSION_EXPIRY_INTERVAL, 3600)])
    assert ack.props.get(SESSION_EXPIRY_INTERVAL) == 2, ack
    assert r.subscribe(f"cap/{cid}") == [1]
    closed_cleanly(r)
    time.sleep(3.0)
    r2 = c5.raw(b)
    ack = r2.connect_ok(cid, clean_start=False, props=[(SESSION_EXPIRY_INTERVAL, 3600)])
    assert ack.session_present is False, ack


def test_disconnect_session_expiry_zero_ends_session(b5, c5):
    """Item 3: DISCONNECT with Session Expiry 0 ends a session that had 300."""
    cid = uid("dsei0")
    r = c5.raw(b5)
    r.connect_ok(cid, clean_start=False, props=SEI_300)
    assert r.subscribe(f"d/{cid}") == [1]
    r.disconnect(props=[(SESSION_EXPIRY_INTERVAL, 0)])
    assert r.closed_within(5)
    r2 = c5.raw(b5)
    ack = r2.connect_ok(cid, clean_start=False, props=SEI_300)
    assert ack.session_present is False, ack


def test_disconnect_session_expiry_replaces_connect_value(b5, c5):
    """Item 3: the DISCONNECT's Session Expiry Interval replaces the CONNECT's: 300 → 1
    ends the session ~1 s later; 1 → 300 keeps it past 1 s."""
    short, long_ = uid("dshort"), uid("dlong")
    r = c5.raw(b5)
    r.connect_ok(short, clean_start=False, props=SEI_300)
    r.subscribe(f"d/{short}")
    r.disconnect(props=[(SESSION_EXPIRY_INTERVAL, 1)])
    assert r.closed_within(5)
    r = c5.raw(b5)
    r.connect_ok(long_, clean_start=False, props=[(SESSION_EXPIRY_INTERVAL, 1)])
    r.subscribe(f"d/{long_}")
    r.disconnect(props=SEI_300)
    assert r.closed_within(5)
    time.sleep(2.5)
    a = c5.raw(b5).connect_ok(short, clean_start=False, props=SEI_300)
    assert a.session_present is False, f"DISCONNECT set expiry 1 s, session still there after 2.5 s: {a!r}"
    a = c5.raw(b5).connect_ok(long_, clean_start=False, props=SEI_300)
    assert a.session_present is True, f"DISCONNECT raised expiry to 300 s, session gone after 2.5 s: {a!r}"


def test_disconnect_raising_session_expiry_from_zero_is_protocol_error(b5, c5):
    """Item 3 (MQTT 5 §3.14.2.2.2): Session Expiry 0 at CONNECT, >0 on DISCONNECT is a
    Protocol Error: the broker closes (DISCONNECT 0x82 if any) and the session ends."""
    cid = uid("raise")
    r = c5.raw(b5)
    r.connect_ok(cid, clean_start=False)
    r.subscribe(f"raise/{cid}")
    r.disconnect(props=SEI_300)
    d = r.server_disconnect(5)
    assert d is None or d.reason == PROTOCOL_ERROR, d
    r2 = c5.raw(b5)
    ack = r2.connect_ok(cid, clean_start=False, props=SEI_300)
    assert ack.session_present is False, ack


@pytest.mark.parametrize("direction", ["mqtt5-then-311", "311-then-mqtt5"])
def test_sessions_not_resumed_across_versions(b5, c5, direction):
    """Item 3: an MQTT 3 persistent session can't be resumed as an MQTT 5 session, and vice
    versa: session_present 0 and no queued message."""
    cid = uid("xver")
    t = f"xver/{cid}"
    if direction == "mqtt5-then-311":
        persistent_subscriber(c5, b5, cid, t)
    else:
        r3 = c5.raw3(b5)
        assert r3.connect_ok(cid, clean_session=False).session_present is False
        assert r3.subscribe(t, 1) == [1]
        r3.disconnect()
        assert r3.closed_within(5)
    pub = c5.paho(b5)
    pub.publish(t, b"queued", 1)
    if direction == "mqtt5-then-311":
        r = c5.raw3(b5)
        ack = r.connect_ok(cid, clean_session=False)
    else:
        r = c5.raw(b5)
        ack = r.connect_ok(cid, clean_start=False, props=SEI_300)
    assert ack.session_present is False, f"{direction}: session resumed across versions: {ack!r}"
    got = []
    try:
        got.append(r.read_packet(0.7))
    except TimeoutError:
        pass
    assert got == [], f"{direction}: queued message delivered across versions: {got}"


# ============================================================================================
# Reason codes: policies (item 11)
# ============================================================================================

POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{ARN}:client/*"},
        {"Effect": "Deny", "Action": "iot:Connect", "Resource": f"{ARN}:client/blocked-*"},
        {"Effect": "Allow", "Action": "iot:Publish", "Resource": [f"{ARN}:topic/ok/*", f"{ARN}:topic/alive/*"]},
        {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": f"{ARN}:topicfilter/*"},
        {"Effect": "Deny", "Action": "iot:Subscribe", "Resource": f"{ARN}:topicfilter/nosub/*"},
        {"Effect": "Allow", "Action": "iot:Receive", "Resource": f"{ARN}:topic/*"},
    ],
}


def policy_broker(broker, document: dict = POLICY):
    """A broker whose anonymous clients have only `document`."""
    return broker(anonymous=["mqtt5-test"],
                  extra_toml=f"[[policies]]\nname = \"mqtt5-test\"\ndocument = '''{json.dumps(document)}'''\n")


@pytest.mark.parametrize("rpi", [None, 0], ids=["default", "request-problem-info-0"])
def test_denied_publish_gets_puback_0x87(broker, c5, rpi):
    """Item 11: a PUBLISH the policy denies gets PUBACK 0x87 (not routed); the connection
    stays open. With Request Problem Information 0 the PUBACK has no Reason String."""
    b = policy_broker(broker)
    base = uid("pol")
    mon = c5.paho(b)
    assert mon.subscribe([(f"ok/{base}/#", _so(1)), (f"no/{base}/#", _so(1))]) == [1, 1]
    r = c5.raw(b)
    r.connect_ok(uid("dev"), props=[(REQUEST_PROBLEM_INFORMATION, 0)] if rpi == 0 else None)
    denied = r.publish(f"no/{base}/x", b"denied", 1)
    assert denied.reason == NOT_AUTHORIZED, denied
    if rpi == 0:
        no_reason_string_or_user_properties(denied)
    allowed = r.publish(f"ok/{base}/x", b"allowed", 1)
    assert allowed.reason == 0, allowed
    r.ping()
    got = mon.collect_until(f"ok/{base}/x", T)
    assert [m.payload for m in got] == [b"allowed"], f"denied PUBLISH was routed: {got}"


def _so(qos, **kw):
    from paho.mqtt.subscribeoptions import SubscribeOptions
    return SubscribeOptions(qos=qos, **kw)


@pytest.mark.parametrize("rpi", [None, 0], ids=["default", "request-problem-info-0"])
def test_denied_subscribe_gets_suback_0x87(broker, c5, rpi):
    """Item 11: a filter the policy denies gets SUBACK 0x87, the others are granted and
    work; the connection stays open. With Request Problem Information 0: no Reason String."""
    b = policy_broker(broker)
    base = uid("pols")
    r = c5.raw(b)
    r.connect_ok(uid("dev"), props=[(REQUEST_PROBLEM_INFORMATION, 0)] if rpi == 0 else None)
    ack = r.subscribe_ack([(f"nosub/{base}", Q1), (f"ok/{base}", Q1)])
    assert ack.reasons == [NOT_AUTHORIZED, 1], ack
    if rpi == 0:
        no_reason_string_or_user_properties(ack)
        un = r.unsubscribe_ack([f"ok/{base}", f"never/{base}"])
        no_reason_string_or_user_properties(un)
        r.subscribe(f"ok/{base}")
    r.ping()
    r.publish(f"ok/{base}", b"granted", 1)
    assert recv(r, 1)[0].payload == b"granted"


def test_denied_connect_gets_connack_0x87(broker, c5):
    """Item 11: CONNECT denied by policy (client id, or a will topic the client may not
    publish to) → CONNACK 0x87."""
    b = policy_broker(broker)
    r = c5.raw(b)
    ack = r.connect(uid("blocked"))
    assert ack.reason == NOT_AUTHORIZED, ack
    assert r.closed_within(5)
    r = c5.raw(b)
    ack = r.connect(uid("dev"), will=Will5(f"no/{uid('w')}", b"gone"))
    assert ack.reason == NOT_AUTHORIZED, f"will on a denied topic: {ack!r}"
    r = c5.raw(b)
    assert r.connect(uid("dev"), will=Will5(f"ok/{uid('w')}", b"gone")).reason == 0


# ============================================================================================
# Reason codes: SUBACK / UNSUBACK (items 8, 11)
# ============================================================================================

@pytest.mark.parametrize("bad", ["a/#/b", "a/b#", "a+/c"])
def test_invalid_topic_filter_gets_suback_0x8f(b5, c5, bad):
    """SUBACK 0x8F (Topic Filter invalid) for an invalid filter, the valid one in the same
    SUBSCRIBE granted; the connection stays open (IoT Core's SUBACK table)."""
    r = c5.raw(b5)
    r.connect_ok(uid("badf"))
    t = f"okf/{uid('t')}"
    ack = r.subscribe_ack([(bad, Q1), (t, Q1)])
    assert ack.reasons == [TOPIC_FILTER_INVALID, 1], ack
    r.ping()
    r.publish(t, b"x", 1)
    assert recv(r, 1)[0].payload == b"x"


def test_subscribe_qos2_granted_qos1(b5, c5):
    """Item 10 (MQTT-3.2.2-10): an MQTT 5 SUBSCRIBE asking QoS 2 is granted QoS 1 (SUBACK
    0x01), and deliveries come at QoS 1."""
    r = c5.raw(b5)
    r.connect_ok(uid("subq2"))
    t = f"subq2/{uid('t')}"
    assert r.subscribe([(t, sub_options(2))]) == [1]
    c5.paho(b5).publish(t, b"q1", 1)
    p = recv(r, 1)[0]
    assert (p.payload, p.qos) == (b"q1", 1), p


def test_unsuback_reason_codes(b5, c5):
    """UNSUBACK: 0x00 per removed filter, 0x11 (No subscription existed) for the others."""
    r = c5.raw(b5)
    r.connect_ok(uid("unsub"))
    a, b_ = f"u/{uid('a')}", f"u/{uid('b')}"
    assert r.subscribe(a) == [1]
    assert r.unsubscribe([a, b_]) == [0, NO_SUBSCRIPTION_EXISTED]
    assert r.unsubscribe([a]) == [NO_SUBSCRIPTION_EXISTED]
    c5.paho(b5).publish(a, b"gone", 1)
    assert r.publishes_within(0.5) == [], "still subscribed after UNSUBACK 0x00"


# ============================================================================================
# Server-sent DISCONNECT (items 4, 5, 10, 12, 14)
# ============================================================================================

@pytest.mark.parametrize("second", ["mqtt5", "mqtt311"])
def test_takeover_sends_disconnect_0x8e(b5, c5, second):
    """Item 14: a second CONNECT with the same client id → the first connection gets
    DISCONNECT 0x8E (Session taken over) and is closed; the second works."""
    cid = uid("take")
    first = c5.raw(b5)
    first.connect_ok(cid)
    first.ping()
    if second == "mqtt5":
        new = c5.raw(b5)
        new.connect_ok(cid)
    else:
        new = c5.raw3(b5)
        new.connect_ok(cid)
    first.expect_server_disconnect(SESSION_TAKEN_OVER, 5)
    new.ping()


def test_keepalive_timeout_sends_disconnect_0x8d(b5, c5):
    """Item 14: no packet for 1.5 × keep-alive → DISCONNECT 0x8D (keep-alive 1 s with
    keepalive_min 1s → ~1.5 s)."""
    r = c5.raw(b5)
    ack = r.connect_ok(uid("ka"), keepalive=1)
    assert SERVER_KEEP_ALIVE not in ack.props, f"keep-alive 1 is allowed here: {ack!r}"
    t0 = time.monotonic()
    r.expect_server_disconnect(KEEP_ALIVE_TIMEOUT, 6)
    dt = time.monotonic() - t0
    assert 1.2 <= dt <= 3.5, f"DISCONNECT 0x8D after {dt:.2f}s, expected ~1.5 s"


@pytest.mark.parametrize("alias", [0, 9])
def test_topic_alias_out_of_range_sends_disconnect_0x94(b5, c5, alias):
    """Item 4: Topic Alias 0, or above the advertised maximum 8 → DISCONNECT 0x94; the
    PUBLISH is not routed."""
    t = f"alias/{uid('t')}"
    sub = c5.paho(b5)
    sub.subscribe(t, 1)
    r = c5.raw(b5)
    r.connect_ok(uid("alias"))
    r.send(publish_packet(t, b"x", 1, pid=3, props=[(TOPIC_ALIAS, alias)]))
    r.expect_server_disconnect(TOPIC_ALIAS_INVALID, 5)
    fence(sub, t)
    got = sub.collect_until(t, T)
    assert [m.payload for m in got] == [b"fence"], got


def test_packet_over_maximum_packet_size_sends_disconnect_0x95(broker, c5):
    """Item 12: a packet larger than the advertised Maximum Packet Size (max_packet_bytes
    2000; the payload limit is much larger) → DISCONNECT 0x95, not routed."""
    b = broker(max_packet_bytes=2000)
    t = f"big/{uid('t')}"
    sub = c5.paho(b)
    sub.subscribe(t, 1)
    r = c5.raw(b)
    ack = r.connect_ok(uid("big"))
    assert ack.props.get(MAXIMUM_PACKET_SIZE) == 2000, ack
    assert r.publish(t, b"s" * 1800, 1).reason == 0
    r.send(publish_packet(t, b"L" * 2500, 1, pid=77))
    r.expect_server_disconnect(PACKET_TOO_LARGE, 5)
    assert len(sub.expect(T, topic=t).payload) == 1800
    fence(sub, t)
    m = sub.expect(T, topic=t)
    assert m.payload == b"fence", f"the oversized packet was routed ({len(m.payload)} bytes)"


def test_qos2_publish_sends_disconnect_0x9b(b5, c5):
    """Item 10: a QoS 2 PUBLISH → DISCONNECT 0x9B (QoS not supported), no PUBREC."""
    t = f"q2/{uid('t')}"
    sub = c5.paho(b5)
    sub.subscribe(t, 1)
    r = c5.raw(b5)
    r.connect_ok(uid("q2"))
    r.send(publish_packet(t, b"x", qos=2, pid=5))
    r.expect_server_disconnect(QOS_NOT_SUPPORTED, 5)
    assert PUBREC not in [p.type for p in r.received], r.received
    fence(sub, t)
    assert [m.payload for m in sub.collect_until(t, T)] == [b"fence"]


def test_will_qos2_gets_connack_0x9b(b5, c5):
    """Item 10: a Will with QoS 2 → CONNACK 0x9B."""
    r = c5.raw(b5)
    ack = r.connect(uid("wq2"), will=Will5(f"w/{uid('t')}", b"x", qos=2))
    assert ack.reason == QOS_NOT_SUPPORTED, ack
    assert r.closed_within(5)


def test_subscription_identifier_sends_disconnect_0xa1(b5, c5):
    """Item 5: SUBSCRIBE with a Subscription Identifier → DISCONNECT 0xA1, no SUBACK."""
    r = c5.raw(b5)
    r.connect_ok(uid("subid"))
    r.send(subscribe_packet(4, [(f"sid/{uid('t')}", Q1)], props=[(SUBSCRIPTION_IDENTIFIER, 7)]))
    r.expect_server_disconnect(SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED, 5)
    assert SUBACK not in [p.type for p in r.received], r.received


def test_auth_packet_sends_disconnect(b5, c5):
    """IoT Core does not support AUTH: an AUTH packet → DISCONNECT 0x82 or 0x8C."""
    r = c5.raw(b5)
    r.connect_ok(uid("auth"))
    r.send(auth_packet(0x18, [(AUTHENTICATION_METHOD, "SCRAM-SHA-1")]))
    r.expect_server_disconnect({PROTOCOL_ERROR, BAD_AUTHENTICATION_METHOD}, 5)


def test_connect_with_authentication_method_gets_connack_0x8c(b5, c5):
    """No enhanced authentication: CONNECT with Authentication Method → CONNACK 0x8C."""
    r = c5.raw(b5)
    ack = r.connect(uid("authm"), props=[(AUTHENTICATION_METHOD, "SCRAM-SHA-1")])
    assert ack.reason == BAD_AUTHENTICATION_METHOD, ack
    assert r.closed_within(5)


def test_shutdown_sends_disconnect_0x8b(broker, c5):
    """SIGTERM → every MQTT 5 client gets DISCONNECT 0x8B (Server shutting down)."""
    b = broker()
    rs = [c5.raw(b) for _ in range(2)]
    for r in rs:
        r.connect_ok(uid("shut"))
        r.ping()
    b.proc.send_signal(15)
    for r in rs:
        r.expect_server_disconnect(SERVER_SHUTTING_DOWN, 8)
    assert b.proc.wait(10) is not None


ADMIN_KEY, ADMIN_SECRET = "AKIAADMIN5", "admin5secret"
ADMIN_TOML = f'\n[admin]\naccess_key_id = "{ADMIN_KEY}"\nsecret_access_key = "{ADMIN_SECRET}"\n'


def test_delete_connection_sends_disconnect_0x98(broker, c5):
    """DeleteConnection (iot-data `DELETE /connections/<clientId>`) → the client gets
    DISCONNECT 0x98 (Administrative action); the disconnected event says
    API_INITIATED_DISCONNECT."""
    boto3 = pytest.importorskip("boto3")
    from botocore.config import Config

    b = broker(listeners={"http": "127.0.0.1:0"}, extra_toml=ADMIN_TOML)
    cid = uid("delconn")
    obs = c5.paho(b)
    obs.subscribe(DISCONNECTED + cid, 1)
    r = c5.raw(b)
    r.connect_ok(cid)
    r.ping()
    data = boto3.client("iot-data", endpoint_url=f"http://127.0.0.1:{b.http_port}",
                        region_name="us-east-1", aws_access_key_id=ADMIN_KEY,
                        aws_secret_access_key=ADMIN_SECRET,
                        config=Config(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=T))
    data.delete_connection(clientId=cid)
    r.expect_server_disconnect(ADMINISTRATIVE_ACTION, 5)
    ev = obs.expect(T, topic=DISCONNECTED + cid)
    ev = json.loads(ev.payload)
    assert ev["disconnectReason"] == "API_INITIATED_DISCONNECT", ev


# ============================================================================================
# Flow control (items 12, 13)
# ============================================================================================

def test_client_receive_maximum_limits_unacknowledged_deliveries(b5, c5):
    """Item 13: a client with Receive Maximum 2 never has more than 2 unacknowledged QoS 1
    deliveries outstanding; each PUBACK releases the next one."""
    t = f"rm/{uid('t')}"
    r = c5.raw(b5)
    r.connect_ok(uid("rm"), props=[(RECEIVE_MAXIMUM, 2)])
    assert r.subscribe(t) == [1]
    pub = c5.paho(b5)
    for i in range(5):
        pub.publish(t, f"m{i}".encode(), 1)
    first = r.publishes_within(1.0)
    assert [p.payload for p in first] == [b"m0", b"m1"], \
        f"Receive Maximum 2, but got {len(first)} unacknowledged deliveries: {first}"
    r.puback(first[0].pid)
    nxt = r.publishes_within(0.7)
    assert [p.payload for p in nxt] == [b"m2"], nxt
    r.puback(first[1].pid)
    r.puback(nxt[0].pid)
    rest = r.publishes_within(0.7)
    assert [p.payload for p in rest] == [b"m3", b"m4"], rest
    for p in rest:
        r.puback(p.pid)
    assert r.publishes_within(0.3) == []


def test_client_maximum_packet_size_respected(b5, c5):
    """Item 12: the broker never sends a packet larger than the client's Maximum Packet
    Size (200): a 1000-byte message, or a small one with large user properties, is dropped
    for that client; small ones are delivered (and other subscribers get everything)."""
    t = f"mps/{uid('t')}"
    r = c5.raw(b5)
    r.connect_ok(uid("mps"), props=[(MAXIMUM_PACKET_SIZE, 200)])
    assert r.subscribe(t) == [1]
    other = c5.paho(b5)
    other.subscribe(t, 1)
    pub = c5.paho(b5)
    pub.publish(t, b"B" * 1000, 1)
    pub.publish(t, b"small-1", 1)
    pub.publish(t, b"p", 1, properties=props(PacketTypes.PUBLISH, UserProperty=[("k", "v" * 300)]))
    pub.publish(t, b"small-2", 1)
    got = recv(r, 2)
    assert [p.payload for p in got] == [b"small-1", b"small-2"], got
    assert r.publishes_within(0.5) == []
    for p in r.received:
        size = 1 + len(encode_varint(len(p.body))) + len(p.body)
        assert size <= 200, f"sent a {size}-byte packet over the client's maximum 200: {p!r}"
    others = [other.expect(T, topic=t).payload for _ in range(4)]
    assert others == [b"B" * 1000, b"small-1", b"p", b"small-2"], others


# ============================================================================================
# Topic aliases (item 4)
# ============================================================================================

def test_topic_alias_resolves_and_broker_sends_none(b5, c5):
    """Item 4: a registered alias (1..8) resolves in later PUBLISHes with an empty topic and
    can be remapped; subscribers get full topic names and never a Topic Alias, even when
    they allow aliases (Topic Alias Maximum 10)."""
    base = f"ta/{uid('b')}"
    sub = c5.raw(b5)
    sub.connect_ok(uid("tasub"), props=[(TOPIC_ALIAS_MAXIMUM, 10)])
    assert sub.subscribe(f"{base}/#") == [1]
    pub = c5.raw(b5)
    pub.connect_ok(uid("tapub"))
    steps = [(f"{base}/a", 1, 1), ("", 1, 1), (f"{base}/b", 8, 1), ("", 8, 1),
             (f"{base}/c", 1, 1), ("", 1, 1), ("", 8, 0)]
    for i, (topic, alias, qos) in enumerate(steps):
        ack = pub.publish(topic, f"{i}".encode(), qos, props=[(TOPIC_ALIAS, alias)])
        if qos:
            assert ack.reason == 0, (topic, alias, ack)
    pub.ping()
    got = recv(sub, len(steps))
    want = [f"{base}/a", f"{base}/a", f"{base}/b", f"{base}/b", f"{base}/c", f"{base}/c", f"{base}/b"]
    assert [(p.topic, p.payload) for p in got] == [(w, f"{i}".encode()) for i, w in enumerate(want)], got
    assert all(TOPIC_ALIAS not in p.props for p in got), got


def test_topic_alias_forgotten_after_reconnect(b5, c5):
    """Item 4: aliases do not survive a reconnect: an empty topic with alias 1 on the new
    connection → DISCONNECT 0x94 (0x82 accepted), not routed."""
    cid = uid("taold")
    t = f"ta/{uid('t')}"
    sub = c5.paho(b5)
    sub.subscribe(t, 1)
    r = c5.raw(b5)
    r.connect_ok(cid)
    assert r.publish(t, b"set", 1, props=[(TOPIC_ALIAS, 1)]).reason == 0
    closed_cleanly(r)
    assert sub.expect(T, topic=t).payload == b"set"
    r2 = c5.raw(b5)
    r2.connect_ok(cid)
    r2.send(publish_packet("", b"stale", 1, pid=2, props=[(TOPIC_ALIAS, 1)]))
    r2.expect_server_disconnect({TOPIC_ALIAS_INVALID, PROTOCOL_ERROR}, 5)
    fence(sub, t)
    assert [m.payload for m in sub.collect_until(t, T)] == [b"fence"]


# ============================================================================================
# Message expiry (items 6, 9)
# ============================================================================================

def test_message_expiry_forwarded_as_remaining_time(b5, c5):
    """Item 6: Message Expiry Interval 30 is forwarded as the time left: ~30 live, 26–28
    after ~2.2 s queued for an offline session; a message without one gets none."""
    cid = uid("mei")
    t = f"mei/{cid}"
    persistent_subscriber(c5, b5, cid, t)
    live = c5.raw(b5)
    live.connect_ok(uid("meilive"))
    assert live.subscribe(t) == [1]
    pub = c5.paho(b5)
    pub.publish(t, b"expiring", 1, properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=30))
    pub.publish(t, b"forever", 1)
    lp = recv(live, 2)
    assert lp[0].props.get(MESSAGE_EXPIRY_INTERVAL) in (29, 30), lp[0]
    assert MESSAGE_EXPIRY_INTERVAL not in lp[1].props, lp[1]
    time.sleep(2.2)
    r = c5.raw(b5)
    assert r.connect_ok(cid, clean_start=False, props=SEI_300).session_present is True
    got = recv(r, 2)
    assert [p.payload for p in got] == [b"expiring", b"forever"], got
    mei = got[0].props.get(MESSAGE_EXPIRY_INTERVAL)
    assert mei is not None and 26 <= mei <= 28, f"MEI 30 after ~2.2 s queued arrived as {mei}: {got[0]!r}"
    assert MESSAGE_EXPIRY_INTERVAL not in got[1].props, got[1]


def test_expired_queued_messages_not_delivered(b5, c5):
    """Item 6: a queued QoS 1 message whose expiry passed while the session was offline is
    not delivered on resume — to an MQTT 5 and to an MQTT 3.1.1 persistent subscriber."""
    base = uid("exp")
    t = f"exp/{base}"
    cid5, cid3 = uid("exp5"), uid("exp3")
    persistent_subscriber(c5, b5, cid5, t)
    r3 = c5.raw3(b5)
    r3.connect_ok(cid3, clean_session=False)
    assert r3.subscribe(t, 1) == [1]
    r3.disconnect()
    assert r3.closed_within(5)
    pub = c5.paho(b5)
    pub.publish(t, b"short", 1, properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=1))
    pub.publish(t, b"keep", 1)
    pub.publish(t, b"long", 1, properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=60))
    time.sleep(2.5)
    r = c5.raw(b5)
    assert r.connect_ok(cid5, clean_start=False, props=SEI_300).session_present is True
    got = recv(r, 2)
    assert [p.payload for p in got] == [b"keep", b"long"], f"MQTT 5 resume: {got}"
    assert r.publishes_within(0.5) == []
    mei = got[1].props.get(MESSAGE_EXPIRY_INTERVAL)
    assert mei is not None and 55 <= mei <= 58, f"MEI 60 after 2.5 s queued: {got[1]!r}"
    r3 = c5.raw3(b5)
    assert r3.connect_ok(cid3, clean_session=False).session_present is True
    got3 = []
    for _ in range(2):
        p = r3.next_publish(T)
        r3.puback(p.pid)
        got3.append(p.payload)
    assert got3 == [b"keep", b"long"], f"MQTT 3.1.1 resume: {got3}"
    assert r3.no_packet_within(0.5) is None


def test_retained_message_expires(b5, c5):
    """Item 9: a retained message with Message Expiry 1 is delivered (RETAIN 1) to a new
    exact subscriber at once, and no longer after 2.5 s."""
    t = f"rexp/{uid('t')}"
    pub = c5.paho(b5)
    pub.publish(t, b"short-lived", 1, retain=True,
                properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=1))
    s1 = c5.raw(b5)
    s1.connect_ok(uid("rexp1"))
    s1.subscribe(t)
    p = recv(s1, 1)[0]
    assert (p.payload, p.retain) == (b"short-lived", True), p
    assert p.props.get(MESSAGE_EXPIRY_INTERVAL) in (0, 1), p
    time.sleep(2.5)
    s2 = c5.paho(b5)
    s2.subscribe(t, 1)
    fence(pub, t)
    got = s2.collect_until(t, T)
    assert [(m.payload, m.retain) for m in got] == [(b"fence", False)], \
        f"expired retained message still delivered: {got}"


# ============================================================================================
# Properties forwarded (item 7)
# ============================================================================================

USER_PROPS = [("a", "1"), ("b", "2"), ("a", "3"), ("ünï", "✓ value"), ("empty", "")]


def test_publish_properties_forwarded_unchanged(b5, c5):
    """Item 7: User Properties (order and duplicates kept), Content Type, Payload Format
    Indicator, Response Topic and Correlation Data reach MQTT 5 subscribers unchanged (QoS
    0 and 1); an MQTT 3.1.1 subscriber gets exactly the payload."""
    base = f"props/{uid('b')}"
    t = f"{base}/x"
    raw = c5.raw(b5)
    raw.connect_ok(uid("prraw"))
    assert raw.subscribe(t) == [1]
    ph = c5.paho(b5)
    ph.subscribe(t, 1)
    r3 = c5.raw3(b5)
    r3.connect_ok(uid("pr311"))
    assert r3.subscribe(t, 1) == [1]
    pub = c5.paho(b5)
    payload = '{"temp": 21.5, "unit": "°C"}'.encode()
    p = props(PacketTypes.PUBLISH, UserProperty=list(USER_PROPS), ContentType="application/json",
              PayloadFormatIndicator=1, ResponseTopic=f"{base}/reply",
              CorrelationData=b"\x00\x01\xfe\xffcorr")
    pub.publish(t, payload, 1, properties=p)
    pub.publish(t, payload, 0, properties=p)
    for qos, m in zip((1, 0), recv(raw, 2)):
        assert (m.payload, m.qos) == (payload, qos), m
        assert m.props.user_properties == USER_PROPS, m
        assert m.props.get(CONTENT_TYPE) == "application/json", m
        assert m.props.get(PAYLOAD_FORMAT_INDICATOR) == 1, m
        assert m.props.get(RESPONSE_TOPIC) == f"{base}/reply", m
        assert m.props.get(CORRELATION_DATA) == b"\x00\x01\xfe\xffcorr", m
        assert TOPIC_ALIAS not in m.props and SUBSCRIPTION_IDENTIFIER not in m.props, m
    for qos in (1, 0):
        m = ph.expect(T, topic=t)
        assert (m.payload, m.qos, m.user_properties) == (payload, qos, USER_PROPS), m
        assert m.prop("ContentType") == "application/json" and m.prop("PayloadFormatIndicator") == 1, m
        assert m.prop("ResponseTopic") == f"{base}/reply", m
        assert m.prop("CorrelationData") == b"\x00\x01\xfe\xffcorr", m
    for qos in (1, 0):
        m3 = r3.next_publish(T)
        if m3.qos:
            r3.puback(m3.pid)
        assert (m3.topic, m3.payload, m3.qos) == (t, payload, qos), \
            f"MQTT 3.1.1 subscriber must get just the payload: {m3!r}"


def test_mqtt311_publisher_reaches_mqtt5_subscriber(b5, c5):
    """Item 7: an MQTT 3.1.1 publisher's message reaches an MQTT 5 subscriber as an MQTT 5
    PUBLISH without properties."""
    t = f"x311/{uid('t')}"
    r = c5.raw(b5)
    r.connect_ok(uid("x5"))
    assert r.subscribe(t) == [1]
    p3 = c5.paho3(b5)
    p3.publish(t, b"from-311-q1", 1)
    p3.publish(t, b"from-311-q0", 0)
    got = recv(r, 2)
    assert [(p.topic, p.payload, p.qos) for p in got] == [(t, b"from-311-q1", 1), (t, b"from-311-q0", 0)]
    assert all(not p.props for p in got), got


# ============================================================================================
# Retained messages (item 9)
# ============================================================================================

def test_retained_exact_gets_retain_flag_wildcard_does_not(b5, c5):
    """Item 9: exact-topic subscribe gets the retained message with RETAIN 1 (properties
    kept); `+` / `#` subscribes do not get it; live deliveries have RETAIN 0."""
    base = uid("ret5")
    t = f"{base}/x/t"
    pub = c5.paho(b5)
    pub.publish(t, b"kept", 1, retain=True,
                properties=props(PacketTypes.PUBLISH, UserProperty=[("r", "1")], ContentType="text/plain"))
    exact = c5.raw(b5)
    exact.connect_ok(uid("rexact"))
    exact.subscribe(t)
    m = recv(exact, 1)[0]
    assert (m.topic, m.payload, m.retain) == (t, b"kept", True), m
    assert m.props.user_properties == [("r", "1")] and m.props.get(CONTENT_TYPE) == "text/plain", m
    for filt in (f"{base}/+/t", f"{base}/#"):
        w = c5.raw(b5)
        w.connect_ok(uid("rwild"))
        w.subscribe(filt)
        fence(pub, t)
        got = recv(w, 1)
        assert [(p.payload, p.retain) for p in got] == [(b"fence", False)], \
            f"wildcard {filt!r} got the retained message: {got}"
    pub.publish(t, b"live", 1, retain=True)
    m = recv(exact, 3)
    assert [(p.payload, p.retain) for p in m] == [(b"fence", False)] * 2 + [(b"live", False)], m


def test_retain_handling_subscription_option(b5, c5):
    """Item 9 (MQTT 5 §3.8.3.1): Retain Handling 0 sends the retained message on every
    SUBSCRIBE, 1 only when the subscription is new, 2 never."""
    t = f"rh/{uid('t')}"
    pub = c5.paho(b5)
    pub.publish(t, b"kept", 1, retain=True)
    r = c5.raw(b5)
    r.connect_ok(uid("rh"))

    def retained_after(rh):
        assert r.subscribe([(t, sub_options(1, retain_handling=rh))]) == [1]
        fence(pub, t)
        got = []
        while True:
            p = recv(r, 1)[0]
            got.append((p.payload, p.retain))
            if p.payload == b"fence":
                return got

    assert retained_after(2) == [(b"fence", False)], "Retain Handling 2 sent the retained message"
    r.unsubscribe(t)
    assert retained_after(1) == [(b"kept", True), (b"fence", False)], "new subscription, Retain Handling 1"
    assert retained_after(1) == [(b"fence", False)], "existing subscription, Retain Handling 1"
    assert retained_after(0) == [(b"kept", True), (b"fence", False)], "Retain Handling 0"


# ============================================================================================
# Shared subscriptions (item 8)
# ============================================================================================

def _shared_counts(members, n, timeout=T):
    """Messages received by `members` (Paho5/Paho) until n in total, then 0.5 s more."""
    deadline = time.monotonic() + timeout
    got = [[] for _ in members]
    while sum(map(len, got)) < n and time.monotonic() < deadline:
        for i, m in enumerate(members):
            got[i] += [x.payload for x in m.drain(0.05)]
    for i, m in enumerate(members):
        got[i] += [x.payload for x in m.drain(0.5 if i == 0 else 0.05)]
    return got


def test_shared_subscription_one_copy_per_group(b5, c5):
    """Item 8: two members of $share/g/<base>/# → each message reaches exactly one of them
    (both get some); group h, and $share/g/<base>/a (another group: same name, other
    filter), and a plain subscriber each get every message."""
    base = f"sh/{uid('b')}"
    t = f"{base}/a"
    g1, g2, h, ga, plain = (c5.paho(b5) for _ in range(5))
    for m, f in ((g1, f"$share/g/{base}/#"), (g2, f"$share/g/{base}/#"), (h, f"$share/h/{base}/#"),
                 (ga, f"$share/g/{t}"), (plain, t)):
        assert m.subscribe(f, 1) == [1], f
    pub = c5.paho(b5)
    n = 20
    sent = [f"m{i}".encode() for i in range(n)]
    for s in sent:
        pub.publish(t, s, 1)
    a, bb = _shared_counts([g1, g2], n)
    assert sorted(a + bb) == sorted(sent), f"group g members got {a} and {bb}: not exactly one copy each"
    assert a and bb, f"one member got everything: {a} / {bb}"
    for name, m in (("group h", h), ("$share/g/<t>", ga), ("plain", plain)):
        got = [x.payload for x in m.drain(0.3)]
        while len(got) < n:
            got.append(m.expect(T).payload)
        assert sorted(got) == sorted(sent), f"{name}: {got}"


def test_shared_subscription_mqtt311_members(b5, c5):
    """Item 8: shared subscriptions work for MQTT 3.1.1 members too (mixed with MQTT 5)."""
    base = f"sh3/{uid('b')}"
    f = f"$share/g3/{base}/#"
    m1, m2 = c5.paho3(b5), c5.paho3(b5)
    m5 = c5.paho(b5)
    assert m1.subscribe(f, 1) == [1] and m2.subscribe(f, 1) == [1] and m5.subscribe(f, 1) == [1]
    pub = c5.paho3(b5)
    n = 15
    sent = [f"m{i}".encode() for i in range(n)]
    for s in sent:
        pub.publish(f"{base}/t", s, 1)
    got = _shared_counts([m1, m2, m5], n)
    assert sorted(sum(got, [])) == sorted(sent), f"not exactly one copy per message: {got}"
    assert all(got), f"a member got nothing with round-robin over 15 messages: {got}"


def test_shared_subscription_gets_no_retained_on_subscribe(b5, c5):
    """Item 8: subscribing to a shared filter never delivers the retained message; a
    RETAIN publish afterwards is delivered like any other."""
    t = f"shr/{uid('t')}"
    pub = c5.paho(b5)
    pub.publish(t, b"retained", 1, retain=True)
    m = c5.paho(b5)
    assert m.subscribe(f"$share/g/{t}", 1) == [1]
    fence(pub, t)
    got = m.collect_until(t, T)
    assert [(x.payload, x.retain) for x in got] == [(b"fence", False)], got
    pub.publish(t, b"again", 1, retain=True)
    assert m.expect(T, topic=t).payload == b"again"


BAD_SHARES = ["$share/g+/t", "$share/#/t", "$share/g"]


@pytest.mark.parametrize("bad", BAD_SHARES)
def test_shared_subscription_invalid_filter_mqtt5(b5, c5, bad):
    """Item 8: ShareName with + or #, or "$share/g" without a filter → SUBACK 0x8F; the
    valid filter in the same SUBSCRIBE is granted, the connection stays open."""
    ok = f"$share/ok/{uid('t')}"
    r = c5.raw(b5)
    r.connect_ok(uid("shbad"))
    ack = r.subscribe_ack([(bad, Q1), (ok, Q1)])
    assert ack.reasons == [TOPIC_FILTER_INVALID, 1], ack
    r.ping()


@pytest.mark.parametrize("bad", BAD_SHARES)
def test_shared_subscription_invalid_filter_mqtt311(b5, c5, bad):
    """Item 8: the same invalid shared filters from an MQTT 3.1.1 client close the
    connection without SUBACK, as every invalid filter does under 3.1.1 (IoT Core
    disconnects for most 3.1.1 errors; 3.1.1 has no per-filter reason)."""
    ok = f"$share/ok/{uid('t')}"
    r3 = c5.raw3(b5)
    r3.connect_ok(uid("shbad3"))
    r3.send(mqttraw.subscribe_packet(r3.next_pid(), [(bad, 1), (ok, 1)]))
    assert r3.closed_within(5), f"{bad}: 3.1.1 connection still open"
    assert not [p for p in r3.received if p.type == mqttraw.SUBACK], r3.received


def test_shared_subscription_no_local_is_protocol_error(b5, c5):
    """Item 8 (MQTT 5 §3.8.3.1): No Local on a shared subscription → DISCONNECT 0x82."""
    r = c5.raw(b5)
    r.connect_ok(uid("shnl"))
    r.send(subscribe_packet(3, [(f"$share/g/{uid('t')}", sub_options(1, no_local=True))]))
    r.expect_server_disconnect(PROTOCOL_ERROR, 5)


@pytest.mark.parametrize("version", ["mqtt5", "mqtt311"])
def test_shared_subscription_offline_persistent_member_keeps_messages(b5, c5, version):
    """Item 8: a persistent-session member keeps the group's QoS 1 messages while no
    member is online; it gets them when it reconnects."""
    cid = uid("shp")
    base = f"shp/{cid}"
    f = f"$share/g/{base}/#"
    if version == "mqtt5":
        persistent_subscriber(c5, b5, cid, f)
    else:
        r3 = c5.raw3(b5)
        r3.connect_ok(cid, clean_session=False)
        assert r3.subscribe(f, 1) == [1]
        r3.disconnect()
        assert r3.closed_within(5)
    pub = c5.paho(b5)
    sent = [f"q{i}".encode() for i in range(3)]
    for s in sent:
        pub.publish(f"{base}/t", s, 1)
    if version == "mqtt5":
        r = c5.raw(b5)
        assert r.connect_ok(cid, clean_start=False, props=SEI_300).session_present is True
        got = [p.payload for p in recv(r, 3)]
    else:
        r = c5.raw3(b5)
        assert r.connect_ok(cid, clean_session=False).session_present is True
        got = []
        for _ in range(3):
            p = r.next_publish(T)
            r.puback(p.pid)
            got.append(p.payload)
    assert sorted(got) == sorted(sent), got


SHARE_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{ARN}:client/*"},
        {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"], "Resource": f"{ARN}:topic/sp/*"},
        {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": f"{ARN}:topicfilter/$share/grp/sp/*"},
    ],
}


def test_shared_subscription_policy_resource_is_the_filter_as_written(broker, c5):
    """Item 8: iot:Subscribe for a shared subscription is checked against
    topicfilter/$share/<ShareName>/<filter>: only the allowed group is granted; another
    group and the plain filter get SUBACK 0x87; the granted member receives."""
    b = policy_broker(broker, SHARE_POLICY)
    base = f"sp/{uid('t')}"
    r = c5.raw(b)
    r.connect_ok(uid("shpol"))
    ack = r.subscribe_ack([(f"$share/grp/{base}", Q1), (f"$share/other/{base}", Q1), (base, Q1)])
    assert ack.reasons == [1, NOT_AUTHORIZED, NOT_AUTHORIZED], ack
    pub = c5.raw(b)
    pub.connect_ok(uid("shpub"))
    assert pub.publish(base, b"to-group", 1).reason in (0x00, 0x10)
    assert recv(r, 1)[0].payload == b"to-group"


# ============================================================================================
# Lifecycle events
# ============================================================================================

def test_lifecycle_events_for_mqtt5_clients(b5, c5):
    """Lifecycle: an MQTT 5 client's connect and DISCONNECT publish the presence events."""
    cid = uid("life5")
    obs = c5.paho(b5)
    obs.subscribe([(CONNECTED + cid, _so(1)), (DISCONNECTED + cid, _so(1))])
    r = c5.raw(b5)
    r.connect_ok(cid)
    con = json.loads(obs.expect(T, topic=CONNECTED + cid).payload)
    assert con["clientId"] == cid and con["eventType"] == "connected", con
    closed_cleanly(r)
    dis = json.loads(obs.expect(T, topic=DISCONNECTED + cid).payload)
    assert dis["clientId"] == cid and dis["eventType"] == "disconnected", dis
    assert dis["disconnectReason"] == "CLIENT_INITIATED_DISCONNECT", dis
    assert dis["clientInitiatedDisconnect"] is True, dis


# ============================================================================================
# Wills
# ============================================================================================

WILL_PROPS = [(USER_PROPERTY, ("w", "1")), (USER_PROPERTY, ("w", "2")), (USER_PROPERTY, ("x", "y")),
              (CONTENT_TYPE, "text/plain"), (PAYLOAD_FORMAT_INDICATOR, 1),
              (RESPONSE_TOPIC, "will/reply"), (CORRELATION_DATA, b"\x01will"),
              (MESSAGE_EXPIRY_INTERVAL, 60)]


def _will_observer(c5, b, wt):
    obs = c5.raw(b)
    obs.connect_ok(uid("wobs"))
    assert obs.subscribe(wt) == [1]
    return obs


def test_will_properties_forwarded(b5, c5):
    """Will properties (user properties, content type, payload format, response topic,
    correlation data, message expiry) are forwarded with the will message."""
    cid = uid("w5")
    wt = f"will/{cid}"
    obs = _will_observer(c5, b5, wt)
    r = c5.raw(b5)
    r.connect_ok(cid, will=Will5(wt, b"gone", qos=1, props=WILL_PROPS))
    r.ping()
    r.close()
    m = recv(obs, 1)[0]
    assert (m.topic, m.payload, m.qos) == (wt, b"gone", 1), m
    assert m.props.user_properties == [("w", "1"), ("w", "2"), ("x", "y")], m
    assert m.props.get(CONTENT_TYPE) == "text/plain" and m.props.get(PAYLOAD_FORMAT_INDICATOR) == 1, m
    assert m.props.get(RESPONSE_TOPIC) == "will/reply", m
    assert m.props.get(CORRELATION_DATA) == b"\x01will", m
    assert 58 <= m.props.get(MESSAGE_EXPIRY_INTERVAL, -1) <= 60, m


def test_will_not_published_after_normal_disconnect(b5, c5):
    """DISCONNECT 0x00 discards the will (also a delayed one)."""
    cid = uid("wnone")
    wt = f"will/{cid}"
    obs = _will_observer(c5, b5, wt)
    r = c5.raw(b5)
    r.connect_ok(cid, clean_start=False, props=[(SESSION_EXPIRY_INTERVAL, 1)],
                 will=Will5(wt, b"no", qos=1, props=[(WILL_DELAY_INTERVAL, 1)]))
    closed_cleanly(r)
    assert obs.publishes_within(2.0) == []


def test_will_delay_interval(b5, c5):
    """Will Delay Interval 2: the will is published ~2 s after the connection is lost."""
    cid = uid("wdelay")
    wt = f"will/{cid}"
    obs = _will_observer(c5, b5, wt)
    r = c5.raw(b5)
    r.connect_ok(cid, clean_start=False, props=SEI_300,
                 will=Will5(wt, b"late", qos=1, props=[(WILL_DELAY_INTERVAL, 2)]))
    r.ping()
    t0 = time.monotonic()
    r.close()
    early = obs.publishes_within(1.3)
    assert early == [], f"will published before its 2 s delay: {early}"
    m = recv(obs, 1, timeout=4)[0]
    dt = time.monotonic() - t0
    assert m.payload == b"late", m
    assert 1.7 <= dt <= 4.0, f"will published {dt:.2f}s after the close, delay was 2 s"


def test_will_delay_cancelled_by_reconnect(b5, c5):
    """A reconnect within the Will Delay Interval cancels the will."""
    cid = uid("wcancel")
    wt = f"will/{cid}"
    obs = _will_observer(c5, b5, wt)
    r = c5.raw(b5)
    r.connect_ok(cid, clean_start=False, props=SEI_300,
                 will=Will5(wt, b"cancelled", qos=1, props=[(WILL_DELAY_INTERVAL, 2)]))
    r.ping()
    r.close()
    time.sleep(0.3)
    r2 = c5.raw(b5)
    assert r2.connect_ok(cid, clean_start=False, props=SEI_300).session_present is True
    got = obs.publishes_within(3.0)
    assert got == [], f"will published although the client came back within the delay: {got}"
    r2.ping()


def test_will_delay_limited_by_session_expiry(b5, c5):
    """The will is published at min(Will Delay Interval, Session Expiry Interval): delay 30,
    session expiry 1 → ~1 s."""
    cid = uid("wsei")
    wt = f"will/{cid}"
    obs = _will_observer(c5, b5, wt)
    r = c5.raw(b5)
    r.connect_ok(cid, clean_start=False, props=[(SESSION_EXPIRY_INTERVAL, 1)],
                 will=Will5(wt, b"session-ended", qos=1, props=[(WILL_DELAY_INTERVAL, 30)]))
    r.ping()
    t0 = time.monotonic()
    r.close()
    m = recv(obs, 1, timeout=5)[0]
    dt = time.monotonic() - t0
    assert m.payload == b"session-ended", m
    assert dt <= 3.5, f"will published {dt:.2f}s after the close; session expiry was 1 s"


def test_huge_invalid_topic_is_answered_with_a_short_reason_and_the_connection_lives(b5, c5):
    """A 65,000-byte topic (within the packet limit, over the 256-byte topic limit) gets
    PUBACK 0x90 whose reason string is cut short (a property holds at most 65535 bytes;
    quoting the whole topic back once crashed the connection task), and the connection
    goes on; SUBSCRIBE with such a filter gets SUBACK 0x8F the same way."""
    import mqtt5raw as m5

    r = c5.raw(b5)
    r.connect_ok(uid("huge"))
    ack = r.publish("a" * 65000, b"x", qos=1)
    assert ack.reason == m5.TOPIC_NAME_INVALID, ack
    assert len(ack.props.get(m5.REASON_STRING, "")) <= 256, ack
    suback = r.subscribe_ack([("b" * 65000, m5.sub_options(1))])
    assert suback.reasons == [m5.TOPIC_FILTER_INVALID], suback
    r.ping()


def test_delayed_will_is_cancelled_by_a_resume_even_if_the_client_leaves_again(b5, c5):
    """MQTT-3.1.3-9: a connection that resumes the session within the Will Delay Interval
    cancels the will, also when that connection then ends with a normal DISCONNECT before
    the delay would have run out."""
    import mqtt5raw as m5

    cid = uid("wdr")
    topic = f"will/{cid}"
    watcher = c5.raw(b5)
    watcher.connect_ok(uid("wdr-watch"))
    assert watcher.subscribe(topic) == [1]
    first = c5.raw(b5)
    will = m5.Will5(topic, b"bye", 1, props=[(m5.WILL_DELAY_INTERVAL, 2)])
    first.connect_ok(cid, clean_start=False, props={m5.SESSION_EXPIRY_INTERVAL: 60}, will=will)
    first.abort()
    time.sleep(0.3)
    again = c5.raw(b5)
    ack = again.connect_ok(cid, clean_start=False, props={m5.SESSION_EXPIRY_INTERVAL: 60})
    assert ack.session_present, ack
    again.disconnect()
    assert watcher.publishes_within(3.0) == [], "the will was sent although the session resumed"
