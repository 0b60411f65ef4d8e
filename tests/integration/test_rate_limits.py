"""Per-connection rate limits (IoT Core's "Publish requests per connection" and "Throughput
per connection"): an inbound PUBLISH over the publish rate is not delivered and gets no
PUBACK (MQTT 5: PUBACK 0x97), the connection stays open; over the byte rate traffic is
delayed, not lost. Off by default; `iot_core_rate_limits = true` sets IoT Core's values."""

import time

import pytest

from helpers import uid
from paho5 import Paho5

QUOTA_EXCEEDED = 0x97


def _burst_publisher(clients, b, mqtt5: bool):
    """A connected publisher that may have any number of QoS 1 publishes in flight (paho
    holds back all but 20 by default, which would stall behind unanswered ones)."""
    if mqtt5:
        p = clients.track(Paho5(b.port, uid("pub5"), host=b.host))
    else:
        p = clients.paho_new(b, uid("pub"))
    p.client.max_inflight_messages_set(0)
    return p.connect()


def _subscriber(clients, b, topic: str):
    s = clients.paho(b, uid("sub"))
    s.subscribe(topic, 1)
    return s


def _burst(p, topic: str, n: int, size: int = 0):
    """`n` QoS 1 publishes as fast as paho writes them; payload = index, padded to `size`."""
    return [p.client.publish(topic, str(i).encode().ljust(size, b"."), qos=1) for i in range(n)]


def _index(m) -> int:
    return int(m.payload.rstrip(b"."))


@pytest.mark.parametrize("mqtt5", [False, True], ids=["mqtt311", "mqtt5"])
def test_publishes_over_the_rate_are_not_delivered_and_not_acknowledged(broker, clients, mqtt5):
    b = broker(publishes_per_connection_per_sec=10)
    topic = f"rate/{uid('t')}"
    sub = _subscriber(clients, b, topic)
    pub = _burst_publisher(clients, b, mqtt5)
    started = time.monotonic()
    infos = _burst(pub, topic, 50)
    got = sub.drain(1.0)
    burst_took = time.monotonic() - started
    # 10 from the full bucket, plus what 10/s refills while the burst is read (slack for
    # a slow machine: the burst is read within ~0.2 s).
    assert 10 <= len(got) <= 12, f"{len(got)} of 50 delivered at 10/s"
    delivered = sorted(_index(m) for m in got)
    if mqtt5:
        codes = {i: pub._wait_ack(info.mid, "PUBACK", 5)[0] for i, info in enumerate(infos)}
        assert [i for i, code in codes.items() if code == 0] == delivered, codes
        assert all(code == QUOTA_EXCEEDED for i, code in codes.items() if i not in delivered), codes
    else:
        acked = [i for i, info in enumerate(infos) if info.is_published()]
        assert acked == delivered, "PUBACKs exactly for the delivered publishes"
    line = b.wait_log(pub.client_id, ["publishes_per_connection_per_sec"])
    assert "dropped=" in line, line
    # The connection stays open and works again in the next second.
    time.sleep(max(0.0, 1.1 - burst_took))
    pub.publish(topic, b"again", 1, timeout=5)
    assert sub.expect(5, topic=topic).payload == b"again"
    b.assert_running()


def test_bytes_over_the_rate_are_delayed_not_lost(broker, clients):
    b = broker(bytes_per_connection_per_sec=2000)
    topic = f"bytes/{uid('t')}"
    sub = _subscriber(clients, b, topic)
    pub = _burst_publisher(clients, b, mqtt5=False)
    started = time.monotonic()
    # 8 PUBLISHes of ~1,020 bytes: two go at once (the second into debt), then one every
    # ~0.51 s; the subscriber's own 2,000 B/s keeps in step.
    infos = _burst(pub, topic, 8, size=1000)
    early = sub.drain(0.4)
    assert len(early) <= 3, f"{len(early)} of 8 KB delivered in 0.4 s at 2,000 B/s"
    rest = [sub.expect(6, topic=topic) for _ in range(8 - len(early))]
    took = time.monotonic() - started
    assert [_index(m) for m in early + rest] == list(range(8)), "all delivered, in order"
    assert took >= 2.5, f"8 KB at 2,000 B/s took {took:.2f} s"
    for info in infos:
        info.wait_for_publish(2)
    assert all(info.is_published() for info in infos), "every PUBACK comes, later"
    b.wait_log(pub.client_id, ["bytes_per_connection_per_sec"])
    pub.publish(topic, b"open", 1, timeout=5)
    b.assert_running()


def test_no_throttling_by_default(broker, clients):
    b = broker()
    topic = f"free/{uid('t')}"
    sub = _subscriber(clients, b, topic)
    pub = _burst_publisher(clients, b, mqtt5=False)
    infos = _burst(pub, topic, 300)
    got = [sub.expect(5, topic=topic) for _ in range(300)]
    assert [_index(m) for m in got] == list(range(300))
    for info in infos:
        info.wait_for_publish(5)
    assert all(info.is_published() for info in infos)
    assert not b.log_lines_with("per_connection_per_sec"), "no rate limit acted"


def test_iot_core_preset_sets_100_publishes_and_512_kib_per_second(broker, clients):
    b = broker(iot_core_rate_limits=True)
    assert b.log_lines_with("rate limits on", "publishes_per_sec=100", "bytes_per_sec=524288")
    topic = f"preset/{uid('t')}"
    sub = _subscriber(clients, b, topic)
    pub = _burst_publisher(clients, b, mqtt5=False)
    infos = _burst(pub, topic, 150)
    got = sub.drain(1.0)
    assert 100 <= len(got) <= 110, f"{len(got)} of 150 delivered at 100/s"
    assert [i for i, info in enumerate(infos) if info.is_published()] == sorted(
        _index(m) for m in got)

    # 10 × 120,000 bytes = 1.2 MB at 512 KiB/s: past the first 512 KiB the rest waits,
    # ≥ 1.29 s (unthrottled this takes a small fraction of that).
    time.sleep(1.0)  # a full publish budget again
    big = f"preset-big/{uid('t')}"
    sub.subscribe(big, 1)
    started = time.monotonic()
    _burst(pub, big, 10, size=120_000)
    sizes = [len(sub.expect(6, topic=big).payload) for _ in range(10)]
    took = time.monotonic() - started
    assert sizes == [120_000] * 10
    assert took >= 1.0, f"1.2 MB at 512 KiB/s took only {took:.2f} s"
