"""AWS IoT lifecycle events published by the broker on $aws/events/..."""

import time

from helpers import uid
from mqttraw import publish_packet

CONNECTED = "$aws/events/presence/connected/"
DISCONNECTED = "$aws/events/presence/disconnected/"
SUBSCRIBED = "$aws/events/subscriptions/subscribed/"
UNSUBSCRIBED = "$aws/events/subscriptions/unsubscribed/"


def _now_ms():
    return int(time.time() * 1000)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _check_common(ev, cid, event_type):
    assert ev["clientId"] == cid, ev
    assert ev["eventType"] == event_type, ev
    assert _is_int(ev["timestamp"]), f"timestamp must be an integer (ms): {ev}"
    assert abs(ev["timestamp"] - _now_ms()) < 60_000, f"timestamp not in ms / not now: {ev}"
    assert isinstance(ev["sessionIdentifier"], str) and ev["sessionIdentifier"], ev
    assert isinstance(ev["principalIdentifier"], str), ev
    if event_type in ("connected", "disconnected"):  # subscription events have no versionNumber
        assert _is_int(ev["versionNumber"]), ev


def test_connected_and_disconnected_events(broker, clients):
    b = broker()
    obs = clients.paho(b)
    obs.subscribe("$aws/events/#", 1)
    cid = uid("life")
    r = clients.raw(b)
    r.connect_ok(cid)

    m = obs.expect(topic=CONNECTED + cid)
    assert m.qos == 1, "lifecycle events are published at QoS 1 (our choice, IOT-FACTS)"
    con = m.json()
    _check_common(con, cid, "connected")
    assert isinstance(con["ipAddress"], str) and "127.0.0.1" in con["ipAddress"], con

    r.disconnect()
    assert r.closed_within(5)
    dis = obs.expect(topic=DISCONNECTED + cid).json()
    _check_common(dis, cid, "disconnected")
    assert dis["clientInitiatedDisconnect"] is True, dis
    assert dis["disconnectReason"] == "CLIENT_INITIATED_DISCONNECT", dis
    assert dis["sessionIdentifier"] == con["sessionIdentifier"], (con, dis)


def test_presence_filter_receives_connected_events(broker, clients):
    b = broker()
    obs = clients.paho(b)
    obs.subscribe("$aws/events/presence/connected/+", 1)
    ids = [uid("pres") for _ in range(3)]
    for cid in ids:
        clients.paho(b, cid)
    got = [obs.expect(topic=CONNECTED + cid).json()["clientId"] for cid in ids]
    assert got == ids


def test_subscribe_and_unsubscribe_events(broker, clients):
    b = broker()
    obs = clients.paho(b)
    obs.subscribe("$aws/events/subscriptions/#", 1)
    cid = uid("subev")
    r = clients.raw(b)
    r.connect_ok(cid)
    topics = [f"lc/{cid}/a", f"lc/{cid}/b/#"]
    r.subscribe([(t, 1) for t in topics])
    ev = obs.expect(topic=SUBSCRIBED + cid).json()
    _check_common(ev, cid, "subscribed")
    assert ev["topics"] == topics, ev

    r.unsubscribe([topics[0]])
    ev = obs.expect(topic=UNSUBSCRIBED + cid).json()
    _check_common(ev, cid, "unsubscribed")
    assert ev["topics"] == [topics[0]], ev


def test_connection_lost_event(broker, clients):
    b = broker()
    obs = clients.paho(b)
    obs.subscribe(DISCONNECTED + "+", 1)
    cid = uid("lost")
    r = clients.raw(b)
    r.connect_ok(cid)
    r.ping()
    r.close()  # no DISCONNECT
    ev = obs.expect(topic=DISCONNECTED + cid).json()
    _check_common(ev, cid, "disconnected")
    assert ev["clientInitiatedDisconnect"] is False, ev
    assert ev["disconnectReason"] == "CONNECTION_LOST", ev


def test_protocol_error_event_reason_client_error(broker, clients):
    """IOT-FACTS: a QoS 2 PUBLISH closes the connection with reason CLIENT_ERROR."""
    b = broker()
    obs = clients.paho(b)
    obs.subscribe(DISCONNECTED + "+", 1)
    cid = uid("cerr")
    r = clients.raw(b)
    r.connect_ok(cid)
    r.send(publish_packet("a/b", b"x", qos=2, pid=1))
    assert r.closed_within(5)
    ev = obs.expect(topic=DISCONNECTED + cid).json()
    assert ev["clientInitiatedDisconnect"] is False, ev
    assert ev["disconnectReason"] == "CLIENT_ERROR", ev


def test_client_id_with_wildcard_characters_gets_no_events(broker, clients):
    b = broker()
    obs = clients.paho(b)
    obs.subscribe("$aws/events/#", 1)
    odd = uid("odd") + "+x#"
    r = clients.raw(b)
    assert r.connect(odd).return_code == 0
    r.ping()
    normal = uid("normal")
    clients.paho(b, normal)
    got = obs.collect_until(CONNECTED + normal)
    assert [m.topic for m in got if odd in m.topic or odd in m.payload.decode()] == [], got
