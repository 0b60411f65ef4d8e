"""Last will, keep-alive, persistent sessions, QoS 1 redelivery, client-id takeover."""

import time

import pytest

from helpers import uid
from mqttraw import PUBLISH, Will


# -- last will -----------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["close", "reset"])
def test_will_published_when_socket_closes_without_disconnect(broker, clients, how):
    b = broker()
    cid = uid("will")
    wt = f"will/{cid}"
    obs = clients.paho(b)
    obs.subscribe(wt, 1)
    r = clients.raw(b)
    r.connect_ok(cid, will=Will(wt, b"\x00gone\xff", qos=1))
    r.ping()
    if how == "close":
        r.close()
    else:
        r.abort()
    m = obs.expect(timeout=10)
    assert (m.topic, m.payload, m.retain) == (wt, b"\x00gone\xff", False)
    assert m.qos == 1


def test_paho_will_published_when_socket_closed(broker, clients):
    b = broker()
    cid = uid("pwill")
    wt = f"will/{cid}"
    obs = clients.paho(b)
    obs.subscribe(wt, 1)
    c = clients.paho_new(b, cid, will=(wt, b"paho-gone", 1, False))
    c.connect()
    c.client.loop_stop()  # no reconnect
    c.client.socket().close()
    m = obs.expect(timeout=10)
    assert m.payload == b"paho-gone"


def test_will_not_published_after_disconnect(broker, clients):
    b = broker()
    cid = uid("nowill")
    wt = f"will/{cid}"
    obs = clients.paho(b)
    obs.subscribe(wt, 1)
    r = clients.raw(b)
    r.connect_ok(cid, will=Will(wt, b"should-not-appear", qos=1))
    r.disconnect()
    assert r.closed_within(5), "broker did not close the connection after DISCONNECT"
    r.close()
    got = obs.drain(1.5)
    assert got == [], f"will published after a clean DISCONNECT: {got}"


def test_retained_will(broker, clients):
    b = broker()
    cid = uid("rwill")
    wt = f"will/{cid}"
    obs = clients.paho(b)
    obs.subscribe(wt, 1)
    r = clients.raw(b)
    r.connect_ok(cid, will=Will(wt, b"last", qos=1, retain=True))
    r.close()
    obs.expect(timeout=10)
    late = clients.paho(b)
    late.subscribe(wt, 1)
    m = late.expect()
    assert (m.payload, m.retain) == (b"last", True)


# -- keep-alive ----------------------------------------------------------------------------

def test_keepalive_expiry_closes_and_publishes_will(broker, clients):
    b = broker()
    cid = uid("ka")
    wt = f"will/{cid}"
    disc = f"$aws/events/presence/disconnected/{cid}"
    obs = clients.paho(b)
    obs.subscribe([(wt, 1), (disc, 1)])
    r = clients.raw(b)
    r.connect_ok(cid, keepalive=2, will=Will(wt, b"timeout", qos=1))
    dt = r.wait_closed(8)
    assert dt is not None, "connection with keep-alive 2 s still open after 8 s of silence"
    assert 2.5 <= dt <= 5.0, f"closed after {dt:.2f}s, expected ~3 s (1.5 x keep-alive)"
    m = obs.expect(topic=wt)
    assert m.payload == b"timeout"
    ev = obs.expect(topic=disc).json()
    assert ev["disconnectReason"] == "MQTT_KEEP_ALIVE_TIMEOUT", ev
    assert ev["clientInitiatedDisconnect"] is False, ev


def test_keepalive_pings_keep_connection_open(broker, clients):
    b = broker()
    r = clients.raw(b)
    r.connect_ok(uid("kaping"), keepalive=2)
    for _ in range(5):
        time.sleep(1.0)
        r.ping(timeout=2)  # PINGRESP each time
    assert r.no_packet_within(0.1) is None


# -- persistent sessions -------------------------------------------------------------------

def _persistent_subscriber(b, clients, cid, topic):
    """CONNECT clean_session=0, SUBSCRIBE QoS 1, DISCONNECT, wait for the broker to close."""
    r = clients.raw(b)
    ack = r.connect_ok(cid, clean_session=False)
    assert ack.session_present is False
    assert r.subscribe(topic, 1) == [1]
    r.disconnect()
    assert r.closed_within(5), "broker did not close the connection after DISCONNECT"
    r.close()


def test_offline_queue_delivered_in_order_on_resume(broker, clients):
    b = broker()
    cid = uid("persist")
    topic = f"q/{cid}"
    _persistent_subscriber(b, clients, cid, topic)
    n = 20
    pub = clients.paho(b)
    for i in range(n):
        pub.publish(topic, f"m{i}".encode(), 1)

    r = clients.raw(b)
    ack = r.connect_ok(cid, clean_session=False)
    assert ack.session_present is True
    got = []
    for _ in range(n):
        p = r.next_publish(timeout=10)
        got.append(p)
        r.puback(p.pid)
    assert [p.payload for p in got] == [f"m{i}".encode() for i in range(n)]
    assert all(p.topic == topic and p.qos == 1 for p in got), got
    assert r.no_packet_within(0.5) is None, "more messages than were published"
    r.disconnect()
    assert r.closed_within(5)
    r.close()

    # everything was acknowledged: a resume now finds the session and nothing queued
    r2 = clients.raw(b)
    assert r2.connect_ok(cid, clean_session=False).session_present is True
    extra = r2.no_packet_within(0.7)
    assert extra is None, f"acknowledged message redelivered: {extra}"


def test_clean_session_reconnect_discards_session(broker, clients):
    b = broker()
    cid = uid("clean")
    topic = f"q/{cid}"
    _persistent_subscriber(b, clients, cid, topic)
    pub = clients.paho(b)
    for i in range(5):
        pub.publish(topic, f"m{i}".encode(), 1)

    r = clients.raw(b)
    ack = r.connect_ok(cid, clean_session=True)
    assert ack.session_present is False
    p = r.no_packet_within(1.0)
    assert p is None, f"clean session received a queued message: {p}"
    r.disconnect()
    assert r.closed_within(5)
    r.close()

    # the old session is gone for good: a persistent resume starts fresh, no subscription
    r2 = clients.raw(b)
    assert r2.connect_ok(cid, clean_session=False).session_present is False
    pub.publish(topic, b"after", 1)
    p = r2.no_packet_within(0.7)
    assert p is None, f"subscription survived a clean session: {p}"


def test_persistent_session_expires(broker, clients):
    b = broker(session_expiry="2s")
    cid = uid("expire")
    topic = f"q/{cid}"
    _persistent_subscriber(b, clients, cid, topic)
    time.sleep(3.5)
    pub = clients.paho(b)
    pub.publish(topic, b"late", 1)
    r = clients.raw(b)
    ack = r.connect_ok(cid, clean_session=False)
    assert ack.session_present is False, "session still present after session_expiry"
    p = r.no_packet_within(0.7)
    assert p is None, f"expired session delivered: {p}"


def test_qos1_redelivered_with_dup_after_reconnect(broker, clients):
    b = broker()
    cid = uid("dup")
    topic = f"dup/{cid}"
    r = clients.raw(b)
    r.connect_ok(cid, clean_session=False)
    r.subscribe(topic, 1)
    clients.paho(b).publish(topic, b"redeliver-me", 1)
    first = r.next_publish()
    assert (first.qos, first.dup, first.payload) == (1, False, b"redeliver-me")
    r.close()  # no PUBACK, no DISCONNECT

    r2 = clients.raw(b)
    ack = r2.connect_ok(cid, clean_session=False)
    assert ack.session_present is True
    again = r2.next_publish(timeout=10)
    assert again.payload == b"redeliver-me"
    assert again.dup is True, f"redelivery without DUP: {again}"
    assert again.pid == first.pid, f"packet id changed: {first.pid} -> {again.pid}"
    assert again.qos == 1
    r2.puback(again.pid)
    r2.ping()
    r2.disconnect()
    assert r2.closed_within(5)
    r2.close()

    r3 = clients.raw(b)
    assert r3.connect_ok(cid, clean_session=False).session_present is True
    p = r3.no_packet_within(0.7)
    assert p is None, f"acknowledged message delivered again: {p}"


# -- takeover ------------------------------------------------------------------------------

def test_same_client_id_takes_over(broker, clients):
    b = broker()
    cid = uid("dupid")
    obs = clients.paho(b)
    obs.subscribe(f"$aws/events/presence/disconnected/{cid}", 1)
    first = clients.raw(b)
    first.connect_ok(cid)
    first.ping()
    second = clients.raw(b)
    assert second.connect(cid).return_code == 0
    assert first.closed_within(5), "first connection not closed after takeover"
    assert not [p for p in first.received if p.type == PUBLISH], first.received

    # the second connection works
    t = f"to/{cid}"
    assert second.subscribe(t, 1) == [1]
    second.publish(t, b"self", 1)
    assert second.next_publish().payload == b"self"
    second.ping()

    ev = obs.expect(topic=f"$aws/events/presence/disconnected/{cid}").json()
    assert ev["clientId"] == cid
    assert ev["disconnectReason"] == "DUPLICATE_CLIENTID", ev
    assert ev["clientInitiatedDisconnect"] is False, ev
