"""Basic publish/subscribe, wildcards, overlapping subscriptions, unsubscribe."""

import os
import shutil
import subprocess
import time

import pytest

from helpers import uid

PAYLOADS = {
    "text": b"hello, world",
    "binary": bytes(range(256)) * 2,
    "empty": b"",
    "100KiB": os.urandom(100 * 1024),
}


@pytest.mark.parametrize("qos", [0, 1])
@pytest.mark.parametrize("kind", list(PAYLOADS))
def test_paho_pub_sub(broker, clients, qos, kind):
    b = broker()
    payload = PAYLOADS[kind]
    topic = f"ps/{uid('t')}"
    sub = clients.paho(b)
    assert sub.subscribe(topic, qos) == [qos]
    pub = clients.paho(b)
    pub.publish(topic, payload, qos)
    m = sub.expect()
    assert m.topic == topic
    assert m.payload == payload, f"payload differs: {len(m.payload)} bytes received, {len(payload)} sent"
    assert m.qos == qos
    assert not m.retain


@pytest.mark.parametrize("qos", [0, 1])
def test_qos_downgrade_to_subscription(broker, clients, qos):
    """A QoS 1 publish to a QoS 0 subscription arrives at QoS 0 (min of both)."""
    b = broker()
    topic = f"ps/{uid('t')}"
    sub = clients.paho(b)
    sub.subscribe(topic, 0)
    clients.paho(b).publish(topic, b"x", 1)
    assert sub.expect().qos == 0


def _mosquitto(tool):
    path = shutil.which(tool) or f"/usr/bin/{tool}"
    if not os.path.exists(path):
        pytest.skip(f"{tool} not installed")
    return path


@pytest.mark.parametrize("qos", [0, 1])
@pytest.mark.parametrize("kind", ["text", "binary", "100KiB"])
def test_mosquitto_pub_to_mosquitto_sub(broker, tmp_path, qos, kind):
    b = broker()
    payload = PAYLOADS[kind]
    f = tmp_path / "payload.bin"
    f.write_bytes(payload)
    topic = f"mq/{uid('t')}"
    out_path, err_path = tmp_path / "sub.out", tmp_path / "sub.err"
    sub = subprocess.Popen(
        [_mosquitto("mosquitto_sub"), "-h", b.host, "-p", str(b.port), "-t", topic, "-C", "1",
         "-W", "10", "-q", str(qos), "-N", "-i", uid("msub")],
        stdout=open(out_path, "wb"), stderr=open(err_path, "wb"))  # files: no pipe deadlock
    try:
        # mosquitto_sub gives no "subscribed" signal: publish until it has received one and exits.
        deadline = time.monotonic() + 10
        while sub.poll() is None and time.monotonic() < deadline:
            r = subprocess.run(
                [_mosquitto("mosquitto_pub"), "-h", b.host, "-p", str(b.port), "-t", topic,
                 "-q", str(qos), "-f", str(f), "-i", uid("mpub")],
                capture_output=True, timeout=10)
            assert r.returncode == 0, f"mosquitto_pub failed: {r.stderr.decode(errors='replace')}"
            try:
                sub.wait(0.3)
            except subprocess.TimeoutExpired:
                pass
        sub.wait(12)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()
    out, err = out_path.read_bytes(), err_path.read_bytes()
    assert sub.returncode == 0, f"mosquitto_sub exit {sub.returncode}: {err.decode(errors='replace')}"
    assert out == payload, f"mosquitto_sub printed {len(out)} bytes, expected {len(payload)}"


# -- wildcards ---------------------------------------------------------------------------

def _check_filter(b, clients, filt, publish_topics, expected, fence):
    sub = clients.paho(b)
    sub.subscribe(filt, 1)
    pub = clients.paho(b)
    for t in publish_topics:
        pub.publish(t, t.encode(), 1)
    pub.publish(fence, b"fence", 1)
    got = [m.topic for m in sub.collect_until(fence)]
    assert got == expected + [fence], f"filter {filt!r}"


def test_plus_wildcard(broker, clients):
    b = broker()
    base = uid("wp")
    _check_filter(
        b, clients, f"{base}/+/t",
        [f"{base}/x/t", f"{base}/x/y/t", f"{base}/t", f"{base}/x/t/z", f"{base}/y/t"],
        [f"{base}/x/t", f"{base}/y/t"],
        fence=f"{base}/fence/t",
    )


def test_plus_wildcard_last_level(broker, clients):
    b = broker()
    base = uid("wp")
    _check_filter(
        b, clients, f"{base}/+",
        [f"{base}/x", f"{base}/x/y", base, f"{base}/z"],
        [f"{base}/x", f"{base}/z"],
        fence=f"{base}/fence",
    )


def test_hash_wildcard_iot_semantics(broker, clients):
    """IoT Core: `a/#` matches `a/`, `a/b`, `a/b/c` but not `a` itself."""
    b = broker()
    base = uid("wh")
    _check_filter(
        b, clients, f"{base}/a/#",
        [f"{base}/a", f"{base}/a/", f"{base}/a/b", f"{base}/a/b/c", f"{base}/ab", f"{base}/b/a"],
        [f"{base}/a/", f"{base}/a/b", f"{base}/a/b/c"],
        fence=f"{base}/a/fence",
    )


def test_wildcards_do_not_match_dollar_topics(broker, clients):
    """`#` and `+/...` never match a leading `$` level; an explicit `$aws/...` filter does."""
    b = broker()
    wild = clients.paho(b)
    wild.subscribe([("#", 1), ("+/events/presence/connected/+", 1), ("+/events/#", 1)])
    explicit = clients.paho(b)
    explicit.subscribe("$aws/events/presence/connected/+", 1)
    cid = uid("dollar")
    clients.paho(b, cid)
    ev = explicit.expect(topic=f"$aws/events/presence/connected/{cid}")
    assert ev.json()["clientId"] == cid
    fence = f"fence/{uid('f')}"
    explicit.publish(fence, b"fence", 1)
    got = wild.collect_until(fence) + wild.drain(0.3)
    dollar = [m.topic for m in got if m.topic.startswith("$")]
    assert dollar == [], f"wildcard subscriber received reserved topics: {dollar}"


# -- overlapping subscriptions, unsubscribe ------------------------------------------------

def test_overlapping_subscriptions_deliver_one_copy_at_max_qos(broker, clients):
    b = broker()
    base = uid("ov")
    sub = clients.paho(b)
    assert sub.subscribe([(f"{base}/+", 0), (f"{base}/#", 1)]) == [0, 1]
    pub = clients.paho(b)
    pub.publish(f"{base}/b", b"one", 1)
    fence = f"{base}/fence"
    pub.publish(fence, b"fence", 1)
    got = sub.collect_until(fence) + sub.drain(0.5)
    assert [(m.topic, m.qos) for m in got] == [(f"{base}/b", 1), (fence, 1)], got


def test_unsubscribe_stops_delivery(broker, clients):
    b = broker()
    base = uid("un")
    sub = clients.paho(b)
    sub.subscribe([(f"{base}/x", 1), (f"{base}/keep", 1)])
    pub = clients.paho(b)
    pub.publish(f"{base}/x", b"before", 1)
    assert sub.expect().payload == b"before"
    sub.unsubscribe(f"{base}/x")  # waits for UNSUBACK
    pub.publish(f"{base}/x", b"after", 1)
    pub.publish(f"{base}/keep", b"fence", 1)
    got = sub.collect_until(f"{base}/keep") + sub.drain(0.3)
    assert [m.payload for m in got] == [b"fence"], got


def test_unsubscribe_raw_unsuback(broker, clients):
    """UNSUBACK carries the UNSUBSCRIBE's packet id (checked by RawClient.unsubscribe),
    also for a filter that was never subscribed."""
    b = broker()
    r = clients.raw(b)
    r.connect_ok(uid("unraw"))
    r.subscribe(f"{uid('x')}/a", 1)
    r.unsubscribe(f"{uid('x')}/a")
    r.unsubscribe("never/subscribed")
    r.ping()


def test_packets_sent_together_with_connect_are_handled(broker, clients):
    """CONNECT and SUBSCRIBE in one TCP segment: the SUBSCRIBE must not wait for more data."""
    from mqttraw import SUBACK, connect_packet, subscribe_packet

    b = broker()
    raw = clients.raw(b)
    raw.send(connect_packet(uid("together"), True, 60, None) + subscribe_packet(1, [("t/x", 1)]))
    assert raw.read_packet().return_code == 0
    ack = raw.expect(SUBACK, timeout=3)
    assert ack.granted == [1]
