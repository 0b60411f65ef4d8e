"""IoT Core limits and the QoS 2 refusal: the offending connection is closed (or refused),
other clients keep working."""

import time

from helpers import uid
from mqttraw import CONNACK, PUBACK, PUBREC, SUBACK, publish_packet, subscribe_packet

QOS2_WORDS = ["qos 2", "qos2", "qos=2", "qos: 2", "qos(2)", "exactlyonce", "exactly once",
              "exactly_once"]


def _types(packets):
    return [p.type for p in packets]


# -- QoS 2 ---------------------------------------------------------------------------------

def test_qos2_publish_closes_connection(broker, clients):
    b = broker()
    w = clients.witness(b)
    cid = uid("q2pub")
    r = clients.raw(b)
    r.connect_ok(cid)
    r.send(publish_packet(f"q2/{cid}", b"x", qos=2, pid=7))
    assert r.closed_within(5), "connection still open after a QoS 2 PUBLISH"
    assert PUBREC not in _types(r.received), r.received
    w.roundtrip()
    b.assert_running()
    b.wait_log(cid, QOS2_WORDS)


def test_qos2_subscribe_closes_connection(broker, clients):
    b = broker()
    w = clients.witness(b)
    cid = uid("q2sub")
    r = clients.raw(b)
    r.connect_ok(cid)
    r.send(subscribe_packet(3, [(f"q2/{cid}", 2)]))
    assert r.closed_within(5), "connection still open after a QoS 2 SUBSCRIBE"
    assert SUBACK not in _types(r.received), r.received
    w.roundtrip()
    b.assert_running()
    b.wait_log(cid, QOS2_WORDS)


# -- payload, topic ------------------------------------------------------------------------

def test_payload_over_limit_closes_connection(broker, clients):
    b = broker(max_payload_bytes=1024)
    w = clients.witness(b)
    cid = uid("big")
    topic = f"big/{cid}"
    w.subscribe(topic, 1)
    r = clients.raw(b)
    r.connect_ok(cid)
    r.publish(topic, b"s" * 1000, qos=1)  # under the limit: PUBACK
    r.send(publish_packet(topic, b"L" * 2000, qos=1, pid=99))
    assert r.closed_within(5), "connection still open after a 2000-byte payload (limit 1024)"
    assert PUBACK not in _types(r.received[2:]), r.received  # [CONNACK, PUBACK(1000 B)]
    assert len(w.expect(topic=topic).payload) == 1000
    w.publish(topic, b"fence", 1)
    m = w.expect(topic=topic)
    assert m.payload == b"fence", f"oversized payload was routed ({len(m.payload)} bytes)"
    w.roundtrip()
    b.assert_running()
    b.wait_log(cid, ["payload"])


def test_topic_257_bytes_closes_connection(broker, clients):
    b = broker()
    w = clients.witness(b)
    cid = uid("longt")
    r = clients.raw(b)
    r.connect_ok(cid)
    ok = "t/" + "x" * 254
    assert len(ok) == 256
    r.publish(ok, b"ok", qos=1)
    bad = "t/" + "x" * 255
    assert len(bad.encode()) == 257
    r.send(publish_packet(bad, b"x", qos=1, pid=42))
    assert r.closed_within(5), "connection still open after a 257-byte topic"
    assert [p.pid for p in r.received if p.type == PUBACK] == [1], r.received
    w.roundtrip()
    b.assert_running()
    b.wait_log(cid, ["topic"])


def test_topic_with_8_slashes_closes_connection(broker, clients):
    b = broker()
    w = clients.witness(b)
    cid = uid("slash")
    r = clients.raw(b)
    r.connect_ok(cid)
    r.publish("a/b/c/d/e/f/g/h", b"ok", qos=1)  # 7 slashes
    r.send(publish_packet("a/b/c/d/e/f/g/h/i", b"x", qos=1, pid=42))  # 8
    assert r.closed_within(5), "connection still open after a topic with 8 slashes"
    assert [p.pid for p in r.received if p.type == PUBACK] == [1], r.received
    w.roundtrip()
    b.assert_running()
    b.wait_log(cid, ["topic", "slash", "level"])


# -- subscriptions -------------------------------------------------------------------------

def test_nine_filters_in_one_subscribe_closes_connection(broker, clients):
    b = broker()
    w = clients.witness(b)
    cid = uid("nine")
    r = clients.raw(b)
    r.connect_ok(cid)
    assert r.subscribe([(f"eight/{i}", 1) for i in range(8)]) == [1] * 8
    r.send(subscribe_packet(50, [(f"nine/{i}", 1) for i in range(9)]))
    assert r.closed_within(5), "connection still open after a SUBSCRIBE with 9 filters"
    assert _types(r.received) == [CONNACK, SUBACK], r.received
    w.roundtrip()
    b.assert_running()
    b.wait_log(cid, ["filter", "subscri", "limit"])


def test_51st_subscription_closes_connection(broker, clients):
    b = broker()
    w = clients.witness(b)
    cid = uid("fifty")
    r = clients.raw(b)
    r.connect_ok(cid)
    filters = [f"s/{i}" for i in range(50)]
    for i in range(0, 50, 8):
        batch = filters[i:i + 8]
        assert r.subscribe([(f, 1) for f in batch]) == [1] * len(batch)
    r.ping()
    r.send(subscribe_packet(500, [("s/50", 1)]))
    assert r.closed_within(5), "connection still open after its 51st subscription"
    assert _types(r.received).count(SUBACK) == 7, r.received
    w.roundtrip()
    b.assert_running()
    b.wait_log(cid, ["subscription", "subscri", "limit", "50"])


# -- client ids ----------------------------------------------------------------------------

def test_client_id_of_129_bytes_rejected(broker, clients):
    b = broker()
    w = clients.witness(b)
    ok = "k" * 128
    r = clients.raw(b)
    assert r.connect(ok).return_code == 0
    r.ping()
    bad = "x" * 129
    r2 = clients.raw(b)
    assert r2.connect(bad).return_code == 2
    assert r2.closed_within(5)
    w.roundtrip()
    b.assert_running()


def test_empty_client_id_with_persistent_session_rejected(broker, clients):
    b = broker()
    w = clients.witness(b)
    r = clients.raw(b)
    assert r.connect("", clean_session=False).return_code == 2
    assert r.closed_within(5)
    w.roundtrip()


def test_empty_client_id_with_clean_session_accepted(broker, clients):
    b = broker()
    r = clients.raw(b)
    ack = r.connect("", clean_session=True)
    assert ack.return_code == 0
    assert ack.session_present is False
    t = f"anon/{uid('t')}"
    assert r.subscribe(t, 1) == [1]
    r.publish(t, b"hi", 1)
    assert r.next_publish().payload == b"hi"
    # two anonymous clients at once get distinct ids (no takeover)
    r2 = clients.raw(b)
    assert r2.connect("", clean_session=True).return_code == 0
    r.ping()
    r2.ping()


# -- CONNECT throttle ----------------------------------------------------------------------

def _align_to_second_start():
    frac = time.time() % 1.0
    if frac > 0.1:
        time.sleep(1.0 - frac + 0.02)


def test_connect_throttle_per_client_id(broker, clients):
    b = broker(connects_per_client_id_per_sec=1)
    cid = uid("thr")
    _align_to_second_start()
    first = clients.raw(b)
    second = clients.raw(b)
    other = clients.raw(b)
    t0 = time.monotonic()
    assert first.connect(cid).return_code == 0
    ack = second.connect(cid)
    elapsed = time.monotonic() - t0
    assert elapsed < 0.5, f"test too slow to be inside one second ({elapsed:.2f}s)"
    assert ack.return_code == 3, f"second CONNECT within a second got CONNACK {ack.return_code}"
    assert second.closed_within(5)
    # the throttled CONNECT did not take over the first connection
    first.ping()
    # the limit is per client id
    assert other.connect(uid("thr-other")).return_code == 0
    b.wait_log(cid, ["throttl"])

    # a second later the same id may connect again
    time.sleep(max(0.0, 1.2 - (time.monotonic() - t0)))
    later = clients.raw(b)
    assert later.connect(cid).return_code == 0
    later.ping()
