"""The control-plane HTTP API on `listeners.http`: AWS IoT's own REST API (service `iot`) and
iot-data (service `iotdata`), driven by boto3 exactly as against AWS — only `endpoint_url`
changes — with the `[admin]` credentials. Live effects are observed with independent MQTT
clients (paho over mqtts / plain, raw MQTT over TLS and WebSocket, the AWS CRT SDK), and the
`pubsub iot … --endpoint-url` CLI is checked against the same API.

Every wait is bounded (≤ 10 s); every broker is per test (names are unique anyway)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from authfn import AuthorizerFunction, TokenSigner, credentials_toml
from conftest import BIN
from helpers import Paho, uid, wait_until
from sigv4presign import presign_query
from tlscerts import attempt_connect, client_context, make_leaf, pem_id, TlsRawClient
from wsraw import http_status, ws_connect

boto3 = pytest.importorskip("boto3", reason="boto3 is in tests/integration/requirements.txt")
import botocore  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

T = 10  # every wait is bounded by this
REGION, ACCOUNT = "us-east-1", "123456789012"
ARN = f"arn:aws:iot:{REGION}:{ACCOUNT}"
ADMIN_KEY, ADMIN_SECRET = "AKIAADMIN", "adminsecret"
ADMIN_TOML = f'\n[admin]\naccess_key_id = "{ADMIN_KEY}"\nsecret_access_key = "{ADMIN_SECRET}"\n'
CP_LISTENERS = {"http": "127.0.0.1:0", "mqtts": "127.0.0.1:0", "tls": "127.0.0.1:0"}
DISCONNECTED = "$aws/events/presence/disconnected/"
AKID, SECRET = "AKIACPTESTEXAMPLE001", "cpTestSecretKey/abcdefghijklmnopqrstuv01"
TOKEN_KEY = "mytoken"

ALLOW_MQTT = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["iot:Connect", "iot:Publish", "iot:Subscribe", "iot:Receive"],
     "Resource": "*"}]}


def scoped(prefix: str, deny: str | None = None) -> dict:
    """Connect; publish / subscribe / receive under `prefix/` only (and an explicit deny)."""
    st = [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{ARN}:client/*"},
        {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"], "Resource": f"{ARN}:topic/{prefix}/*"},
        {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": f"{ARN}:topicfilter/{prefix}/*"},
    ]
    if deny:
        st.append({"Effect": "Deny", "Action": "iot:Publish", "Resource": f"{ARN}:topic/{deny}"})
    return {"Version": "2012-10-17", "Statement": st}


# -- clients & fixtures ------------------------------------------------------------------------

BOTO_CONFIG = dict(retries={"max_attempts": 1}, connect_timeout=5, read_timeout=T)


def endpoint(b) -> str:
    assert b.http_port, "the broker wrote no `http` listener to listeners.json"
    return f"http://127.0.0.1:{b.http_port}"


def boto(b, service: str = "iot", key: str | None = ADMIN_KEY, secret: str | None = ADMIN_SECRET,
         unsigned: bool = False):
    kw = dict(BOTO_CONFIG)
    if unsigned:
        kw["signature_version"] = botocore.UNSIGNED
    return boto3.client(service, endpoint_url=endpoint(b), region_name=REGION,
                        aws_access_key_id=key or "x", aws_secret_access_key=secret or "x",
                        config=Config(**kw))


@dataclass
class Api:
    iot: object
    data: object


def cp_broker(broker, extra_toml: str = "", listeners: dict | None = None, **kw):
    """A broker with the control plane (http), mqtts and tls listeners and [admin]."""
    return broker(listeners=listeners or CP_LISTENERS, extra_toml=ADMIN_TOML + extra_toml, **kw)


def admin(b) -> Api:
    return Api(boto(b, "iot"), boto(b, "iot-data"))


def api_error(fn, **kw) -> tuple[str, int, str]:
    """(error code, HTTP status, message) of a call that must fail."""
    with pytest.raises(ClientError) as ei:
        fn(**kw)
    r = ei.value.response
    return r["Error"].get("Code", ""), r["ResponseMetadata"]["HTTPStatusCode"], r["Error"].get("Message", "")


@dataclass
class Device:
    arn: str
    id: str
    cert_path: Path
    key_path: Path

    def ctx(self, b, alpn=None):
        return client_context(b.ca_file, cert_file=self.cert_path, key_file=self.key_path, alpn=alpn)


def new_device(iot, tmp_path: Path) -> Device:
    """create_keys_and_certificate(setAsActive=True), written to files; shape checked."""
    r = iot.create_keys_and_certificate(setAsActive=True)
    cid = r["certificateId"]
    assert re.fullmatch(r"[0-9a-f]{64}", cid), r
    assert r["certificateArn"] == f"{ARN}:cert/{cid}", r
    assert pem_id(r["certificatePem"]) == cid, "certificateId must be the SHA-256 of the DER"
    assert "PRIVATE KEY" in r["keyPair"]["PrivateKey"] and "PUBLIC KEY" in r["keyPair"]["PublicKey"], r
    d = tmp_path / "devices"
    d.mkdir(exist_ok=True)
    cert, key = d / f"{cid[:12]}.pem", d / f"{cid[:12]}.key"
    cert.write_text(r["certificatePem"])
    key.write_text(r["keyPair"]["PrivateKey"])
    key.chmod(0o600)
    return Device(r["certificateArn"], cid, cert, key)


def create_policy(iot, document: dict, prefix: str = "cp") -> str:
    name = uid(prefix).replace("-", "_")
    r = iot.create_policy(policyName=name, policyDocument=json.dumps(document))
    assert r["policyName"] == name, r
    assert r["policyArn"] == f"{ARN}:policy/{name}", r
    assert r["policyVersionId"] == "1", r
    assert json.loads(r["policyDocument"]) == document, r
    return name


class LogCursor:
    """Waits for broker log lines written after it was made."""

    def __init__(self, b):
        self.b = b
        self.pos = len(b.log())

    def wait(self, must: list[str], any_of: list[str], exclude: tuple[str, ...] = (),
             timeout: float = 5.0) -> str:
        must_l, any_l = [m.lower() for m in must], [a.lower() for a in any_of]
        ex_l = [e.lower() for e in exclude]
        deadline = time.monotonic() + timeout
        while True:
            new = self.b.log()[self.pos:]
            for line in new.splitlines():
                low = line.lower()
                if all(m in low for m in must_l) and any(a in low for a in any_l) \
                        and not any(e in low for e in ex_l):
                    return line
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no new broker log line with all of {must} and any of {any_of}"
                    f"{' and none of ' + str(list(exclude)) if exclude else ''}; new lines:\n"
                    + "\n".join(new.splitlines()[-25:]))
            time.sleep(0.1)


def mtls_paho(clients, b, dev: Device, cid: str) -> Paho:
    """Connected paho over mqtts with the device's certificate; no automatic reconnect
    during the test (a refused reconnect would only add noise)."""
    p = clients.paho_new(b, cid, port=b.mqtts_port, host="localhost", tls_context=dev.ctx(b))
    p.client.reconnect_delay_set(min_delay=60, max_delay=120)
    return p.connect()


def wait_closed(p: Paho, what: str, timeout: float = 5.0) -> None:
    wait_until(lambda: p.disconnects, timeout=timeout,
               msg=f"{what}: the open MQTT connection of {p.client_id} was not closed within {timeout}s")


def assert_refused(o, what: str) -> None:
    assert o.refused, f"{what}: a reconnect must be refused (TLS alert, CONNACK ≠ 0 or close), got {o}"


def observer(clients, b, *cids: str) -> Paho:
    o = clients.paho(b, uid("observer"))
    for cid in cids:
        o.subscribe(DISCONNECTED + cid, 1)
    return o


def assert_server_disconnect(obs: Paho, cid: str) -> None:
    ev = obs.expect(T, topic=DISCONNECTED + cid).json()
    assert ev["disconnectReason"] == "SERVER_INITIATED_DISCONNECT", ev
    assert ev["clientInitiatedDisconnect"] is False, ev


@pytest.fixture
def crt():
    """AWS CRT connections, disconnected at teardown."""
    pytest.importorskip("awscrt")
    conns = []
    yield conns
    for c in conns:
        try:
            c.disconnect().result(5)
        except Exception:
            pass


@pytest.fixture
def raws():
    cs = []
    yield cs
    for c in cs:
        try:
            c.close()
        except Exception:
            pass


@pytest.fixture
def authfn():
    fn = AuthorizerFunction()
    yield fn
    fn.close()


@pytest.fixture(scope="module")
def signer(tmp_path_factory) -> TokenSigner:
    return TokenSigner(tmp_path_factory.mktemp("cp-authorizer-keys"))


def crt_sigv4(b, akid: str, secret: str, client_id: str):
    import awscrt.auth
    from awsiot import mqtt_connection_builder
    provider = awscrt.auth.AwsCredentialsProvider.new_static(akid, secret)
    return mqtt_connection_builder.websockets_with_default_aws_signing(
        endpoint="localhost", port=b.tls_port, region=REGION, credentials_provider=provider,
        ca_filepath=str(b.ca_file), client_id=client_id, clean_session=True, keep_alive_secs=30)


def crt_round_trip(connection, topic: str) -> None:
    from awscrt import mqtt as crt_mqtt
    got = threading.Event()
    received = {}

    def on_message(topic, payload, **kwargs):
        received["payload"] = payload
        got.set()

    sub, _ = connection.subscribe(topic=topic, qos=crt_mqtt.QoS.AT_LEAST_ONCE, callback=on_message)
    assert sub.result(T)["qos"] == crt_mqtt.QoS.AT_LEAST_ONCE
    payload = uuid.uuid4().hex.encode()
    pub, _ = connection.publish(topic=topic, payload=payload, qos=crt_mqtt.QoS.AT_LEAST_ONCE)
    pub.result(T)
    assert got.wait(T), f"the CRT client did not receive its own message on {topic}"
    assert received["payload"] == payload


def sigv4_ws(b, akid: str = AKID, secret: str = SECRET):
    """A SigV4-presigned WebSocket upgrade on the tls port (independent signer)."""
    return ws_connect(b.tls_port, "/mqtt?" + presign_query(akid, secret),
                      tls_ctx=client_context(b.ca_file, alpn=["http/1.1"]))


def raw_roundtrip(c, prefix: str = "cp") -> None:
    topic = f"{prefix}/{uid('t')}"
    assert c.subscribe(topic, 1) == [1]
    payload = uuid.uuid4().bytes
    c.publish(topic, payload, qos=1)
    m = c.next_publish(T)
    assert (m.topic, m.payload) == (topic, payload)


# ============================================================================================
# 1. Certificate + policy through the API; detach closes the connection
# ============================================================================================

def test_certificate_policy_attach_connect_then_detach_disconnects(broker, clients, tmp_path):
    b = cp_broker(broker)
    api = admin(b)
    dev = new_device(api.iot, tmp_path)
    desc = api.iot.describe_certificate(certificateId=dev.id)["certificateDescription"]
    assert desc["status"] == "ACTIVE" and desc["certificateArn"] == dev.arn, desc
    pol = create_policy(api.iot, ALLOW_MQTT)
    api.iot.attach_policy(policyName=pol, target=dev.arn)

    cid = uid("cp-dev")
    obs = observer(clients, b, cid)
    topic = f"cp/{uid('t')}"
    obs.subscribe(topic, 1)
    p = mtls_paho(clients, b, dev, cid)
    p.publish(topic, b"hello from a certificate made by the API", 1)
    assert obs.expect(T, topic=topic).payload == b"hello from a certificate made by the API"
    p.roundtrip()

    cursor = LogCursor(b)
    t0 = time.monotonic()
    api.iot.detach_policy(policyName=pol, target=dev.arn)
    wait_closed(p, "detach_policy")
    elapsed = time.monotonic() - t0
    p.close()
    assert_server_disconnect(obs, cid)
    line = cursor.wait([cid], ["detach", "no longer attached"],
                       exclude=("client connected", "connect refused"))
    assert api.iot.list_attached_policies(target=dev.arn)["policies"] == []
    o = attempt_connect(b.mqtts_port, dev.ctx(b), cid)
    assert_refused(o, "after detach_policy")
    assert elapsed < 5, f"closed {elapsed:.1f}s after detach_policy ({line})"
    obs.roundtrip()


def test_policy_attached_via_api_applies_to_connected_client(broker, clients, tmp_path):
    """A new policy attached while the device is connected governs its next publish."""
    b = cp_broker(broker)
    api = admin(b)
    dev = new_device(api.iot, tmp_path)
    a, extra = f"cpa/{uid('a')}", f"cpb/{uid('b')}"
    api.iot.attach_policy(policyName=create_policy(api.iot, scoped(a)), target=dev.arn)
    obs = clients.paho(b, uid("observer"))
    obs.subscribe(f"{extra}/x", 1)
    c = clients.track(TlsRawClient(b.mqtts_port, dev.ctx(b)))
    c.connect_ok(uid("cp-live"))
    raw_roundtrip(c, a)
    d = api.iot.test_authorization(principal=dev.arn, authInfos=[
        {"actionType": "PUBLISH", "resources": [f"{ARN}:topic/{extra}/x"]}])
    assert d["authResults"][0]["authDecision"] == "IMPLICIT_DENY", d
    api.iot.attach_policy(policyName=create_policy(api.iot, scoped(extra)), target=dev.arn)
    c.publish(f"{extra}/x", b"allowed now", qos=1)  # waits for the PUBACK: not closed
    assert obs.expect(T, topic=f"{extra}/x").payload == b"allowed now"
    raw_roundtrip(c, a)


# ============================================================================================
# 2. Certificate status changes close open connections
# ============================================================================================

@pytest.mark.parametrize("status", ["INACTIVE", "REVOKED"])
def test_update_certificate_status_disconnects(broker, clients, tmp_path, status):
    b = cp_broker(broker)
    api = admin(b)
    dev = new_device(api.iot, tmp_path)
    api.iot.attach_policy(policyName=create_policy(api.iot, ALLOW_MQTT), target=dev.arn)
    cid = uid("cp-status")
    obs = observer(clients, b, cid)
    p = mtls_paho(clients, b, dev, cid)
    p.roundtrip()
    witness = clients.witness(b)

    cursor = LogCursor(b)
    api.iot.update_certificate(certificateId=dev.id, newStatus=status)
    wait_closed(p, f"update_certificate {status}")
    p.close()
    assert_server_disconnect(obs, cid)
    cursor.wait([status.lower()], [cid, dev.id], exclude=("client connected", "client certificate refused"))
    desc = api.iot.describe_certificate(certificateId=dev.id)["certificateDescription"]
    assert desc["status"] == status, desc
    listed = {c["certificateId"]: c["status"] for c in api.iot.list_certificates()["certificates"]}
    assert listed.get(dev.id) == status, listed
    assert_refused(attempt_connect(b.mqtts_port, dev.ctx(b), cid), f"certificate {status}")
    if status == "INACTIVE":  # reactivated: connects again
        api.iot.update_certificate(certificateId=dev.id, newStatus="ACTIVE")
        o = attempt_connect(b.mqtts_port, dev.ctx(b), uid("cp-again"))
        assert o.accepted, f"ACTIVE again: {o}"
    witness.roundtrip()


def test_delete_certificate_and_policy_rules(broker, tmp_path):
    b = cp_broker(broker)
    api = admin(b)
    dev = new_device(api.iot, tmp_path)
    pol = create_policy(api.iot, ALLOW_MQTT)
    api.iot.attach_policy(policyName=pol, target=dev.arn)

    code, status, msg = api_error(api.iot.delete_certificate, certificateId=dev.id)
    assert code in ("CertificateStateException", "DeleteConflictException"), (code, status, msg)
    assert 400 <= status < 500, (code, status, msg)
    code, status, msg = api_error(api.iot.delete_policy, policyName=pol)
    assert (code, status) == ("DeleteConflictException", 409), (code, status, msg)

    api.iot.detach_policy(policyName=pol, target=dev.arn)
    api.iot.update_certificate(certificateId=dev.id, newStatus="INACTIVE")
    api.iot.delete_certificate(certificateId=dev.id)
    code, status, msg = api_error(api.iot.describe_certificate, certificateId=dev.id)
    assert (code, status) == ("ResourceNotFoundException", 404), (code, status, msg)
    assert dev.id not in [c["certificateId"] for c in api.iot.list_certificates()["certificates"]]
    api.iot.delete_policy(policyName=pol)
    code, status, msg = api_error(api.iot.get_policy, policyName=pol)
    assert (code, status) == ("ResourceNotFoundException", 404), (code, status, msg)


def test_delete_certificate_with_policy_attached_is_a_conflict(broker, tmp_path):
    """AWS: "A certificate cannot be deleted if it has a policy or IoT thing attached to it
    or if its status is set to ACTIVE" (DeleteCertificate)."""
    b = cp_broker(broker)
    api = admin(b)
    dev = new_device(api.iot, tmp_path)
    pol = create_policy(api.iot, ALLOW_MQTT)
    api.iot.attach_policy(policyName=pol, target=dev.arn)
    api.iot.update_certificate(certificateId=dev.id, newStatus="INACTIVE")
    code, status, msg = api_error(api.iot.delete_certificate, certificateId=dev.id)
    assert (code, status) == ("DeleteConflictException", 409), \
        f"an INACTIVE certificate with a policy attached must not be deletable: {(code, status, msg)}"
    assert api.iot.describe_certificate(certificateId=dev.id)["certificateDescription"]["status"] == "INACTIVE"


def test_register_certificate_forms_and_connect(broker, clients, tmp_path):
    b = cp_broker(broker)
    api = admin(b)
    pol = create_policy(api.iot, ALLOW_MQTT)
    for form in ("register_certificate", "register_certificate_without_ca"):
        ck = make_leaf(uid(form)).write(tmp_path, form)
        if form == "register_certificate":
            r = api.iot.register_certificate(certificatePem=ck.pem.decode(), setAsActive=True)
        else:
            r = api.iot.register_certificate_without_ca(certificatePem=ck.pem.decode(), status="ACTIVE")
        assert r["certificateId"] == ck.id and r["certificateArn"] == ck.arn, (form, r)
        desc = api.iot.describe_certificate(certificateId=ck.id)["certificateDescription"]
        assert desc["status"] == "ACTIVE", (form, desc)
        # registered but no policy: the TLS handshake may pass, CONNECT must not
        o = attempt_connect(b.mqtts_port, client_context(b.ca_file, ck), uid("cp-nopol"))
        assert o.refused, f"{form}: no policy attached yet, got {o}"
        api.iot.attach_policy(policyName=pol, target=ck.arn)
        c = clients.track(TlsRawClient(b.mqtts_port, client_context(b.ca_file, ck)))
        c.connect_ok(uid("cp-reg"))
        raw_roundtrip(c)
        code, status, msg = api_error(api.iot.register_certificate_without_ca,
                                      certificatePem=ck.pem.decode(), status="ACTIVE")
        assert (code, status) == ("ResourceAlreadyExistsException", 409), (form, code, status, msg)


@pytest.mark.parametrize("form", ["register_certificate", "register_certificate_without_ca"])
@pytest.mark.parametrize("pem", ["base64-not-der", "not-pem"])
def test_register_certificate_rejects_what_is_not_a_certificate(broker, form, pem):
    b = cp_broker(broker)
    api = admin(b)
    text = ("-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n"
            if pem == "base64-not-der" else "hello, I am not a certificate")
    kw = {"setAsActive": True} if form == "register_certificate" else {"status": "ACTIVE"}
    code, status, msg = api_error(getattr(api.iot, form), certificatePem=text, **kw)
    assert status == 400 and code in ("CertificateValidationException", "InvalidRequestException"), \
        (code, status, msg)
    assert api.iot.list_certificates()["certificates"] == [], "nothing may be registered"


# ============================================================================================
# 3. attach_principal_policy on a Cognito-style identity; SigV4 WebSocket
# ============================================================================================

def test_attach_principal_policy_to_identity_enables_sigv4_websocket(broker, clients, crt, raws):
    principal = f"us-east-1:{uuid.uuid4()}"
    b = cp_broker(broker, extra_toml=credentials_toml(AKID, SECRET, principal, []))
    api = admin(b)
    witness = clients.witness(b)

    # before: the identity has no policy → CONNACK 5 (raw) and the CRT's connect fails
    ans, c = sigv4_ws(b)
    assert ans.status == 101, f"the SigV4 upgrade itself is valid: {ans}"
    raws.append(c)
    cid0 = uid("cp-before")
    assert c.connect(cid0).return_code == 5, "no policy attached: CONNACK 5 expected"
    b.wait_log(cid0, ["connect refused"])
    conn = crt_sigv4(b, AKID, SECRET, uid("cp-crt-before"))
    crt.append(conn)
    with pytest.raises(Exception):
        conn.connect().result(T)

    pol = create_policy(api.iot, ALLOW_MQTT)
    api.iot.attach_principal_policy(policyName=pol, principal=principal)
    names = [x["policyName"] for x in api.iot.list_attached_policies(target=principal)["policies"]]
    assert names == [pol], names
    cid = uid("cp-crt")
    conn = crt_sigv4(b, AKID, SECRET, cid)
    crt.append(conn)
    conn.connect().result(T)
    crt_round_trip(conn, f"cp/{uid('t')}")
    assert principal in b.wait_log(cid, ["client connected"])

    # the deprecated detach form: a new connection is refused again
    api.iot.detach_principal_policy(policyName=pol, principal=principal)
    ans, c = sigv4_ws(b)
    assert ans.status == 101, ans
    raws.append(c)
    assert c.connect(uid("cp-after")).return_code == 5, "policy detached: CONNACK 5 expected"
    witness.roundtrip()


# ============================================================================================
# 4. iot-data: publish over HTTP, retained messages
# ============================================================================================

@pytest.mark.parametrize("qos", [0, 1])
def test_iot_data_publish_reaches_mqtt_subscriber(broker, clients, qos):
    b = cp_broker(broker)
    api = admin(b)
    sub = clients.paho(b, uid("cp-sub"))
    topic = f"cp/{uid('data')}/with space/x"  # slashes and a space: percent-encoded in the path
    sub.subscribe(topic, 1)
    payload = b"\x00binary\xff" + uuid.uuid4().bytes
    api.data.publish(topic=topic, qos=qos, payload=payload)
    m = sub.expect(T, topic=topic)
    assert (m.payload, m.qos, m.retain) == (payload, qos, False), m


def test_iot_data_retained_messages(broker, clients):
    b = cp_broker(broker)
    api = admin(b)
    topic = f"cp/{uid('ret')}/state"
    api.data.publish(topic=topic, qos=1, retain=True, payload=b'{"on": true}')
    r = api.data.get_retained_message(topic=topic)
    assert r["topic"] == topic and r["payload"] == b'{"on": true}' and r["qos"] == 1, r
    assert isinstance(r.get("lastModifiedTime"), int), r
    listed = api.data.list_retained_messages()["retainedTopics"]
    mine = [x for x in listed if x["topic"] == topic]
    assert len(mine) == 1, listed
    assert mine[0]["payloadSize"] == len(b'{"on": true}') and mine[0]["qos"] == 1, mine
    # an MQTT subscriber gets it as a retained message
    sub = clients.paho(b, uid("cp-late"))
    sub.subscribe(topic, 1)
    m = sub.expect(T, topic=topic)
    assert (m.payload, m.retain) == (b'{"on": true}', True), m
    # a retained message set over MQTT is visible over HTTP
    t2 = f"cp/{uid('ret')}/mqtt"
    sub.publish(t2, b"from mqtt", 1, retain=True)
    assert api.data.get_retained_message(topic=t2)["payload"] == b"from mqtt"
    # an empty retained payload deletes it
    api.data.publish(topic=topic, qos=1, retain=True, payload=b"")
    code, status, msg = api_error(api.data.get_retained_message, topic=topic)
    assert (code, status) == ("ResourceNotFoundException", 404), (code, status, msg)
    assert topic not in [x["topic"] for x in api.data.list_retained_messages()["retainedTopics"]]


# ============================================================================================
# 5. Error shapes
# ============================================================================================

def test_error_shapes(broker):
    b = cp_broker(broker)
    api = admin(b)
    unknown = uid("nosuch").replace("-", "_")
    code, status, msg = api_error(api.iot.get_policy, policyName=unknown)
    assert (code, status) == ("ResourceNotFoundException", 404), (code, status, msg)

    pol = create_policy(api.iot, ALLOW_MQTT)
    code, status, msg = api_error(api.iot.create_policy, policyName=pol,
                                  policyDocument=json.dumps(ALLOW_MQTT))
    assert (code, status) == ("ResourceAlreadyExistsException", 409), (code, status, msg)

    bad = {"Version": "2012-10-17", "Statement": [{"Effect": "Maybe"}]}
    code, status, msg = api_error(api.iot.create_policy, policyName=uid("bad").replace("-", "_"),
                                  policyDocument=json.dumps(bad))
    assert (code, status) == ("MalformedPolicyException", 400), (code, status, msg)
    assert msg, "a malformed policy needs a message saying what is wrong"
    code, status, msg = api_error(api.iot.create_policy, policyName=uid("bad").replace("-", "_"),
                                  policyDocument="{not json")
    assert (code, status) == ("MalformedPolicyException", 400), (code, status, msg)

    code, status, msg = api_error(api.iot.describe_certificate, certificateId="ab" * 32)
    assert (code, status) == ("ResourceNotFoundException", 404), (code, status, msg)
    code, status, msg = api_error(api.iot.update_certificate, certificateId="ab" * 32,
                                  newStatus="BOGUS")
    assert (code, status) == ("InvalidRequestException", 400), (code, status, msg)
    code, status, msg = api_error(api.iot.attach_policy, policyName=unknown, target=f"{ARN}:cert/{'ab' * 32}")
    assert (code, status) == ("ResourceNotFoundException", 404), (code, status, msg)


@pytest.mark.parametrize("case", ["unsigned", "wrong-secret", "unknown-key"])
@pytest.mark.parametrize("service", ["iot", "iot-data"])
def test_unauthenticated_requests_are_403(broker, case, service):
    b = cp_broker(broker)
    if case == "unsigned":
        client = boto(b, service, unsigned=True)
    elif case == "wrong-secret":
        client = boto(b, service, secret=ADMIN_SECRET + "x")
    else:
        client = boto(b, service, key="AKIANOSUCHADMINKEY01")
    if service == "iot":
        code, status, msg = api_error(client.list_policies)
    else:
        code, status, msg = api_error(client.publish, topic=f"cp/{uid('t')}", qos=0, payload=b"x")
    assert status == 403, (code, status, msg)
    assert code in ("UnauthorizedException", "ForbiddenException", "AccessDeniedException",
                    "InvalidSignatureException", "UnrecognizedClientException"), (code, status, msg)
    assert code in ("UnauthorizedException", "ForbiddenException"), \
        f"contract: UnauthorizedException or ForbiddenException; got {(code, status, msg)}"
    assert msg, f"{case}: the 403 must give the reason"
    if case == "wrong-secret":
        assert "signature" in msg.lower(), msg
    # the admin's correctly signed request works on the same broker
    admin(b).iot.list_policies()


# ============================================================================================
# 6. test_authorization
# ============================================================================================

def test_test_authorization_decisions(broker, tmp_path):
    b = cp_broker(broker)
    api = admin(b)
    raw = {}
    api.iot.meta.events.register("after-call.iot.TestAuthorization",
                                 lambda http_response, **kw: raw.__setitem__("body", http_response.content))
    dev = new_device(api.iot, tmp_path)
    prefix = f"cpz/{uid('z')}"
    pol = create_policy(api.iot, scoped(prefix, deny=f"{prefix}/secret"))
    api.iot.attach_policy(policyName=pol, target=dev.arn)
    cid = uid("cp-ta")
    infos = [
        {"actionType": "PUBLISH", "resources": [f"{ARN}:topic/{prefix}/x"]},
        {"actionType": "PUBLISH", "resources": [f"{ARN}:topic/elsewhere/x"]},
        {"actionType": "PUBLISH", "resources": [f"{ARN}:topic/{prefix}/secret"]},
        {"actionType": "SUBSCRIBE", "resources": [f"{ARN}:topicfilter/{prefix}/#"]},
        {"actionType": "CONNECT", "resources": [f"{ARN}:client/{cid}"]},
    ]
    r = api.iot.test_authorization(principal=dev.arn, authInfos=infos, clientId=cid)
    got = [x["authDecision"] for x in r["authResults"]]
    assert got == ["ALLOWED", "IMPLICIT_DENY", "EXPLICIT_DENY", "ALLOWED", "ALLOWED"], r
    for x, info in zip(r["authResults"], infos):
        assert x["authInfo"]["actionType"] == info["actionType"], x
        assert x["authInfo"]["resources"] == info["resources"], x
    body = json.loads(raw["body"])
    reasons = [x.get("reason") for x in body["authResults"]]
    assert all(isinstance(s, str) and s for s in reasons), f"our extra `reason` per result: {body}"
    # AWS's shape: which policies allowed / denied
    allowed = [p["policyName"] for p in r["authResults"][0]["allowed"]["policies"]]
    assert allowed == [pol], r["authResults"][0]
    denied = [p["policyName"] for p in r["authResults"][2]["denied"]["explicitDeny"]["policies"]]
    assert denied == [pol], r["authResults"][2]
    # detached: implicit deny
    api.iot.detach_policy(policyName=pol, target=dev.arn)
    r = api.iot.test_authorization(principal=dev.arn, authInfos=infos[:1], clientId=cid)
    assert r["authResults"][0]["authDecision"] == "IMPLICIT_DENY", r
    # a registered certificate that never had a policy: implicit deny too (as AWS)
    other = new_device(api.iot, tmp_path)
    r = api.iot.test_authorization(principal=other.arn, authInfos=infos[:1], clientId=cid)
    assert r["authResults"][0]["authDecision"] == "IMPLICIT_DENY", r


# ============================================================================================
# 7. Custom authorizers through the API
# ============================================================================================

def test_authorizer_lifecycle(broker, clients, authfn, signer, raws):
    b = cp_broker(broker)
    api = admin(b)
    witness = clients.witness(b)
    name = uid("CpAuth").replace("-", "")
    r = api.iot.create_authorizer(
        authorizerName=name, authorizerFunctionArn=authfn.url, tokenKeyName=TOKEN_KEY,
        tokenSigningPublicKeys={"key1": signer.public_pem.decode()}, status="ACTIVE",
        signingDisabled=False)
    assert r["authorizerName"] == name and r["authorizerArn"] == f"{ARN}:authorizer/{name}", r
    d = api.iot.describe_authorizer(authorizerName=name)["authorizerDescription"]
    assert (d["authorizerName"], d["authorizerFunctionArn"], d["tokenKeyName"], d["status"]) == \
        (name, authfn.url, TOKEN_KEY, "ACTIVE"), d
    assert d.get("signingDisabled") in (False, None), d
    assert name in [a["authorizerName"] for a in api.iot.list_authorizers()["authorizers"]]
    code, status, msg = api_error(api.iot.create_authorizer, authorizerName=name,
                                  authorizerFunctionArn=authfn.url, tokenKeyName=TOKEN_KEY,
                                  tokenSigningPublicKeys={"key1": signer.public_pem.decode()})
    assert (code, status) == ("ResourceAlreadyExistsException", 409), (code, status, msg)

    principal = f"dev{uuid.uuid4().hex[:12]}"
    # a custom-auth WebSocket (iOS-style headers) through it
    tls_http = client_context(b.ca_file, alpn=["http/1.1"])
    tok2 = f"tok{uuid.uuid4().hex[:12]}"
    authfn.allow(tok2, principal)
    headers = [("x-amz-customauthorizer-name", name),
               ("x-amz-customauthorizer-signature", signer.sign(tok2)), (TOKEN_KEY, tok2)]
    ans, c = ws_connect(b.tls_port, "/mqtt", headers, tls_ctx=tls_http)
    assert ans.status == 101, ans
    raws.append(c)
    cid = uid("cp-cauth")
    c.connect_ok(cid)
    raw_roundtrip(c)
    assert principal in b.wait_log(cid, ["client connected"])

    # INACTIVE → new connections refused
    api.iot.update_authorizer(authorizerName=name, status="INACTIVE")
    assert api.iot.describe_authorizer(authorizerName=name)["authorizerDescription"]["status"] == "INACTIVE"
    tok3 = f"tok{uuid.uuid4().hex[:12]}"
    authfn.allow(tok3, principal)
    cursor = LogCursor(b)
    ans, c = ws_connect(b.tls_port, "/mqtt", [
        ("x-amz-customauthorizer-name", name),
        ("x-amz-customauthorizer-signature", signer.sign(tok3)), (TOKEN_KEY, tok3)], tls_ctx=tls_http)
    assert ans.status == 403 and c is None, f"INACTIVE authorizer: expected 403, got {ans}"
    cursor.wait([], ["inactive"])
    assert authfn.events_for(tok3) == [], "an INACTIVE authorizer's function must not be called"

    # delete, then it is gone
    api.iot.delete_authorizer(authorizerName=name)
    code, status, msg = api_error(api.iot.describe_authorizer, authorizerName=name)
    assert (code, status) == ("ResourceNotFoundException", 404), (code, status, msg)
    witness.roundtrip()


def test_test_invoke_authorizer(broker, authfn, signer):
    b = cp_broker(broker)
    api = admin(b)
    name = uid("CpInv").replace("-", "")
    api.iot.create_authorizer(authorizerName=name, authorizerFunctionArn=authfn.url,
                              tokenKeyName=TOKEN_KEY, status="ACTIVE",
                              tokenSigningPublicKeys={"key1": signer.public_pem.decode()})
    tok, principal = f"tok{uuid.uuid4().hex[:12]}", f"dev{uuid.uuid4().hex[:12]}"
    policy = scoped(f"inv/{principal}")
    authfn.allow(tok, principal, [policy], disconnect_after=3600, refresh_after=600)
    t = api.iot.test_invoke_authorizer(authorizerName=name, token=tok, tokenSignature=signer.sign(tok))
    assert len(authfn.events_for(tok)) == 1, "the function must be called"
    assert t["isAuthenticated"] is True and t["principalId"] == principal, t
    assert [json.loads(d) for d in t.get("policyDocuments", [])] == [policy], \
        f"policyDocuments must be what the function returned: {t}"
    assert (t.get("disconnectAfterInSeconds"), t.get("refreshAfterInSeconds")) == (3600, 600), t
    # a bad signature: the function is not called, an error or isAuthenticated false
    bad = f"tok{uuid.uuid4().hex[:12]}"
    authfn.allow(bad, principal)
    try:
        t = api.iot.test_invoke_authorizer(authorizerName=name, token=bad, tokenSignature=signer.sign(bad + "x"))
        assert t["isAuthenticated"] is False, t
    except ClientError as e:
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] in (400, 403), e.response
    assert authfn.events_for(bad) == [], "a bad signature must not reach the function"


def test_set_default_authorizer(broker, clients, authfn, raws):
    b = cp_broker(broker)
    api = admin(b)
    name = uid("CpDef").replace("-", "")
    api.iot.create_authorizer(authorizerName=name, authorizerFunctionArn=authfn.url,
                              tokenKeyName=TOKEN_KEY, status="ACTIVE", signingDisabled=True)
    tok, principal = f"def{uuid.uuid4().hex[:12]}", f"dev{uuid.uuid4().hex[:12]}"
    authfn.allow(tok, principal)
    tls_http = client_context(b.ca_file, alpn=["http/1.1"])

    # no default yet: a bare upgrade with only a token in the username is CONNACK 5
    ans, c = ws_connect(b.tls_port, "/mqtt", tls_ctx=tls_http)
    assert ans.status == 101, ans
    raws.append(c)
    assert c.connect(uid("cp-nodef"), username=f"?{TOKEN_KEY}={tok}").return_code == 5

    r = api.iot.set_default_authorizer(authorizerName=name)
    assert r["authorizerName"] == name and r["authorizerArn"] == f"{ARN}:authorizer/{name}", r
    ans, c = ws_connect(b.tls_port, "/mqtt", tls_ctx=tls_http)
    assert ans.status == 101, ans
    raws.append(c)
    cid = uid("cp-def")
    c.connect_ok(cid, username=f"?{TOKEN_KEY}={tok}")
    raw_roundtrip(c)
    assert principal in b.wait_log(cid, ["client connected"])
    [ev] = authfn.events_for(tok)
    assert ev["signatureVerified"] is False, ev
    code, status, msg = api_error(api.iot.set_default_authorizer, authorizerName="NoSuchAuthorizer")
    assert (code, status) == ("ResourceNotFoundException", 404), (code, status, msg)


# ============================================================================================
# 8. describe_endpoint, lists
# ============================================================================================

def test_describe_endpoint_and_lists(broker, tmp_path):
    principal = f"us-east-1:{uuid.uuid4()}"
    b = cp_broker(broker)
    api = admin(b)
    for kw in ({"endpointType": "iot:Data-ATS"}, {}):
        assert api.iot.describe_endpoint(**kw)["endpointAddress"] == "localhost", kw
    dev = new_device(api.iot, tmp_path)
    dev2 = new_device(api.iot, tmp_path)
    pol = create_policy(api.iot, ALLOW_MQTT)
    other = create_policy(api.iot, scoped("cp-other"))
    api.iot.attach_policy(policyName=pol, target=dev.arn)
    api.iot.attach_policy(policyName=pol, target=principal)
    api.iot.attach_policy(policyName=other, target=dev.arn)

    policies = {p["policyName"]: p["policyArn"] for p in api.iot.list_policies()["policies"]}
    assert policies.get(pol) == f"{ARN}:policy/{pol}" and other in policies, policies
    certs = {c["certificateId"]: c for c in api.iot.list_certificates()["certificates"]}
    for d in (dev, dev2):
        assert certs[d.id]["certificateArn"] == d.arn and certs[d.id]["status"] == "ACTIVE", certs
    g = api.iot.get_policy(policyName=pol)
    assert (g["policyName"], g["policyArn"], g["defaultVersionId"]) == (pol, f"{ARN}:policy/{pol}", "1"), g
    assert json.loads(g["policyDocument"]) == ALLOW_MQTT, g

    targets = api.iot.list_targets_for_policy(policyName=pol)["targets"]
    assert sorted(targets) == sorted([dev.arn, principal]), targets
    assert api.iot.list_targets_for_policy(policyName=other)["targets"] == [dev.arn]
    attached = sorted(p["policyName"] for p in api.iot.list_attached_policies(target=dev.arn)["policies"])
    assert attached == sorted([pol, other]), attached
    assert api.iot.list_attached_policies(target=dev2.arn)["policies"] == []
    code, status, msg = api_error(api.iot.list_targets_for_policy, policyName="no_such_policy_cp")
    assert (code, status) == ("ResourceNotFoundException", 404), (code, status, msg)

    # clean up what this test made
    for t in (dev.arn, principal):
        api.iot.detach_policy(policyName=pol, target=t)
    api.iot.detach_policy(policyName=other, target=dev.arn)
    for p in (pol, other):
        api.iot.delete_policy(policyName=p)
    for d in (dev, dev2):
        api.iot.update_certificate(certificateId=d.id, newStatus="INACTIVE")
        api.iot.delete_certificate(certificateId=d.id)
    names = [p["policyName"] for p in api.iot.list_policies()["policies"]]
    assert pol not in names and other not in names, names


def test_plain_http_on_the_api_port(broker):
    """Not an API path: an HTTP error, not a hang or a crash."""
    b = cp_broker(broker)
    ans = http_status(b.http_port, "/definitely/not/an/api", [("Host", "localhost")])
    assert 400 <= ans.status < 500, ans
    admin(b).iot.list_policies()
    b.assert_running()


# ============================================================================================
# 9. The CLI against the API
# ============================================================================================

def cli(args: list[str], cwd: Path, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(env_extra or {})
    return subprocess.run([BIN, "iot", *args], capture_output=True, text=True, timeout=20,
                          stdin=subprocess.DEVNULL, cwd=cwd, env=env)


def test_cli_uses_the_api(broker, tmp_path):
    b = cp_broker(broker)
    api = admin(b)
    pol = create_policy(api.iot, ALLOW_MQTT)
    url = endpoint(b)
    work = tmp_path / "cli"
    work.mkdir()

    r = cli(["list-policies", "--endpoint-url", url, "--config", str(b.config_path)], work)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    names = [p["policyName"] for p in json.loads(r.stdout)["policies"]]
    assert pol in names, r.stdout

    # credentials from the AWS environment variables instead of --config
    env = {"AWS_ACCESS_KEY_ID": ADMIN_KEY, "AWS_SECRET_ACCESS_KEY": ADMIN_SECRET,
           "AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION}
    made = uid("cli").replace("-", "_")
    r = cli(["create-policy", "--endpoint-url", url, "--policy-name", made,
             "--policy-document", json.dumps(ALLOW_MQTT)], work, env)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    out = json.loads(r.stdout)
    assert out["policyName"] == made and out["policyVersionId"] == "1", out
    assert json.loads(api.iot.get_policy(policyName=made)["policyDocument"]) == ALLOW_MQTT
    r = cli(["get-policy", "--endpoint-url", url, "--policy-name", made], work, env)
    assert r.returncode == 0 and json.loads(r.stdout)["policyName"] == made, r

    # an API error: non-zero, one line naming it
    r = cli(["get-policy", "--endpoint-url", url, "--policy-name", "no_such_policy_cli"], work, env)
    assert r.returncode != 0, r
    assert "ResourceNotFoundException" in r.stderr or "not found" in r.stderr.lower(), r.stderr
    # wrong credentials: refused, the reason shown
    bad = dict(env, AWS_SECRET_ACCESS_KEY="wrong")
    r = cli(["list-policies", "--endpoint-url", url], work, bad)
    assert r.returncode != 0, r
    assert re.search(r"403|unauthori|forbidden|signature", r.stderr, re.I), r.stderr
    assert not (work / ".pubsub").exists(), "with --endpoint-url the CLI must not open a data dir"


def test_https_publish_on_the_tls_port_reaches_an_mqtt_subscriber(broker, clients):
    """IoT Core's HTTPS publish: the same API, SigV4-signed, over TLS on the `tls` port
    (boto3 verifying the broker's CA)."""
    b = cp_broker(broker)
    topic = f"https/{uid('t')}"
    sub = clients.paho(b, uid("https-sub"))
    assert sub.subscribe(topic, 1) == [1]
    data = boto3.client("iot-data", endpoint_url=f"https://localhost:{b.tls_port}",
                        region_name=REGION, aws_access_key_id=ADMIN_KEY,
                        aws_secret_access_key=ADMIN_SECRET, verify=str(b.ca_file),
                        config=Config(**BOTO_CONFIG))
    data.publish(topic=topic, qos=1, payload=b"over https")
    m = sub.expect(topic=topic)
    assert m.payload == b"over https"
    unsigned = boto3.client("iot-data", endpoint_url=f"https://localhost:{b.tls_port}",
                            region_name=REGION, verify=str(b.ca_file),
                            config=Config(signature_version=botocore.UNSIGNED, **BOTO_CONFIG))
    with pytest.raises(ClientError):
        unsigned.publish(topic=topic, qos=1, payload=b"x")
