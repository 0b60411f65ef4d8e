"""The things registry: boto3's `iot` client (only `endpoint_url` changes, signed by the
`[admin]` key) doing every thing operation with AWS's names, shapes and errors; `pubsub iot`
offline and online printing the same JSON; `[[things]]` applied at start; and the thing
policy variables at CONNECT, seen by certificate-authenticated MQTT clients (raw MQTT over
mutual TLS) as IoT Core resolves them: client id = thing name and the certificate attached.

Every wait is bounded (≤ 10 s); every broker is per test."""

from __future__ import annotations

import json
import re
import uuid

import pytest

from conftest import render_config
from helpers import uid
from mqttraw import publish_packet
from test_control_plane import (ADMIN_TOML, ARN, CP_LISTENERS, T, admin, api_error, cp_broker,
                                create_policy, new_device)
from test_iot_offline_online import error_line, iot, normalize, ok
from tlscerts import (TlsRawClient, attempt_connect, certificate_toml, client_context, make_leaf,
                      policy_toml)

pytest.importorskip("boto3", reason="boto3 is in tests/integration/requirements.txt")

THING_ARN = f"{ARN}:thing"
IDENTITY = "us-east-1:5d1a3c3e-8f6b-4f0e-9d0a-2b7c4e1f9a10"

# Connect only when attached to the thing named like the client id; publish only under the
# thing's own name and its room attribute; subscribe and receive anything.
THING_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{ARN}:client/*",
     "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}},
    {"Effect": "Allow", "Action": "iot:Publish", "Resource": [
        f"{ARN}:topic/things/${{iot:Connection.Thing.ThingName}}/*",
        f"{ARN}:topic/rooms/${{iot:Connection.Thing.Attributes[room]}}"]},
    {"Effect": "Allow", "Action": ["iot:Subscribe", "iot:Receive"], "Resource": "*"},
]}


def thing_name(prefix: str = "thing") -> str:
    return uid(prefix)


# ============================================================================================
# boto3 iot: the operations, their shapes and their errors
# ============================================================================================

def test_create_describe_update_delete_with_aws_shapes_and_errors(broker):
    iot_api = admin(cp_broker(broker)).iot
    name = thing_name()
    made = iot_api.create_thing(thingName=name, attributePayload={"attributes": {"room": "lab"}})
    assert made["thingName"] == name and made["thingArn"] == f"{THING_ARN}/{name}", made
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                        made["thingId"]), made
    # An identical create succeeds with the same thing; a different one is refused.
    again = iot_api.create_thing(thingName=name, attributePayload={"attributes": {"room": "lab"}})
    assert again["thingId"] == made["thingId"], (made, again)
    code, status, _ = api_error(iot_api.create_thing, thingName=name,
                                attributePayload={"attributes": {"room": "hall"}})
    assert (code, status) == ("ResourceAlreadyExistsException", 409)

    d = iot_api.describe_thing(thingName=name)
    assert {k: d[k] for k in ("thingName", "thingId", "thingArn", "attributes", "version",
                              "defaultClientId")} == {
        "thingName": name, "thingId": made["thingId"], "thingArn": made["thingArn"],
        "attributes": {"room": "lab"}, "version": 1, "defaultClientId": name}, d
    assert "thingTypeName" not in d, d

    # merge keeps the others (an empty value removes one); replace drops them
    iot_api.update_thing(thingName=name, expectedVersion=1,
                         attributePayload={"attributes": {"floor": "2"}, "merge": True})
    assert iot_api.describe_thing(thingName=name)["attributes"] == {"room": "lab", "floor": "2"}
    iot_api.update_thing(thingName=name,
                         attributePayload={"attributes": {"room": ""}, "merge": True})
    assert iot_api.describe_thing(thingName=name)["attributes"] == {"floor": "2"}
    iot_api.update_thing(thingName=name, attributePayload={"attributes": {"colour": "red"}})
    d = iot_api.describe_thing(thingName=name)
    assert (d["attributes"], d["version"]) == ({"colour": "red"}, 4), d
    code, status, message = api_error(iot_api.update_thing, thingName=name, expectedVersion=1,
                                      attributePayload={"attributes": {"colour": "blue"}})
    assert (code, status) == ("VersionConflictException", 409), message
    assert iot_api.describe_thing(thingName=name)["attributes"] == {"colour": "red"}

    iot_api.update_thing(thingName=name, thingTypeName="lamp")
    assert iot_api.describe_thing(thingName=name)["thingTypeName"] == "lamp"
    iot_api.update_thing(thingName=name, removeThingType=True)
    assert "thingTypeName" not in iot_api.describe_thing(thingName=name)

    code, status, _ = api_error(iot_api.create_thing, thingName=thing_name(),
                                attributePayload={"attributes": {"a": "1", "b": "2", "c": "3",
                                                                 "d": "4"}})
    assert (code, status) == ("InvalidRequestException", 400), "4 attributes without a type"
    code, status, _ = api_error(iot_api.describe_thing, thingName=thing_name("missing"))
    assert (code, status) == ("ResourceNotFoundException", 404)
    code, status, _ = api_error(iot_api.update_thing, thingName=thing_name("missing"),
                                attributePayload={"attributes": {"a": "1"}})
    assert (code, status) == ("ResourceNotFoundException", 404)

    code, status, _ = api_error(iot_api.delete_thing, thingName=name, expectedVersion=1)
    assert (code, status) == ("VersionConflictException", 409)
    iot_api.delete_thing(thingName=name, expectedVersion=6)
    code, _, _ = api_error(iot_api.describe_thing, thingName=name)
    assert code == "ResourceNotFoundException"
    iot_api.delete_thing(thingName=name)  # a thing that does not exist: no error, as AWS


def test_list_things_pages_and_filters(broker):
    iot_api = admin(cp_broker(broker)).iot
    prefix = uid("list")
    names = [f"{prefix}-{i:02}" for i in range(7)]
    for i, name in enumerate(names):
        kw = {"thingTypeName": "sensor"} if i % 3 == 0 else {}
        iot_api.create_thing(thingName=name, attributePayload={
            "attributes": {"room": "kitchen" if i % 2 else "hall-2", "n": str(i)}}, **kw)

    seen, token, pages = [], None, 0
    while True:
        kw = {"nextToken": token} if token else {}
        page = iot_api.list_things(maxResults=3, **kw)
        pages += 1
        assert len(page["things"]) <= 3, page
        seen += [t["thingName"] for t in page["things"]]
        token = page.get("nextToken")
        if not token:
            break
    assert (seen, pages) == (names, 3)
    by_paginator = [t["thingName"] for p in iot_api.get_paginator("list_things").paginate(
        PaginationConfig={"PageSize": 2}) for t in p["things"]]
    assert by_paginator == names

    kitchen = iot_api.list_things(attributeName="room", attributeValue="kitchen")["things"]
    assert [t["thingName"] for t in kitchen] == names[1::2], kitchen
    entry = kitchen[0]
    assert set(entry) == {"thingName", "thingArn", "attributes", "version"}, entry
    assert entry["attributes"] == {"room": "kitchen", "n": "1"}, entry
    prefixed = iot_api.list_things(attributeName="room", attributeValue="hall",
                                   usePrefixAttributeValue=True)["things"]
    assert [t["thingName"] for t in prefixed] == names[0::2]
    typed = iot_api.list_things(thingTypeName="sensor")["things"]
    assert [t["thingName"] for t in typed] == names[0::3]
    assert all(t["thingTypeName"] == "sensor" for t in typed), typed
    code, status, _ = api_error(iot_api.list_things, maxResults=251)
    assert (code, status) == ("InvalidRequestException", 400)


def test_principals_attach_detach_and_list_both_ways(broker, tmp_path):
    iot_api = admin(cp_broker(broker)).iot
    dev = new_device(iot_api, tmp_path)
    a, b_ = thing_name("a"), thing_name("b")
    for name in (a, b_):
        iot_api.create_thing(thingName=name)
    iot_api.attach_thing_principal(thingName=a, principal=dev.arn)
    iot_api.attach_thing_principal(thingName=a, principal=dev.arn)  # again: no duplicate
    iot_api.attach_thing_principal(thingName=a, principal=IDENTITY)
    iot_api.attach_thing_principal(thingName=b_, principal=dev.arn)
    assert sorted(iot_api.list_thing_principals(thingName=a)["principals"]) == \
        sorted([dev.arn, IDENTITY])
    assert sorted(iot_api.list_principal_things(principal=dev.arn)["things"]) == sorted([a, b_])
    page = iot_api.list_principal_things(principal=dev.arn, maxResults=1)
    assert len(page["things"]) == 1 and page["nextToken"], page
    rest = iot_api.list_principal_things(principal=dev.arn, maxResults=1,
                                         nextToken=page["nextToken"])
    assert sorted(page["things"] + rest["things"]) == sorted([a, b_]) and "nextToken" not in rest
    assert iot_api.list_principal_things(principal=IDENTITY)["things"] == [a]
    # Attaching a thing does not move its version (only UpdateThing does).
    assert iot_api.describe_thing(thingName=a)["version"] == 1

    code, status, message = api_error(iot_api.delete_thing, thingName=a)
    assert (code, status) == ("InvalidRequestException", 400)
    assert "still attached to one or more principals" in message, message
    iot_api.update_certificate(certificateId=dev.id, newStatus="INACTIVE")
    code, status, _ = api_error(iot_api.delete_certificate, certificateId=dev.id)
    assert (code, status) == ("DeleteConflictException", 409), "a certificate attached to things"

    iot_api.detach_thing_principal(thingName=a, principal=dev.arn)
    iot_api.detach_thing_principal(thingName=a, principal=IDENTITY)
    assert iot_api.list_thing_principals(thingName=a)["principals"] == []
    assert iot_api.list_principal_things(principal=dev.arn)["things"] == [b_]
    iot_api.delete_thing(thingName=a)

    missing = thing_name("missing")
    for fn, kw in ((iot_api.attach_thing_principal, {"principal": IDENTITY}),
                   (iot_api.detach_thing_principal, {"principal": IDENTITY}),
                   (iot_api.list_thing_principals, {})):
        code, status, _ = api_error(fn, thingName=missing, **kw)
        assert (code, status) == ("ResourceNotFoundException", 404), fn
    unknown_cert = f"{ARN}:cert/{'ab' * 32}"
    code, status, _ = api_error(iot_api.attach_thing_principal, thingName=b_,
                                principal=unknown_cert)
    assert (code, status) == ("ResourceNotFoundException", 404), "an unregistered certificate"


# ============================================================================================
# pubsub iot: offline and online, the same JSON
# ============================================================================================

def run_thing_commands(location: list[str], workdir, data_dir) -> list[tuple[str, int, str, str]]:
    results = []

    def step(name: str, *args: str, expect_ok: bool = True) -> str:
        r = iot([name, *location, *args], workdir)
        if expect_ok:
            ok(r, f"{name} {' '.join(args)}")
        else:
            assert r.returncode != 0, f"`pubsub iot {name}` should fail: {r.stdout}"
        out = re.sub(r'"thingId": "[0-9a-f-]{36}"', '"thingId": "<ID>"',
                     normalize(r.stdout, data_dir, workdir))
        results.append((name, r.returncode, out, normalize(error_line(r.stderr), data_dir, workdir)))
        return r.stdout

    made = json.loads(step("create-thing", "--thing-name", "lamp-1",
                           "--attribute-payload", "attributes={room=kitchen,floor=1}"))
    assert made["thingArn"] == f"{THING_ARN}/lamp-1", made
    step("create-thing", "--thing-name", "lamp-2", "--thing-type-name", "lamp",
         "--attribute-payload", '{"attributes": {"room": "hall"}}')
    step("create-thing", "--thing-name", "lamp-3")
    step("create-thing", "--thing-name", "lamp-1", "--attribute-payload", "attributes={room=attic}",
         expect_ok=False)
    d = json.loads(step("describe-thing", "--thing-name", "lamp-1"))
    assert d["attributes"] == {"room": "kitchen", "floor": "1"} and d["version"] == 1, d
    assert step("update-thing", "--thing-name", "lamp-1", "--expected-version", "1",
                "--attribute-payload", "attributes={floor=},merge=true") == ""
    step("update-thing", "--thing-name", "lamp-1", "--expected-version", "1",
         "--attribute-payload", "attributes={floor=3}", expect_ok=False)
    assert json.loads(step("describe-thing", "--thing-name", "lamp-1"))["attributes"] == \
        {"room": "kitchen"}
    everything = json.loads(step("list-things", "--page-size", "1"))
    assert [t["thingName"] for t in everything["things"]] == ["lamp-1", "lamp-2", "lamp-3"]
    assert "NextToken" not in everything, everything
    first = json.loads(step("list-things", "--max-items", "2"))
    assert [t["thingName"] for t in first["things"]] == ["lamp-1", "lamp-2"] and first["NextToken"]
    rest = json.loads(step("list-things", "--starting-token", first["NextToken"]))
    assert [t["thingName"] for t in rest["things"]] == ["lamp-3"], rest
    step("list-things", "--attribute-name", "room", "--attribute-value", "hall")
    step("list-things", "--thing-type-name", "lamp")
    assert step("attach-thing-principal", "--thing-name", "lamp-1", "--principal", IDENTITY) == ""
    assert json.loads(step("list-thing-principals", "--thing-name", "lamp-1")) == \
        {"principals": [IDENTITY]}
    assert json.loads(step("list-principal-things", "--principal", IDENTITY)) == \
        {"things": ["lamp-1"]}
    step("delete-thing", "--thing-name", "lamp-1", expect_ok=False)
    assert step("detach-thing-principal", "--thing-name", "lamp-1", "--principal", IDENTITY) == ""
    assert step("delete-thing", "--thing-name", "lamp-1") == ""
    step("describe-thing", "--thing-name", "lamp-1", expect_ok=False)
    step("describe-thing", "--thing-name", "not/a/name", expect_ok=False)
    return results


def test_cli_offline_and_online_print_the_same(broker, tmp_path):
    overrides = {"listeners": {"http": "127.0.0.1:0"}, "extra_toml": ADMIN_TOML}
    offline = tmp_path / "offline"
    offline.mkdir()
    config = offline / "pubsub.toml"
    config.write_text(render_config(offline / "data", overrides))
    off = run_thing_commands(["--config", str(config)], offline, offline / "data")
    assert not (offline / "data" / "listeners.json").exists()

    b = broker(**overrides)
    on = run_thing_commands(["--config", str(b.config_path)], b.workdir, b.data_dir)
    b.assert_running()
    for path in ("/things/lamp-1", "/things/lamp-1/principals", "/principals/things"):
        assert b.log_lines_with("control plane request", path), f"online run did not call {path}"
    assert [r[0] for r in off] == [r[0] for r in on]
    for i, (o, n) in enumerate(zip(off, on)):
        assert o == n, (f"command {i} `{o[0]}` differs offline vs online:\n"
                        f"--- offline (exit {o[1]})\n{o[2]}{o[3]}\n"
                        f"--- online (exit {n[1]})\n{n[2]}{n[3]}")
    # the failures carry AWS's error names
    errors = {r[0] + str(i): r[3] for i, r in enumerate(off) if r[1]}
    joined = "\n".join(errors.values())
    for kind in ("ResourceAlreadyExistsException", "VersionConflictException",
                 "InvalidRequestException", "ResourceNotFoundException"):
        assert kind in joined, joined


# ============================================================================================
# [[things]] and the thing policy variables
# ============================================================================================

def publish_allowed(c: TlsRawClient, topic: str) -> None:
    """The device subscribes to `topic` and gets its own QoS 1 publish back."""
    assert c.subscribe(topic, 1) == [1]
    payload = uuid.uuid4().bytes
    c.publish(topic, payload, qos=1)
    m = c.next_publish(T)
    assert (m.topic, m.payload) == (topic, payload)


def publish_refused(c: TlsRawClient, topic: str) -> None:
    """A denied PUBLISH closes the connection (IoT Core)."""
    c.send(publish_packet(topic, b"x", 1, pid=c.next_pid()))
    assert c.closed_within(5), f"publishing to {topic} must be refused"


def test_thing_variables_resolve_for_an_attached_certificate_with_the_thing_as_client_id(
        broker, clients, tmp_path):
    b = cp_broker(broker)
    iot_api = admin(b).iot
    dev = new_device(iot_api, tmp_path)
    iot_api.attach_policy(policyName=create_policy(iot_api, THING_POLICY, "things"), target=dev.arn)
    lamp, other = thing_name("lamp"), thing_name("other")
    iot_api.create_thing(thingName=lamp, attributePayload={"attributes": {"room": "kitchen"}})
    iot_api.create_thing(thingName=other)
    iot_api.attach_thing_principal(thingName=lamp, principal=dev.arn)

    c = clients.track(TlsRawClient(b.mqtts_port, dev.ctx(b)))
    c.connect_ok(lamp)
    publish_allowed(c, f"things/{lamp}/state")
    publish_allowed(c, "rooms/kitchen")
    # Attributes change while connected: the next decision sees them.
    iot_api.update_thing(thingName=lamp, attributePayload={"attributes": {"room": "attic"}})
    publish_allowed(c, "rooms/attic")
    publish_refused(c, f"things/{other}/state")

    # TestAuthorization resolves the thing variables the same way for its clientId.
    def decision(client_id: str, topic: str) -> str:
        r = iot_api.test_authorization(principal=dev.arn, clientId=client_id, authInfos=[
            {"actionType": "PUBLISH", "resources": [f"{ARN}:topic/{topic}"]}])
        return r["authResults"][0]["authDecision"]
    assert decision(lamp, "rooms/attic") == "ALLOWED"
    assert decision(lamp, "rooms/kitchen") == "IMPLICIT_DENY"
    assert decision(other, f"things/{other}/state") == "IMPLICIT_DENY", "not attached"

    # IsAttached is false: for a thing the certificate is not attached to, and for a client
    # id that names no thing.
    for cid in (other, thing_name("nothing")):
        o = attempt_connect(b.mqtts_port, dev.ctx(b), cid)
        assert o.kind == "connack" and o.return_code == 5, f"{cid}: {o}"
    c2 = clients.track(TlsRawClient(b.mqtts_port, dev.ctx(b)))
    c2.connect_ok(lamp)
    publish_refused(c2, "rooms/kitchen")

    # Detached: the thing no longer resolves, the next CONNECT is refused.
    iot_api.detach_thing_principal(thingName=lamp, principal=dev.arn)
    o = attempt_connect(b.mqtts_port, dev.ctx(b), lamp)
    assert o.kind == "connack" and o.return_code == 5, o
    b.assert_running()


def test_declared_things_are_applied_at_start_and_resolve(broker, clients, tmp_path):
    leaf = make_leaf("things-dev").write(tmp_path / "certs", "dev")
    toml = ADMIN_TOML + policy_toml("thing_policy", THING_POLICY) + \
        certificate_toml(leaf, policies=["thing_policy"]) + (
            f'\n[[things]]\nname = "sensor-9"\nthing_type_name = "sensor"\n'
            f'principals = ["{leaf.arn}", "{IDENTITY}"]\nattributes = {{ room = "lab" }}\n')
    b = broker(listeners=CP_LISTENERS, extra_toml=toml)
    iot_api = admin(b).iot
    d = iot_api.describe_thing(thingName="sensor-9")
    assert (d["attributes"], d["thingTypeName"], d["version"]) == ({"room": "lab"}, "sensor", 1), d
    assert sorted(iot_api.list_thing_principals(thingName="sensor-9")["principals"]) == \
        sorted([leaf.arn, IDENTITY])
    ctx = client_context(b.ca_file, cert=leaf)
    c = clients.track(TlsRawClient(b.mqtts_port, ctx))
    c.connect_ok("sensor-9")
    publish_allowed(c, "rooms/lab")
    publish_allowed(c, "things/sensor-9/temp")
    c.close()

    # A restart applies the declaration again without changing the thing.
    b.stop()
    b.start()
    d = admin(b).iot.describe_thing(thingName="sensor-9")
    assert (d["version"], d["attributes"]) == (1, {"room": "lab"}), d
    assert not b.log_lines_with("[[things]]", "not active"), "[[things]] is active now"
