"""iot-data's Device Shadow API over HTTP (GetThingShadow, UpdateThingShadow,
DeleteThingShadow, ListNamedShadowsForThing) driven by boto3's `iot-data` client exactly
as against AWS (only `endpoint_url` changes), its effects on MQTT seen by an independent
paho subscriber, its authorization by a `[[credentials]]` key's policies, and the
`pubsub iot-data` CLI against the same API.

Facts: shared/IOT-FACTS-MQTT5-SHADOW.md §3.3 (documents), §3.5 (errors), §3.7 (paths),
§3.8 (authorization). Every wait is bounded (≤ 10 s); every broker is per test."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from authfn import credentials_toml, policy_toml
from conftest import BIN
from helpers import uid
from test_control_plane import (
    ADMIN_KEY, ADMIN_SECRET, ARN, BOTO_CONFIG, REGION, api_error, boto, cp_broker,
    endpoint,
)

boto3 = pytest.importorskip("boto3", reason="boto3 is in tests/integration/requirements.txt")
from botocore.config import Config  # noqa: E402

T = 10
HTTP_ONLY = {"http": "127.0.0.1:0"}
AKID, SECRET = "AKIASHADOWHTTPTEST01", "shadowHttpSecretKey/abcdefghijklmnopqrs"


def shadow_broker(broker, extra_toml: str = ""):
    """The control plane on `http`, the plain MQTT listener (anonymous: dev-allow-all)."""
    return cp_broker(broker, extra_toml=extra_toml, listeners=HTTP_ONLY)


def data(b, **kw):
    return boto(b, "iot-data", **kw)


def doc(answer) -> dict:
    """The JSON document of a blob answer (`payload`)."""
    return json.loads(answer["payload"].read())


def update(client, thing: str, state: dict, shadow: str | None = None, **extra) -> dict:
    kw = {"shadowName": shadow} if shadow else {}
    body = json.dumps({"state": state, **extra}).encode()
    return doc(client.update_thing_shadow(thingName=thing, payload=body, **kw))


def until_topics(sub, topics: set[str], timeout: float = T) -> dict[str, dict]:
    """The first message on each of `topics` (others are kept in order as well), waiting
    until all have arrived."""
    got: dict[str, dict] = {}
    deadline = time.monotonic() + timeout
    while not topics <= got.keys():
        left = deadline - time.monotonic()
        assert left > 0, f"missing {sorted(topics - got.keys())}; got {sorted(got)}"
        m = sub.expect(left)
        got.setdefault(m.topic, m.json())
    return got


# ============================================================================================
# 1. The four operations
# ============================================================================================

def test_update_get_delete_classic_and_named(broker):
    b = shadow_broker(broker)
    api = data(b)
    thing = uid("lamp")

    accepted = update(api, thing, {"desired": {"color": "red", "on": True}}, clientToken="t1")
    assert accepted["state"] == {"desired": {"color": "red", "on": True}}, accepted
    assert accepted["version"] == 1 and accepted["clientToken"] == "t1", accepted
    assert set(accepted["metadata"]["desired"]) == {"color", "on"}, accepted
    assert isinstance(accepted["timestamp"], int), accepted

    got = doc(api.get_thing_shadow(thingName=thing))
    assert got["state"]["desired"] == {"color": "red", "on": True}, got
    assert got["state"]["delta"] == {"color": "red", "on": True}, got
    assert got["version"] == 1, got

    # A named shadow of the same thing is independent of the classic one.
    named = update(api, thing, {"reported": {"fw": "1.0"}}, shadow="cfg")
    assert named["version"] == 1, named
    assert doc(api.get_thing_shadow(thingName=thing, shadowName="cfg"))["state"] == \
        {"reported": {"fw": "1.0"}}
    assert doc(api.get_thing_shadow(thingName=thing))["version"] == 1

    deleted = doc(api.delete_thing_shadow(thingName=thing))
    assert deleted["version"] == 1 and isinstance(deleted["timestamp"], int), deleted
    code, status, msg = api_error(api.get_thing_shadow, thingName=thing)
    assert (code, status, msg) == ("ResourceNotFoundException", 404,
                                   f"No shadow exists with name: '{thing}'")
    # The named shadow outlives the classic one's deletion.
    assert doc(api.get_thing_shadow(thingName=thing, shadowName="cfg"))["version"] == 1
    # Re-created: the version continues.
    assert update(api, thing, {"desired": {"on": False}})["version"] == 2


def test_list_named_shadows_pages_and_never_lists_the_classic(broker):
    b = shadow_broker(broker)
    api = data(b)
    thing = uid("multi")
    names = {f"s{i}" for i in range(5)}
    update(api, thing, {"reported": {"x": 1}})  # the classic shadow
    for name in names:
        update(api, thing, {"reported": {"x": 1}}, shadow=name)

    seen, token, pages = [], None, 0
    while True:
        kw = {"nextToken": token} if token else {}
        page = api.list_named_shadows_for_thing(thingName=thing, pageSize=2, **kw)
        assert len(page["results"]) <= 2, page
        assert isinstance(page["timestamp"], int), page
        seen += page["results"]
        pages += 1
        token = page.get("nextToken")
        if not token:
            break
        assert pages < 10, "paging does not end"
    assert sorted(seen) == sorted(names), seen
    assert pages == 3, pages

    everything = api.list_named_shadows_for_thing(thingName=thing)
    assert sorted(everything["results"]) == sorted(names) and not everything.get("nextToken")
    unknown = api.list_named_shadows_for_thing(thingName=uid("nobody"))
    assert unknown["results"] == [], unknown
    code, status, _ = api_error(api.list_named_shadows_for_thing, thingName=thing, pageSize=101)
    assert (code, status) == ("InvalidRequestException", 400)


def test_the_api_on_the_tls_ports_https_branch(broker):
    """The same API over HTTPS on the `tls` port, as IoT Core's data endpoint serves it
    (boto3 verifying the broker's CA)."""
    b = cp_broker(broker, listeners={"http": "127.0.0.1:0", "tls": "127.0.0.1:0"})
    api = boto3.client("iot-data", endpoint_url=f"https://localhost:{b.tls_port}",
                       region_name=REGION, aws_access_key_id=ADMIN_KEY,
                       aws_secret_access_key=ADMIN_SECRET, verify=str(b.ca_file),
                       config=Config(**BOTO_CONFIG))
    thing = uid("tls")
    assert update(api, thing, {"desired": {"x": 1}})["version"] == 1
    assert doc(api.get_thing_shadow(thingName=thing))["state"]["delta"] == {"x": 1}
    code, status, _ = api_error(api.get_thing_shadow, thingName=thing, shadowName="none")
    assert (code, status) == ("ResourceNotFoundException", 404)


# ============================================================================================
# 2. Errors: status, boto3 exception class, message text
# ============================================================================================

def test_errors_have_iot_core_codes_classes_and_texts(broker):
    b = shadow_broker(broker)
    api = data(b)
    thing = uid("err")

    with pytest.raises(api.exceptions.ResourceNotFoundException) as missing:
        api.get_thing_shadow(thingName=thing, shadowName="x")
    assert missing.value.response["Error"]["Message"] == "No shadow exists with name: 'x'"
    code, status, msg = api_error(api.delete_thing_shadow, thingName=thing, shadowName="x")
    assert (code, status, msg) == ("ResourceNotFoundException", 404,
                                   "No shadow exists with name: 'x'")

    update(api, thing, {"desired": {"a": 1}})
    with pytest.raises(api.exceptions.ConflictException) as conflict:
        update(api, thing, {"desired": {"a": 2}}, version=7)
    assert conflict.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    assert conflict.value.response["Error"]["Message"] == "Version conflict"

    for body, text in [
        (b"not json", "Invalid JSON"),
        (b"{}", "Missing required node: state"),
        (b'{"state": 1}', "State node must be an object"),
        (json.dumps({"state": {}, "clientToken": "c" * 65}).encode(), "Invalid clientToken"),
    ]:
        with pytest.raises(api.exceptions.InvalidRequestException) as invalid:
            api.update_thing_shadow(thingName=thing, payload=body)
        r = invalid.value.response
        assert (r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Message"]) == (400, text), body

    for body in [
        json.dumps({"state": {"desired": {"big": "x" * 9000}}}).encode(),  # over the 8 KiB state
        b" " * (128 * 1024 + 1),  # over what is read at all
    ]:
        with pytest.raises(api.exceptions.RequestEntityTooLargeException) as large:
            api.update_thing_shadow(thingName=thing, payload=body)
        r = large.value.response
        assert r["ResponseMetadata"]["HTTPStatusCode"] == 413
        assert r["Error"]["Message"] == "The payload exceeds the maximum size allowed"

    with pytest.raises(api.exceptions.UnsupportedDocumentEncodingException) as encoding:
        api.update_thing_shadow(thingName=thing, payload=b'{"state": {"desired": {"a": "\xff"}}}')
    r = encoding.value.response
    assert (r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Message"]) == \
        (415, "Unsupported documented encoding; supported encoding is UTF-8")

    for kw in [{"thingName": "a b"}, {"thingName": thing, "shadowName": "x/y"}]:
        code, status, msg = api_error(api.get_thing_shadow, **kw)
        assert (code, status) == ("InvalidRequestException", 400), (kw, code, status, msg)
        assert "name must be" in msg, msg
    # Nothing was changed by the refusals.
    assert doc(api.get_thing_shadow(thingName=thing))["version"] == 1


def test_over_the_per_thing_rate_is_throttling_exception_429(broker):
    """The shadow service's per-thing request rate, as the REST caller sees it (boto3
    told not to retry, since it retries ThrottlingException by itself)."""
    b = cp_broker(broker, listeners=HTTP_ONLY, shadow_requests_per_thing_per_sec=1)
    api = boto3.client("iot-data", endpoint_url=endpoint(b), region_name=REGION,
                       aws_access_key_id=ADMIN_KEY, aws_secret_access_key=ADMIN_SECRET,
                       config=Config(retries={"mode": "standard", "max_attempts": 1},
                                     connect_timeout=5, read_timeout=T))
    thing = uid("busy")
    update(api, thing, {"desired": {"x": 1}})
    with pytest.raises(api.exceptions.ThrottlingException) as throttled:
        for _ in range(5):
            api.get_thing_shadow(thingName=thing)
    assert throttled.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    # Another thing has its own budget.
    assert update(api, uid("idle"), {"desired": {"x": 1}})["version"] == 1


# ============================================================================================
# 3. MQTT side effects
# ============================================================================================

def test_http_update_publishes_to_mqtt_and_a_rejection_publishes_nothing(broker, clients):
    b = shadow_broker(broker)
    api = data(b)
    thing = uid("mq")
    prefix = f"$aws/things/{thing}/shadow/update"
    sub = clients.paho(b, uid("sub"))
    granted = sub.subscribe([(f"{prefix}/{r}", 1) for r in ("accepted", "rejected", "delta", "documents")])
    assert all(code < 0x80 for code in granted), granted

    update(api, thing, {"desired": {"on": True}}, clientToken="http-1")
    got = until_topics(sub, {f"{prefix}/accepted", f"{prefix}/delta", f"{prefix}/documents"})
    assert got[f"{prefix}/accepted"]["state"] == {"desired": {"on": True}}
    assert got[f"{prefix}/accepted"]["clientToken"] == "http-1"
    assert got[f"{prefix}/delta"]["state"] == {"on": True}
    assert got[f"{prefix}/documents"]["current"]["version"] == 1
    assert f"{prefix}/rejected" not in got

    code, status, _ = api_error(api.update_thing_shadow, thingName=thing, payload=b"not json")
    assert (code, status) == ("InvalidRequestException", 400)
    code, status, _ = api_error(api.update_thing_shadow, thingName=thing,
                                payload=json.dumps({"state": {}, "version": 9}).encode())
    assert (code, status) == ("ConflictException", 409)
    # A fence: the next accepted update's answers; nothing on /rejected came before them.
    update(api, thing, {"reported": {"on": True}}, clientToken="fence")
    seen = sub.collect_until(f"{prefix}/documents")
    assert [m.topic for m in seen if m.topic.endswith("/rejected")] == [], seen
    assert any(m.topic == f"{prefix}/accepted" and m.json().get("clientToken") == "fence"
               for m in seen), seen


def test_an_http_publish_to_a_request_topic_is_a_shadow_request(broker, clients):
    """iot-data Publish to `…/shadow/update` is handled as the same PUBLISH over MQTT:
    answered on `/accepted` (or `/rejected`)."""
    b = shadow_broker(broker)
    api = data(b)
    thing = uid("pub")
    prefix = f"$aws/things/{thing}/shadow/name/cfg/update"
    sub = clients.paho(b, uid("sub"))
    sub.subscribe([(f"{prefix}/accepted", 1), (f"{prefix}/rejected", 1)])
    api.publish(topic=prefix, qos=1,
                payload=json.dumps({"state": {"reported": {"v": 1}}, "clientToken": "p1"}).encode())
    accepted = sub.expect(T, topic=f"{prefix}/accepted").json()
    assert accepted["state"] == {"reported": {"v": 1}} and accepted["clientToken"] == "p1"
    assert doc(api.get_thing_shadow(thingName=thing, shadowName="cfg"))["version"] == 1
    api.publish(topic=prefix, qos=1, payload=b"not json")
    rejected = sub.expect(T, topic=f"{prefix}/rejected").json()
    assert (rejected["code"], rejected["message"]) == (400, "Invalid JSON"), rejected


# ============================================================================================
# 4. Authorization
# ============================================================================================

def test_a_key_is_authorized_by_its_principals_policies(broker, tmp_path):
    a, other = uid("a"), uid("b")
    principal = uid("reader")
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iot:GetThingShadow", "Resource": f"{ARN}:thing/{a}"}]}
    b = shadow_broker(broker, credentials_toml(AKID, SECRET, principal, ["get-a"])
                      + policy_toml("get-a", policy))
    admin_api = data(b)
    for thing in (a, other):
        update(admin_api, thing, {"reported": {"n": 1}})
    reader = data(b, key=AKID, secret=SECRET)

    assert doc(reader.get_thing_shadow(thingName=a))["state"] == {"reported": {"n": 1}}
    for call, kw, action, thing in [
        (reader.get_thing_shadow, {"thingName": other}, "iot:GetThingShadow", other),
        (reader.update_thing_shadow, {"thingName": a, "payload": b'{"state":{}}'},
         "iot:UpdateThingShadow", a),
        (reader.delete_thing_shadow, {"thingName": a}, "iot:DeleteThingShadow", a),
        (reader.list_named_shadows_for_thing, {"thingName": a},
         "iot:ListNamedShadowsForThing", a),
    ]:
        code, status, msg = api_error(call, **kw)
        assert (code, status, msg) == ("ForbiddenException", 403, "Forbidden"), (action, code, msg)
        lines = b.log_lines_with("refused", principal, action, f"thing/{thing}")
        assert lines, f"no log line naming {principal}, {action}, thing/{thing}"
    # The refused update changed nothing.
    assert doc(admin_api.get_thing_shadow(thingName=a))["version"] == 1

    # A wrong secret, or no signature: 401.
    for client in [data(b, key=AKID, secret=SECRET + "x"), data(b, unsigned=True)]:
        code, status, msg = api_error(client.get_thing_shadow, thingName=a)
        assert (code, status, msg) == ("UnauthorizedException", 401, "Unauthorized")
    # The key reaches iot-data only, not the control plane's own operations.
    code, status, msg = api_error(boto(b, "iot", key=AKID, secret=SECRET).list_policies)
    assert (code, status) == ("UnauthorizedException", 403), (code, status, msg)
    assert principal in msg, msg
    # And iot-data Publish is authorized by its policies too (no iot:Publish in get-a).
    code, status, _ = api_error(reader.publish, topic="t/x", qos=0, payload=b"x")
    assert (code, status) == ("ForbiddenException", 403)
    # The CLI signing with the same key (AWS environment variables) is held to the same.
    ok(iot_data(b, ["get-thing-shadow", "--thing-name", a, "mine.json"], tmp_path, (AKID, SECRET)))
    assert json.loads((tmp_path / "mine.json").read_text())["version"] == 1
    refused = iot_data(b, ["get-thing-shadow", "--thing-name", other, "theirs.json"], tmp_path,
                       (AKID, SECRET))
    assert refused.returncode == 1 and "ForbiddenException (HTTP 403): Forbidden" in refused.stderr


# ============================================================================================
# 5. The CLI
# ============================================================================================

def iot_data(b, args: list[str], cwd: Path, key: tuple[str, ...] | None = None
             ) -> subprocess.CompletedProcess:
    """`pubsub iot-data` against `b`'s API: signed with `[admin]` from its config, or with
    `key` — (access key id, secret[, session token]) — from the AWS environment variables
    (and no config)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    where = ["--endpoint-url", endpoint(b)]
    if key:
        env.update(AWS_ACCESS_KEY_ID=key[0], AWS_SECRET_ACCESS_KEY=key[1])
        if len(key) > 2:
            env["AWS_SESSION_TOKEN"] = key[2]
    else:
        where += ["--config", str(b.config_path)]
    return subprocess.run([BIN, "iot-data", *args, *where], capture_output=True, text=True,
                          timeout=20, stdin=subprocess.DEVNULL, cwd=cwd, env=env)


def ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def test_cli_round_trip(broker, clients, tmp_path):
    b = shadow_broker(broker)
    thing = uid("cli")
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"state": {"desired": {"temp": 21}}, "clientToken": "cli-1"}))

    ok(iot_data(b, ["update-thing-shadow", "--thing-name", thing, "--shadow-name", "cfg",
                    "--cli-binary-format", "raw-in-base64-out",
                    "--payload", f"file://{request}", "updated.json"], tmp_path))
    updated = json.loads((tmp_path / "updated.json").read_text())
    assert updated["state"] == {"desired": {"temp": 21}} and updated["clientToken"] == "cli-1"
    assert updated["version"] == 1, updated

    ok(iot_data(b, ["update-thing-shadow", "--thing-name", thing, "--shadow-name", "cfg",
                    "--payload", '{"state": {"reported": {"temp": 19}}}', "again.json"], tmp_path))
    assert json.loads((tmp_path / "again.json").read_text())["version"] == 2

    ok(iot_data(b, ["get-thing-shadow", "--thing-name", thing, "--shadow-name", "cfg",
                    "got.json"], tmp_path))
    got = json.loads((tmp_path / "got.json").read_text())
    assert got["state"] == {"desired": {"temp": 21}, "reported": {"temp": 19},
                            "delta": {"temp": 21}}, got
    # The document as boto3 reads it is the one the CLI wrote.
    assert doc(data(b).get_thing_shadow(thingName=thing, shadowName="cfg"))["state"] == got["state"]

    listed = ok(iot_data(b, ["list-named-shadows-for-thing", "--thing-name", thing], tmp_path))
    assert json.loads(listed.stdout)["results"] == ["cfg"], listed.stdout
    stdout = ok(iot_data(b, ["get-thing-shadow", "--thing-name", thing, "--shadow-name", "cfg",
                             "-"], tmp_path))
    assert json.loads(stdout.stdout)["version"] == 2

    ok(iot_data(b, ["delete-thing-shadow", "--thing-name", thing, "--shadow-name", "cfg",
                    "deleted.json"], tmp_path))
    assert json.loads((tmp_path / "deleted.json").read_text())["version"] == 2

    missing = iot_data(b, ["get-thing-shadow", "--thing-name", thing, "--shadow-name", "cfg",
                           "never.json"], tmp_path)
    assert missing.returncode == 1, missing
    lines = missing.stderr.strip().splitlines()
    assert len(lines) == 1, missing.stderr
    assert "ResourceNotFoundException" in lines[0] and "No shadow exists with name: 'cfg'" in lines[0]
    assert not (tmp_path / "never.json").exists()

    topic = f"cli/{uid('t')}"
    sub = clients.paho(b, uid("cli-sub"))
    assert sub.subscribe(topic, 1) == [1]
    ok(iot_data(b, ["publish", "--topic", topic, "--qos", "1", "--payload", "from the cli"],
                tmp_path))
    assert sub.expect(T, topic=topic).payload == b"from the cli"


def test_cli_without_a_running_broker_says_so(tmp_path):
    r = subprocess.run([BIN, "iot-data", "get-thing-shadow", "--thing-name", "lamp",
                        "--data-dir", str(tmp_path / "data"), "out.json"],
                       capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL,
                       cwd=tmp_path)
    assert r.returncode == 1, r
    assert "ServiceUnavailableException" in r.stderr and "running broker" in r.stderr, r.stderr
    assert not (tmp_path / "out.json").exists()


def test_cli_signs_with_cognito_temporary_credentials(broker, tmp_path):
    """`pubsub iot-data` with Cognito's temporary credentials in the AWS environment
    variables sends the session token (`X-Amz-Security-Token`, signed, as the AWS CLI
    does); the identity's pool's unauthenticated role decides (a guest); without the token,
    or with another, 401."""
    # Here, not at the top: test_cognito skips itself without awscrt, and this module's
    # other tests need none of it.
    from test_cognito import cognito, credentials, new_identity, new_pool

    thing, other = uid("cog"), uid("cog-other")
    role = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iot:GetThingShadow", "Resource": f"{ARN}:thing/{thing}"}]})
    b = shadow_broker(broker, extra_toml=f"\n[[roles]]\nname = \"cogread\"\npolicy = '{role}'\n")
    for name in (thing, other):
        update(data(b), name, {"reported": {"n": 1}})
    cog = cognito(b)
    identity = new_identity(cog, new_pool(cog, role="cogread"))
    c = credentials(cog, identity)
    temporary = (c["AccessKeyId"], c["SecretKey"], c["SessionToken"])

    ok(iot_data(b, ["get-thing-shadow", "--thing-name", thing, "got.json"], tmp_path, temporary))
    assert json.loads((tmp_path / "got.json").read_text())["state"] == {"reported": {"n": 1}}
    line = b.log_lines_with("control plane request", identity)
    assert line, "the request's principal must be the identity id"
    # Its role decides: another thing is 403.
    r = iot_data(b, ["get-thing-shadow", "--thing-name", other, "no.json"], tmp_path, temporary)
    assert r.returncode == 1 and "ForbiddenException (HTTP 403): Forbidden" in r.stderr, r.stderr
    # Without its session token, or with a wrong one, the credentials are not accepted.
    for key in [temporary[:2], (*temporary[:2], temporary[2] + "x")]:
        r = iot_data(b, ["get-thing-shadow", "--thing-name", thing, "no.json"], tmp_path, key)
        assert r.returncode == 1, r
        assert "UnauthorizedException (HTTP 401): Unauthorized" in r.stderr, r.stderr
    assert b.log_lines_with("session token is missing"), "the refusal's reason must be logged"
    assert not (tmp_path / "no.json").exists()
