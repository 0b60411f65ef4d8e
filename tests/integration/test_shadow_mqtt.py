"""The Device Shadow service over MQTT (facts §3, §5 items 15–20): the official Python
SDK's shadow clients, paho clients for IoT Core's texts and limits, durability across
SIGKILL, and policies on the shadow topics."""

from __future__ import annotations

import json
import queue
import time
from concurrent.futures import Future

import pytest

from helpers import uid
from mqttraw import publish_packet
from paho5 import Paho5

awscrt = pytest.importorskip("awscrt")
from awscrt import mqtt, mqtt5, mqtt_request_response  # noqa: E402
from awsiot import ServiceStreamOptions, V2ServiceException, iotshadow  # noqa: E402

T = 10
ARN = "arn:aws:iot:us-east-1:123456789012"
DURABLE = {"in_memory": False}


def prefix(thing: str, shadow: str | None = None) -> str:
    if shadow is None:
        return f"$aws/things/{thing}/shadow"
    return f"$aws/things/{thing}/shadow/name/{shadow}"


class ShadowRequests:
    """A paho client subscribed to every answer of one shadow; `call` publishes a
    request and returns its answers by last topic level."""

    def __init__(self, client, thing: str, shadow: str | None = None):
        self.client, self.prefix = client, prefix(thing, shadow)
        for op in ("get", "update", "delete"):
            assert client.subscribe(f"{self.prefix}/{op}/+", 1) == [1]

    def call(self, op: str, payload, timeout: float = T) -> dict:
        """{"accepted" | "rejected": body, and for an accepted update "delta"? and
        "documents"}."""
        body = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
        self.client.publish(f"{self.prefix}/{op}", body, 1)
        return self.answers(op, timeout)

    def answers(self, op: str, timeout: float = T) -> dict:
        got = {}
        deadline = time.monotonic() + timeout
        while True:
            m = self.client.expect(max(0.0, deadline - time.monotonic()))
            level = m.topic[len(f"{self.prefix}/{op}/"):]
            if not m.topic.startswith(f"{self.prefix}/{op}/"):
                continue
            got[level] = m.json()
            # An accepted update ends with /documents; everything else with its answer.
            if level == "rejected" or level == "documents" or (level == "accepted" and op != "update"):
                return got


def is_timestamp(value) -> bool:
    return isinstance(value, int) and abs(value - time.time()) < 120


# ---- the official SDK ----------------------------------------------------------------------

def test_iot_shadow_client_v1_over_mqtt311(broker):
    """IotShadowClient (exact-topic subscriptions) over the CRT's MQTT 3.1.1 connection:
    get / update / delete on a classic and a named shadow, and a delta."""
    b = broker()
    thing = uid("crt-thing")
    connection = mqtt.Connection(client=mqtt.Client(None, None), host_name=b.host, port=b.port,
                                 client_id=uid("crt311"), clean_session=True, keep_alive_secs=30)
    connection.connect().result(T)
    try:
        shadows = iotshadow.IotShadowClient(connection)
        answers: "queue.Queue" = queue.Queue()
        qos = mqtt.QoS.AT_LEAST_ONCE

        def on(kind):
            return lambda response: answers.put((kind, response))

        for kind, subscribe, request in [
            ("update/accepted", shadows.subscribe_to_update_shadow_accepted, iotshadow.UpdateShadowSubscriptionRequest),
            ("update/rejected", shadows.subscribe_to_update_shadow_rejected, iotshadow.UpdateShadowSubscriptionRequest),
            ("delta", shadows.subscribe_to_shadow_delta_updated_events, iotshadow.ShadowDeltaUpdatedSubscriptionRequest),
            ("get/accepted", shadows.subscribe_to_get_shadow_accepted, iotshadow.GetShadowSubscriptionRequest),
            ("get/rejected", shadows.subscribe_to_get_shadow_rejected, iotshadow.GetShadowSubscriptionRequest),
            ("delete/accepted", shadows.subscribe_to_delete_shadow_accepted, iotshadow.DeleteShadowSubscriptionRequest),
        ]:
            future, _ = subscribe(request(thing_name=thing), qos, on(kind))
            future.result(T)
        for kind, subscribe, request in [
            ("named update/accepted", shadows.subscribe_to_update_named_shadow_accepted,
             iotshadow.UpdateNamedShadowSubscriptionRequest),
            ("named get/accepted", shadows.subscribe_to_get_named_shadow_accepted,
             iotshadow.GetNamedShadowSubscriptionRequest),
            ("named delete/accepted", shadows.subscribe_to_delete_named_shadow_accepted,
             iotshadow.DeleteNamedShadowSubscriptionRequest),
        ]:
            future, _ = subscribe(request(thing_name=thing, shadow_name="cfg"), qos, on(kind))
            future.result(T)

        def expect(kind):
            while True:
                got_kind, response = answers.get(timeout=T)
                if got_kind == kind:
                    return response

        shadows.publish_get_shadow(iotshadow.GetShadowRequest(thing_name=thing, client_token="g0"), qos).result(T)
        missing = expect("get/rejected")
        assert (missing.code, missing.message, missing.client_token) == (
            404, f"No shadow exists with name: '{thing}'", "g0")

        state = iotshadow.ShadowState(desired={"color": "red", "level": 3})
        shadows.publish_update_shadow(
            iotshadow.UpdateShadowRequest(thing_name=thing, state=state, client_token="u1"), qos).result(T)
        accepted = expect("update/accepted")
        assert (accepted.version, accepted.client_token) == (1, "u1")
        assert accepted.state.desired == {"color": "red", "level": 3}
        delta = expect("delta")
        assert delta.state == {"color": "red", "level": 3} and delta.version == 1

        reported = iotshadow.ShadowState(reported={"color": "red", "level": 1})
        shadows.publish_update_shadow(
            iotshadow.UpdateShadowRequest(thing_name=thing, state=reported, client_token="u2"), qos).result(T)
        assert expect("update/accepted").version == 2
        shadows.publish_get_shadow(iotshadow.GetShadowRequest(thing_name=thing, client_token="g1"), qos).result(T)
        got = expect("get/accepted")
        assert (got.version, got.client_token) == (2, "g1")
        assert got.state.delta == {"level": 3}
        assert got.state.reported == {"color": "red", "level": 1}

        named = iotshadow.ShadowState(reported={"fw": "1.0"})
        shadows.publish_update_named_shadow(iotshadow.UpdateNamedShadowRequest(
            thing_name=thing, shadow_name="cfg", state=named, client_token="n1"), qos).result(T)
        assert expect("named update/accepted").version == 1, "a named shadow numbers its own versions"
        shadows.publish_get_named_shadow(iotshadow.GetNamedShadowRequest(
            thing_name=thing, shadow_name="cfg", client_token="n2"), qos).result(T)
        assert expect("named get/accepted").state.reported == {"fw": "1.0"}
        shadows.publish_delete_named_shadow(iotshadow.DeleteNamedShadowRequest(
            thing_name=thing, shadow_name="cfg", client_token="n3"), qos).result(T)
        assert expect("named delete/accepted").version == 1

        shadows.publish_delete_shadow(iotshadow.DeleteShadowRequest(thing_name=thing, client_token="d1"), qos).result(T)
        gone = expect("delete/accepted")
        assert (gone.version, gone.client_token) == (2, "d1")
    finally:
        connection.disconnect().result(T)


def test_iot_shadow_client_v2_over_mqtt5(broker):
    """IotShadowClientV2 over an MQTT 5 client: it subscribes to `…/<op>/+` and matches
    answers by the clientToken it generates; a delta stream on the classic shadow."""
    b = broker()
    thing = uid("crt5-thing")
    connected, stopped = Future(), Future()
    client = mqtt5.Client(mqtt5.ClientOptions(
        host_name=b.host, port=b.port,
        connect_options=mqtt5.ConnectPacket(client_id=uid("crt5"), keep_alive_interval_sec=60),
        on_lifecycle_event_connection_success_fn=lambda d: connected.done() or connected.set_result(d),
        on_lifecycle_event_stopped_fn=lambda d: stopped.done() or stopped.set_result(d)))
    client.start()
    try:
        connected.result(T)
        shadows = iotshadow.IotShadowClientV2(client, mqtt_request_response.ClientOptions(
            max_request_response_subscriptions=4, max_streaming_subscriptions=2,
            operation_timeout_in_seconds=T))
        deltas: "queue.Queue" = queue.Queue()
        established = Future()

        def status(event):
            if event.type == mqtt_request_response.SubscriptionStatusEventType.SUBSCRIPTION_ESTABLISHED:
                established.done() or established.set_result(True)

        stream = shadows.create_shadow_delta_updated_stream(
            iotshadow.ShadowDeltaUpdatedSubscriptionRequest(thing_name=thing),
            ServiceStreamOptions(deltas.put, subscription_status_listener=status))
        stream.open()
        established.result(T)

        with pytest.raises(V2ServiceException) as missing:
            shadows.get_shadow(iotshadow.GetShadowRequest(thing_name=thing)).result(T)
        assert missing.value.modeled_error.code == 404

        updated = shadows.update_shadow(iotshadow.UpdateShadowRequest(
            thing_name=thing, state=iotshadow.ShadowState(desired={"on": True}))).result(T)
        assert updated.version == 1 and updated.state.desired == {"on": True}
        delta = deltas.get(timeout=T)
        assert delta.state == {"on": True} and delta.version == 1

        got = shadows.get_shadow(iotshadow.GetShadowRequest(thing_name=thing)).result(T)
        assert got.state.delta == {"on": True} and got.version == 1

        named = shadows.update_named_shadow(iotshadow.UpdateNamedShadowRequest(
            thing_name=thing, shadow_name="cfg",
            state=iotshadow.ShadowState(reported={"fw": "2"}))).result(T)
        assert named.version == 1
        got = shadows.get_named_shadow(iotshadow.GetNamedShadowRequest(
            thing_name=thing, shadow_name="cfg")).result(T)
        assert got.state.reported == {"fw": "2"}
        deleted = shadows.delete_named_shadow(iotshadow.DeleteNamedShadowRequest(
            thing_name=thing, shadow_name="cfg")).result(T)
        assert deleted.version == 1
        deleted = shadows.delete_shadow(iotshadow.DeleteShadowRequest(thing_name=thing)).result(T)
        assert deleted.version == 1
        with pytest.raises(V2ServiceException) as conflict:
            shadows.update_shadow(iotshadow.UpdateShadowRequest(
                thing_name=thing, state=iotshadow.ShadowState(desired={"on": False}), version=7)).result(T)
        assert (conflict.value.modeled_error.code, conflict.value.modeled_error.message) == (409, "Version conflict")
        del stream  # the CRT closes a stream when it is collected
    finally:
        client.stop()
        stopped.result(T)


# ---- texts and limits (paho) ----------------------------------------------------------------

def test_update_answers_have_iot_cores_shapes(broker, clients):
    """Items 15–17: accepted / delta / documents shapes, merge, null deletes, arrays."""
    b = broker()
    thing = uid("lamp")
    s = ShadowRequests(clients.paho(b), thing)
    first = s.call("update", {"state": {"desired": {"a": 1, "b": {"c": 2}}}, "clientToken": "t1"})
    accepted = first["accepted"]
    assert set(accepted) == {"state", "metadata", "version", "timestamp", "clientToken"}, accepted
    assert accepted["state"] == {"desired": {"a": 1, "b": {"c": 2}}}
    meta = accepted["metadata"]["desired"]
    assert is_timestamp(meta["a"]["timestamp"]) and is_timestamp(meta["b"]["c"]["timestamp"]), meta
    assert (accepted["version"], accepted["clientToken"]) == (1, "t1")
    assert is_timestamp(accepted["timestamp"])
    delta = first["delta"]
    assert delta["state"] == {"a": 1, "b": {"c": 2}}
    assert (delta["version"], delta["clientToken"]) == (1, "t1")
    assert is_timestamp(delta["metadata"]["a"]["timestamp"]), delta
    documents = first["documents"]
    assert documents["current"]["state"] == {"desired": {"a": 1, "b": {"c": 2}}}
    assert documents["current"]["version"] == 1 and documents["clientToken"] == "t1"

    second = s.call("update", {"state": {"reported": {"b": {"c": 2}}}})
    assert "delta" not in second, "a reported update that leaves the delta alone publishes none"
    assert second["documents"]["previous"]["version"] == 1
    assert second["documents"]["current"]["state"]["reported"] == {"b": {"c": 2}}
    got = s.call("get", {"clientToken": "g"})["accepted"]
    assert got["state"]["delta"] == {"a": 1}
    assert got["state"]["desired"] == {"a": 1, "b": {"c": 2}}, "desired is not cleared"
    assert (got["version"], got["clientToken"]) == (2, "g")

    s.call("update", {"state": {"desired": {"a": None}}})
    got = s.call("get", "")["accepted"]
    assert got["state"]["desired"] == {"b": {"c": 2}} and "delta" not in got["state"], got
    assert "clientToken" not in got

    s.call("update", {"state": {"desired": {"arr": [1, 2, 3]}}})
    s.call("update", {"state": {"desired": {"arr": [1]}}})
    got = s.call("get", "")["accepted"]
    assert got["state"]["desired"]["arr"] == [1], "arrays are replaced whole"
    stamps = got["metadata"]["desired"]["arr"]
    assert isinstance(stamps, list) and len(stamps) == 1 and is_timestamp(stamps[0]["timestamp"])
    refused = s.call("update", {"state": {"desired": {"arr": [None, "x"]}}, "clientToken": "n"})
    assert refused["rejected"]["code"] == 400 and refused["rejected"]["clientToken"] == "n"


def test_versions_conflicts_and_missing_shadows(broker, clients):
    """Item 18: 409 shape, delete then re-create continues the version, 404 texts;
    item 20: named and classic shadows are independent."""
    b = broker()
    thing = uid("lamp")
    c = clients.paho(b)
    classic, named = ShadowRequests(c, thing), ShadowRequests(c, thing, "x")
    assert classic.call("update", {"state": {"reported": {"on": 1}}})["accepted"]["version"] == 1
    assert classic.call("update", {"state": {"reported": {"on": 2}}, "version": 1})["accepted"]["version"] == 2
    conflict = classic.call("update", {"state": {"reported": {"on": 3}}, "version": 1, "clientToken": "c9"})
    rejection = conflict["rejected"]
    assert {k: rejection[k] for k in ("code", "message", "clientToken")} == {
        "code": 409, "message": "Version conflict", "clientToken": "c9"}
    assert set(rejection) <= {"code", "message", "clientToken", "timestamp"}, rejection

    missing = named.call("get", {"clientToken": "m"})["rejected"]
    assert (missing["code"], missing["message"], missing["clientToken"]) == (
        404, "No shadow exists with name: 'x'", "m")
    assert named.call("delete", "")["rejected"]["message"] == "No shadow exists with name: 'x'"
    assert named.call("update", {"state": {"desired": {"z": 1}}})["accepted"]["version"] == 1
    assert classic.call("get", "")["accepted"]["state"] == {"reported": {"on": 2}}, "independent"

    gone = classic.call("delete", {"clientToken": "d"})["accepted"]
    assert (gone["version"], gone["clientToken"]) == (2, "d") and is_timestamp(gone["timestamp"])
    assert set(gone) == {"version", "timestamp", "clientToken"}, gone
    assert classic.call("get", "")["rejected"]["message"] == f"No shadow exists with name: '{thing}'"
    assert classic.call("update", {"state": {"desired": {"on": 1}}})["accepted"]["version"] == 3
    assert named.call("get", "")["accepted"]["version"] == 1


def test_validation_texts_and_sizes(broker, clients):
    """Item 19: IoT Core's 400 texts, 413 over 8 KB, the nesting limit; bad names."""
    b = broker()
    s = ShadowRequests(clients.paho(b), uid("lamp"))
    cases = [
        (b"not json", "Invalid JSON"),
        ({"clientToken": "x"}, "Missing required node: state"),
        ({"state": 1}, "State node must be an object"),
        ({"state": {"desired": 1}}, "Desired node must be an object"),
        ({"state": {"other": {}}}, "State contains an invalid node"),
        ({"state": {}, "clientToken": "x" * 65}, "Invalid clientToken"),
        ({"state": {}, "version": -1}, "Invalid version"),
        ({"state": {"desired": {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}}},
         "JSON contains too many levels of nesting; maximum is 6"),
    ]
    for payload, message in cases:
        rejection = s.call("update", payload)["rejected"]
        assert (rejection["code"], rejection["message"]) == (400, message), (payload, rejection)
    six = {"state": {"desired": {"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}}}
    assert s.call("update", six)["accepted"]["version"] == 1
    big = s.call("update", {"state": {"reported": {"blob": "x" * 8200}}, "clientToken": "big"})["rejected"]
    assert (big["code"], big["message"], big["clientToken"]) == (
        413, "The payload exceeds the maximum size allowed", "big")

    c = clients.paho(b)
    bad = ShadowRequests(c, "bad.thing")
    rejection = bad.call("get", {"clientToken": "b"})["rejected"]
    assert rejection["code"] == 400 and "thing name" in rejection["message"], rejection
    assert rejection["clientToken"] == "b"
    bad_named = ShadowRequests(c, "lamp", "bad.name")
    assert "shadow name" in bad_named.call("update", {"state": {}})["rejected"]["message"]
    b.wait_log("bad.thing", ["shadow request rejected"])


def test_requests_in_flight_per_thing_are_limited_to_ten(broker, clients):
    """Item 19: with a slow disk, the 11th request of one thing not yet answered gets 429;
    another thing is not affected."""
    b = broker(group_commit_max_delay="300ms", **DURABLE)
    thing = uid("busy")
    c = clients.paho(b)
    s = ShadowRequests(c, thing)
    for n in range(11):
        c.client.publish(f"{prefix(thing)}/update", json.dumps(
            {"state": {"reported": {"n": n}}, "clientToken": f"r{n}"}), qos=0)
    # 10 × (accepted, documents: a reported-only update has no delta) and one rejected.
    answers = [c.expect(T) for _ in range(10 * 2 + 1)]
    assert c.drain(0.2) == []
    accepted = [m.json()["clientToken"] for m in answers if m.topic.endswith("/update/accepted")]
    rejected = [m.json() for m in answers if m.topic.endswith("/update/rejected")]
    assert len(accepted) == 10, [m.topic for m in answers]
    assert accepted == [f"r{n}" for n in range(11) if f"r{n}" in accepted], "in request order"
    assert len(rejected) == 1, rejected
    assert (rejected[0]["code"], rejected[0]["message"]) == (429, "Too Many Requests")
    assert rejected[0]["clientToken"] not in accepted
    b.wait_log(thing, ["shadow_inflight_per_thing (10) reached"])
    assert s.call("get", "")["accepted"]["version"] == 10


def test_requests_per_second_per_thing_are_limited(broker, clients):
    b = broker(shadow_requests_per_thing_per_sec=3)
    thing = uid("rate")
    c = clients.paho(b)
    s = ShadowRequests(c, thing)
    for n in range(6):  # back to back: well within a second
        c.client.publish(f"{prefix(thing)}/get", json.dumps({"clientToken": f"g{n}"}), qos=0)
    answers = [s.answers("get")["rejected"] for _ in range(6)]
    codes = {a["clientToken"]: a["code"] for a in answers}
    assert [codes[f"g{n}"] for n in range(3)] == [404, 404, 404], codes
    assert 429 in [codes[f"g{n}"] for n in range(3, 6)], codes
    b.wait_log(thing, ["shadow_requests_per_thing_per_sec (3/s) exceeded"])
    assert ShadowRequests(c, uid("other")).call("get", "")["rejected"]["code"] == 404


def test_clients_may_not_publish_answers(broker, clients):
    """Answer topics are the service's: MQTT 5 PUBACK 0x87, MQTT 3.1.1 connection closed."""
    b = broker()
    thing = uid("lamp")
    watcher = ShadowRequests(clients.paho(b), thing)
    v5 = clients.track(Paho5(b.port, uid("forger5")).connect())
    code, _ = v5.publish_ack(f"{prefix(thing)}/update/accepted", b'{"version": 99}', qos=1)
    assert code == 0x87
    raw = clients.raw(b)
    forger = uid("forger")
    raw.connect_ok(forger)
    raw.send(publish_packet(f"{prefix(thing)}/get/accepted", b"{}", 1, pid=1))
    assert raw.closed_within(5)
    b.wait_log(forger, ["publish refused"])
    # Nothing reached the subscriber but the real answer.
    assert watcher.call("get", "")["rejected"]["code"] == 404


# ---- durability -----------------------------------------------------------------------------

def kill_and_restart(b):
    b.proc.kill()
    b.proc.wait(5)
    b._log.close()
    b.start()


def test_an_accepted_update_survives_sigkill(broker, clients):
    b = broker(**DURABLE)
    thing = uid("durable")
    s = ShadowRequests(clients.paho(b), thing)
    s.call("update", {"state": {"desired": {"a": 1}}})
    assert s.call("update", {"state": {"reported": {"a": 1}}})["accepted"]["version"] == 2
    named = ShadowRequests(clients.paho(b), thing, "cfg")
    assert named.call("update", {"state": {"desired": {"x": 1}}})["accepted"]["version"] == 1
    assert named.call("delete", "")["accepted"]["version"] == 1
    kill_and_restart(b)
    c = clients.paho(b)
    got = ShadowRequests(c, thing).call("get", "")["accepted"]
    assert got["version"] == 2 and got["state"] == {"desired": {"a": 1}, "reported": {"a": 1}}
    named = ShadowRequests(c, thing, "cfg")
    assert named.call("get", "")["rejected"]["code"] == 404, "still deleted"
    assert named.call("update", {"state": {}})["accepted"]["version"] == 2, "version continues"
    kill_and_restart(b)
    again = ShadowRequests(clients.paho(b), thing, "cfg").call("get", "")["accepted"]
    assert again["version"] == 2


# ---- policies -------------------------------------------------------------------------------

def test_answers_need_receive_and_a_denied_request_changes_nothing(broker, clients):
    thing, other = uid("pol"), uid("pol2")
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{ARN}:client/*"},
            {"Effect": "Allow", "Action": "iot:Publish", "Resource": [
                f"{ARN}:topic/$aws/things/{thing}/shadow/update",
                f"{ARN}:topic/$aws/things/*/shadow/get"]},
            {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": f"{ARN}:topicfilter/$aws/things/*"},
            {"Effect": "Allow", "Action": "iot:Receive", "Resource": [
                f"{ARN}:topic/$aws/things/{thing}/shadow/update/delta",
                f"{ARN}:topic/$aws/things/*/shadow/get/*"]},
        ],
    }
    document = json.dumps(policy)
    b = broker(anonymous=["shadowPolicy"],
               extra_toml=f"[[policies]]\nname = \"shadowPolicy\"\ndocument = '''{document}'''\n")
    c = clients.paho(b)
    assert c.subscribe(f"{prefix(thing)}/update/accepted", 1) == [1]
    assert c.subscribe(f"{prefix(thing)}/update/delta", 1) == [1]
    c.publish(f"{prefix(thing)}/update", json.dumps({"state": {"desired": {"on": 1}}}), 1)
    delta = c.expect(T)
    assert delta.topic == f"{prefix(thing)}/update/delta", "accepted is not Receive-allowed"
    assert c.drain(0.3) == []

    device = uid("denied")
    raw = clients.raw(b)
    raw.connect_ok(device)
    raw.send(publish_packet(f"{prefix(other)}/update", b'{"state": {"desired": {"on": 1}}}', 1, pid=1))
    assert raw.closed_within(5), "a denied PUBLISH closes a 3.1.1 connection"
    b.wait_log(device, ["publish denied"])
    rejection = ShadowRequests(c, other).call("get", "")["rejected"]
    assert rejection["code"] == 404, "the denied update created nothing"
    assert ShadowRequests(c, thing).call("get", "")["accepted"]["version"] == 1
