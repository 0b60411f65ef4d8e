"""Retained messages, with IoT Core's delivery rule (exact filters only, by default)."""

from helpers import uid


def _first_after_subscribe(client, topic_filter, fence_pub, fence_topic):
    """Subscribe, then publish a non-retained fence: returns everything up to the fence."""
    client.subscribe(topic_filter, 1)
    fence_pub.publish(fence_topic, b"fence", 1)
    return client.collect_until(fence_topic, timeout=10)


def test_retained_set_replace_delete(broker, clients):
    b = broker()
    t = f"ret/{uid('t')}"
    pub = clients.paho(b)

    pub.publish(t, b"v1", 1, retain=True)
    s1 = clients.paho(b)
    s1.subscribe(t, 1)
    m = s1.expect()
    assert (m.topic, m.payload, m.retain) == (t, b"v1", True)

    pub.publish(t, b"v2", 1, retain=True)  # replaces
    s2 = clients.paho(b)
    s2.subscribe(t, 1)
    m = s2.expect()
    assert (m.payload, m.retain) == (b"v2", True)
    pub.publish(t, b"", 1, retain=True)  # deletes

    s3 = clients.paho(b)
    got = _first_after_subscribe(s3, t, pub, t)
    assert [(m.payload, m.retain) for m in got] == [(b"fence", False)], \
        f"retained message still delivered after an empty retained publish: {got}"


def test_live_delivery_of_retained_publish_has_retain_0(broker, clients):
    """MQTT 3.1.1 §3.3.1.3: a PUBLISH forwarded to an established subscription has RETAIN=0."""
    b = broker()
    t = f"ret/{uid('t')}"
    sub = clients.paho(b)
    sub.subscribe(t, 1)
    clients.paho(b).publish(t, b"live", 1, retain=True)
    m = sub.expect()
    assert m.payload == b"live"
    assert m.retain is False


def test_retained_qos_and_exact_subscriber(broker, clients):
    """A retained QoS 1 message is delivered at min(pub, sub) QoS with retain set."""
    b = broker()
    t = f"ret/{uid('t')}/x"
    clients.paho(b).publish(t, b"r", 1, retain=True)
    s = clients.paho(b)
    s.subscribe(t, 1)
    m = s.expect()
    assert (m.payload, m.retain, m.qos) == (b"r", True, 1)


def test_wildcard_subscriber_gets_no_retained_by_default(broker, clients):
    b = broker()
    base = uid("retw")
    t = f"{base}/x/t"
    pub = clients.paho(b)
    pub.publish(t, b"kept", 1, retain=True)
    for filt in (f"{base}/+/t", f"{base}/#"):
        s = clients.paho(b)
        got = _first_after_subscribe(s, filt, pub, t)
        assert [(m.payload, m.retain) for m in got] == [(b"fence", False)], \
            f"wildcard filter {filt!r} received a retained message (IoT Core does not): {got}"
    # the exact filter still gets it
    s = clients.paho(b)
    s.subscribe(t, 1)
    m = s.expect()
    assert (m.payload, m.retain) == (b"kept", True)


def test_retained_on_wildcard_switch(broker, clients):
    b = broker(retained_on_wildcard=True)
    base = uid("retw")
    t = f"{base}/x/t"
    pub = clients.paho(b)
    pub.publish(t, b"kept", 1, retain=True)
    for filt in (f"{base}/+/t", f"{base}/#"):
        s = clients.paho(b)
        s.subscribe(filt, 1)
        m = s.expect()
        assert (m.topic, m.payload, m.retain) == (t, b"kept", True), filt
