"""WebSocket `/mqtt` on the tls port (ALPN http/1.1 or none) and the plain `ws` port;
SigV4 presigned upgrades ([[credentials]], `pubsub iot create-access-key`); custom
authorizers ([[authorizers]], `default_authorizer`) over WebSocket headers / query, the
CONNECT username (bare upgrade, ALPN `mqtt`); refusals (HTTP 403 / CONNACK 5 with a logged
reason); `websocket_ttl`.

Clients: the official AWS CRT SDK (awsiotsdk), paho-mqtt over WebSockets, a hand-written
WebSocket client (wsraw.py) and raw MQTT over TLS. The authorizer function is served from
the test process (authfn.py); tokens are signed with `cryptography` (and openssl)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import shutil
import ssl
import subprocess
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

import pytest

from authfn import (
    ALLOW_ALL, ARN, AuthorizerFunction, TokenSigner, allow_answer, authorizer_toml,
    credentials_toml, free_port, policy_toml, scoped_policy,
)
from conftest import BIN
from helpers import Paho, uid
from mqttraw import subscribe_packet
from sigv4presign import amz_now, presign_query
from tlscerts import TlsRawClient, attempt_connect, client_context
from wsraw import http_request, http_status, ws_connect

awscrt = pytest.importorskip("awscrt")
import awscrt.auth  # noqa: E402
from awscrt import mqtt as crt_mqtt  # noqa: E402
from awsiot import mqtt_connection_builder  # noqa: E402

T = 10  # every wait is bounded by this
VECTORS = json.loads(Path("/work/shared/vectors/aws-iot-wire.json").read_text()) \
    if Path("/work/shared/vectors/aws-iot-wire.json").exists() else None

WS_LISTENERS = {"tls": "127.0.0.1:0", "ws": "127.0.0.1:0"}
DISCONNECTED = "$aws/events/presence/disconnected/"
AKID, SECRET = "AKIAWSTESTEXAMPLE001", "wsTestSecretKey/abcdefghijklmnopqrstuv01"
TOKEN_KEY = "mytoken"

COGNITO_SUB = "${cognito-identity.amazonaws.com:sub}"
COGNITO_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"},
    {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
     "Resource": f"{ARN}:topic/users/{COGNITO_SUB}/*"},
    {"Effect": "Allow", "Action": "iot:Subscribe",
     "Resource": f"{ARN}:topicfilter/users/{COGNITO_SUB}/*"},
]}


def port_443_free() -> bool:
    import socket
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 443))
        return True
    except OSError:
        return False
    finally:
        s.close()


needs_443 = pytest.mark.skipif(not port_443_free(), reason="127.0.0.1:443 is not free (or not root)")


# -- fixtures --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def signer(tmp_path_factory) -> TokenSigner:
    return TokenSigner(tmp_path_factory.mktemp("authorizer-keys"))


@pytest.fixture
def authfn():
    fn = AuthorizerFunction()
    yield fn
    fn.close()


@pytest.fixture
def crt():
    """Tracks CRT connections; disconnects them at teardown."""
    conns = []
    yield conns
    for c in conns:
        try:
            c.disconnect().result(5)
        except Exception:
            pass


@pytest.fixture
def raws():
    """Tracks raw (WebSocket / TLS) clients; closes them at teardown."""
    cs = []
    yield cs
    for c in cs:
        try:
            c.close()
        except Exception:
            pass


# -- helpers ---------------------------------------------------------------------------------

class LogCursor:
    """Waits for broker log lines written after it was made."""

    def __init__(self, b):
        self.b = b
        self.pos = len(b.log())

    def wait(self, must: list[str], any_of: list[str], timeout: float = 5.0) -> str:
        must_l, any_l = [m.lower() for m in must], [a.lower() for a in any_of]
        deadline = time.monotonic() + timeout
        while True:
            new = self.b.log()[self.pos:]
            for line in new.splitlines():
                low = line.lower()
                if all(m in low for m in must_l) and any(a in low for a in any_l):
                    return line
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no new broker log line with all of {must} and any of {any_of}; new lines:\n"
                    + "\n".join(new.splitlines()[-25:]))
            time.sleep(0.1)


def ctx(b, alpn: list[str] | None = None) -> ssl.SSLContext:
    return client_context(b.ca_file, alpn=alpn)


def auth_headers(name: str | None, signature: str | None, token: str | None,
                 token_key: str = TOKEN_KEY) -> list[tuple[str, str]]:
    h = []
    if name is not None:
        h.append(("x-amz-customauthorizer-name", name))
    if signature is not None:
        h.append(("x-amz-customauthorizer-signature", signature))
    if token is not None:
        h.append((token_key, token))
    return h


def auth_query(name: str | None, signature: str | None, token: str | None,
               token_key: str = TOKEN_KEY) -> str:
    return "&".join(f"{k}={urllib.parse.quote(v, safe='')}"
                    for k, v in auth_headers(name, signature, token, token_key))


def auth_username(user: str, name: str | None, signature: str | None, token: str | None,
                  metrics: bool = True) -> str:
    q = auth_query(name, signature, token)
    if metrics:
        q += "&SDK=IoTDeviceSDK/Python&Platform=Unix&Metadata=(CRTVersion=0.36.1;IoTSDKFeature=F/3,G/A)"
    return f"{user}?{q}"


def new_token(prefix: str = "tok") -> str:
    return f"{prefix}{uuid.uuid4().hex[:16]}"


def new_principal(prefix: str = "dev") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def auth_broker(broker, authfn, signer, extra_toml: str = "", listeners=None, **kw):
    """Authorizer `Auth` (token key `mytoken`, signing on) served by `authfn`."""
    toml = authorizer_toml("Auth", authfn.url, signer.public_path) + extra_toml
    return broker(listeners=listeners or WS_LISTENERS, extra_toml=toml, **kw)


def raw_ws(b, port_kind: str, target: str = "/mqtt", headers=None, subprotocol="mqtt"):
    """(answer, client|None) of an upgrade on the plain ws port ("ws") or the tls port
    ("tls": ALPN http/1.1, "tls-noalpn": no ALPN)."""
    if port_kind == "ws":
        return ws_connect(b.ws_port, target, headers, subprotocol=subprotocol)
    alpn = ["http/1.1"] if port_kind == "tls" else None
    return ws_connect(b.tls_port, target, headers, tls_ctx=ctx(b, alpn), subprotocol=subprotocol)


def raw_roundtrip(c, prefix: str = "ws") -> None:
    """Subscribe, publish QoS 1, receive it, over a connected raw client."""
    topic = f"{prefix}/{uid('t')}"
    assert c.subscribe(topic, 1) == [1]
    payload = uuid.uuid4().bytes
    c.publish(topic, payload, qos=1)
    m = c.next_publish(T)
    assert (m.topic, m.payload) == (topic, payload)


def assert_403(ans, what: str = "") -> None:
    assert re.match(r"^HTTP/1\.1 403\b", ans.status_line), f"{what}: expected 403, got {ans}"


def crt_sigv4(b, akid: str, secret: str, token: str | None = None, region: str = "us-east-1",
              client_id: str | None = None, **kw):
    provider = awscrt.auth.AwsCredentialsProvider.new_static(akid, secret, token)
    return mqtt_connection_builder.websockets_with_default_aws_signing(
        endpoint="localhost", port=b.tls_port, region=region, credentials_provider=provider,
        ca_filepath=str(b.ca_file), client_id=client_id or uid("crt-sigv4"), clean_session=True,
        keep_alive_secs=30, **kw)


def crt_round_trip(connection, topic: str) -> None:
    """Subscribe to `topic`, publish QoS 1, receive it (the connection is connected)."""
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


def crt_refused(connection) -> Exception:
    try:
        connection.connect().result(T)
    except Exception as e:  # noqa: BLE001 - any CRT error is the refusal
        return e
    connection.disconnect().result(5)
    raise AssertionError("the CRT client connected, a refusal was expected")


def paho_ws(b, port_kind: str, client_id=None, path="/mqtt", headers=None, username=None,
            password=None) -> Paho:
    if port_kind == "ws":
        return Paho(b.ws_port, client_id or uid("paho-ws"), host="127.0.0.1", transport="websockets",
                    ws_path=path, ws_headers=headers, username=username, password=password)
    alpn = ["http/1.1"] if port_kind == "tls" else None
    return Paho(b.tls_port, client_id or uid("paho-wss"), host="localhost", tls_context=ctx(b, alpn),
                transport="websockets", ws_path=path, ws_headers=headers, username=username,
                password=password)


def paho_connack(p: Paho, timeout: float = T):
    """Connects without asserting success; returns the CONNACK reason code."""
    p.client.connect(p.host, p.port, keepalive=p.keepalive)
    p.client.loop_start()
    assert p._connected.wait(timeout), f"{p.client_id}: no CONNACK within {timeout}s"
    return p.connect_rc


def iot_cli(b, *args: str) -> dict:
    r = subprocess.run([BIN, "iot", *args, "--data-dir", str(b.data_dir)], capture_output=True,
                       text=True, timeout=20, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, f"pubsub iot {' '.join(args)}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return json.loads(r.stdout) if r.stdout.strip().startswith("{") else {}


def header_value(headers: dict, name: str):
    for k, v in headers.items():
        if k.lower() == name.lower():
            return v
    return None


# ============================================================================================
# 1. SigV4 with the official AWS CRT SDK
# ============================================================================================

@pytest.mark.parametrize("session_token", [None, "SESSION/token+abc="], ids=["no-token", "token"])
def test_crt_sigv4_websocket_roundtrip(broker, crt, session_token):
    principal = f"us-east-1:{uuid.uuid4()}"
    b = broker(listeners=WS_LISTENERS, extra_toml=credentials_toml(AKID, SECRET, principal))
    cid = uid("crt-sigv4")
    conn = crt_sigv4(b, AKID, SECRET, session_token, client_id=cid)
    crt.append(conn)
    conn.connect().result(T)
    crt_round_trip(conn, f"crt/{uid('t')}")
    line = b.wait_log(cid, ["client connected"])
    assert principal in line, f"the connection's principal should be the credential's: {line}"


def test_crt_sigv4_cognito_sub_policy_enforced(broker, clients, crt):
    principal = f"us-east-1:{uuid.uuid4()}"
    b = broker(listeners=WS_LISTENERS,
               extra_toml=policy_toml("cognito-users", COGNITO_POLICY)
               + credentials_toml(AKID, SECRET, principal, ["cognito-users"]))
    witness = clients.witness(b)
    cid = uid("crt-cog")
    interrupted = threading.Event()
    conn = crt_sigv4(b, AKID, SECRET, client_id=cid,
                     on_connection_interrupted=lambda connection, error, **kw: interrupted.set())
    crt.append(conn)
    conn.connect().result(T)
    # its own subtree works: subscribe, publish, receive
    crt_round_trip(conn, f"users/{principal}/{uid('t')}")
    # a plain observer sees what it publishes there
    own = f"users/{principal}/obs"
    witness.subscribe(own, 1)
    conn.publish(topic=own, payload=b"mine", qos=crt_mqtt.QoS.AT_LEAST_ONCE)[0].result(T)
    assert witness.expect(T, topic=own).payload == b"mine"
    # someone else's subtree: the publish closes the connection
    other = f"users/us-east-1:{uuid.uuid4()}/x"
    witness.subscribe(other, 1)
    conn.publish(topic=other, payload=b"not mine", qos=crt_mqtt.QoS.AT_MOST_ONCE)
    assert interrupted.wait(T), "a publish outside users/<sub>/ must close the connection"
    b.wait_log(cid, ["publish denied", "publish refused"], timeout=5)
    assert not [m for m in witness.drain(0.5) if m.topic == other], "the denied message was delivered"
    witness.roundtrip()


@pytest.mark.parametrize("variant", ["ws-host-only", "tls-host-only", "ws-iotdata-service",
                                     "ws-x-amz-expires-300", "ws-dated-10-minutes-ago",
                                     "ws-token-after-signature", "ws-token-before-signature",
                                     "ws-connection-host-signed"])
def test_independent_presigned_url_roundtrip(broker, raws, variant):
    """An upgrade presigned by our own SigV4 code (which reproduces the captured vectors)."""
    principal = f"us-east-1:{uuid.uuid4()}"
    b = broker(listeners=WS_LISTENERS, extra_toml=credentials_toml(AKID, SECRET, principal))
    port_kind = "tls" if variant.startswith("tls") else "ws"
    service = "iotdata" if "iotdata" in variant else "iotdevicegateway"
    signed = {"host": "localhost"}
    if "connection-host" in variant:
        signed["connection"] = "Upgrade"
    token = "SESSION/tok+en=" if "token" in variant else None
    kw = {}
    if "expires" in variant:
        kw["expires"] = 300
    if "10-minutes-ago" in variant:
        kw["amz_date"] = amz_now(-dt.timedelta(minutes=10))
    query = presign_query(AKID, SECRET, service=service, headers=signed,
                          token=token if "before" in variant else None, **kw)
    if "after" in variant:
        query += "&X-Amz-Security-Token=" + urllib.parse.quote(token, safe="")
    ans, c = raw_ws(b, port_kind, "/mqtt?" + query)
    assert ans.status == 101, f"{variant}: {ans}"
    raws.append(c)
    cid = uid("presigned")
    c.connect_ok(cid)
    raw_roundtrip(c)
    assert principal in b.wait_log(cid, ["client connected"])


# ============================================================================================
# 2. SigV4 refusals → HTTP 403, reason logged
# ============================================================================================

SIGV4_REASONS = {
    "wrong-secret": ["signature does not match"],
    "unknown-key": ["unknown access key"],
    "wrong-region": ["region"],
}


@pytest.mark.parametrize("case", list(SIGV4_REASONS))
def test_crt_sigv4_refused_with_reason(broker, clients, crt, case):
    b = broker(listeners=WS_LISTENERS, extra_toml=credentials_toml(AKID, SECRET, "us-east-1:refusal"))
    witness = clients.witness(b)
    cursor = LogCursor(b)
    akid, secret, region = AKID, SECRET, "us-east-1"
    if case == "wrong-secret":
        secret = SECRET + "x"
    elif case == "unknown-key":
        akid = "AKIAUNKNOWNKEY000001"
    elif case == "wrong-region":
        region = "eu-west-1"
    conn = crt_sigv4(b, akid, secret, region=region, client_id=uid(f"crt-{case}"))
    crt_refused(conn)
    line = cursor.wait(["websocket upgrade refused", "403"], SIGV4_REASONS[case])
    if case == "unknown-key":
        assert akid in line, line
    # control: the right credentials still work
    ok = crt_sigv4(b, AKID, SECRET)
    crt.append(ok)
    ok.connect().result(T)
    witness.roundtrip()


RAW_SIGV4_CASES = {
    "wrong-secret": ["signature does not match"],
    "unknown-key": ["unknown access key"],
    "wrong-region": ["region"],
    "signature-digit-changed": ["signature does not match"],
    "dated-16-minutes-ago": ["15 minutes"],
    "dated-16-minutes-ahead": ["15 minutes"],
    "other-service": ["service"],
    "host-header-changed": ["signature does not match"],
    "signature-missing": ["malformed", "missing"],
    "algorithm-hmac-sha1": ["algorithm"],
    "x-amz-expires-passed": ["expired"],
}


@pytest.mark.parametrize("port_kind", ["ws", "tls"])
@pytest.mark.parametrize("case", list(RAW_SIGV4_CASES))
def test_raw_sigv4_refused_with_http_403(broker, clients, case, port_kind):
    b = broker(listeners=WS_LISTENERS, extra_toml=credentials_toml(AKID, SECRET, "us-east-1:raw"))
    witness = clients.witness(b)
    cursor = LogCursor(b)
    kw = {}
    akid, secret, region = AKID, SECRET, "us-east-1"
    if case == "wrong-secret":
        secret = "another/secret"
    elif case == "unknown-key":
        akid = "AKIAUNKNOWNKEY000002"
    elif case == "wrong-region":
        region = "ap-south-1"
    elif case == "dated-16-minutes-ago":
        kw["amz_date"] = amz_now(-dt.timedelta(minutes=16))
    elif case == "dated-16-minutes-ahead":
        kw["amz_date"] = amz_now(dt.timedelta(minutes=16))
    elif case == "other-service":
        kw["service"] = "s3"
    elif case == "host-header-changed":
        kw["headers"] = {"host": "other.example.com"}
    elif case == "algorithm-hmac-sha1":
        kw["algorithm"] = "AWS4-HMAC-SHA1"
    elif case == "x-amz-expires-passed":
        kw["amz_date"], kw["expires"] = amz_now(-dt.timedelta(seconds=90)), 30
    query = presign_query(akid, secret, region, **kw)
    if case == "signature-missing":
        query = query.rsplit("&X-Amz-Signature=", 1)[0]
    if case == "signature-digit-changed":
        last = query[-1]
        query = query[:-1] + ("0" if last != "0" else "1")
    ans, c = raw_ws(b, port_kind, "/mqtt?" + query)
    assert c is None and ans.status == 403, f"{case}: {ans}"
    assert_403(ans, case)
    cursor.wait(["websocket upgrade refused", "403"], RAW_SIGV4_CASES[case])
    # control: the same request, correctly signed, is upgraded
    good, c2 = raw_ws(b, port_kind, "/mqtt?" + presign_query(AKID, SECRET))
    assert good.status == 101, good
    c2.connect_ok(uid("control"))
    c2.close()
    witness.roundtrip()


@pytest.mark.skipif(VECTORS is None, reason="vectors not found")
@pytest.mark.parametrize("vector", ["crt-with-session-token", "crt-no-token-other-region"])
def test_replayed_crt_upgrade_is_expired(broker, clients, vector):
    """The captured CRT upgrade, byte for byte, is dated more than 15 minutes ago."""
    v = next(x for x in VECTORS["sigv4_websocket"] if x["name"] == vector)
    b = broker(listeners=WS_LISTENERS, region=v["region"],
               extra_toml=credentials_toml(v["access_key_id"], v["secret_access_key"],
                                           "us-east-1:vector"))
    witness = clients.witness(b)
    cursor = LogCursor(b)
    now = dt.datetime.now(dt.timezone.utc)
    signed_at = dt.datetime.fromisoformat(v["now"].replace("Z", "+00:00"))
    assert abs(now - signed_at) > dt.timedelta(minutes=15), "the vector is not old yet"
    ans, sock, _ = http_request(b.ws_port, "", [tuple(h) for h in v["headers"]],
                                request_line=v["request_line"])
    sock.close()
    assert_403(ans, vector)
    line = cursor.wait(["websocket upgrade refused", "403"], ["15 minutes"])
    assert v["access_key_id"] in line or "sigv4" in line.lower(), line
    witness.roundtrip()


# ============================================================================================
# 3. A key made by `pubsub iot create-access-key`
# ============================================================================================

def test_cli_created_access_key_signs_crt_websocket(broker, crt, raws):
    b = broker(listeners=WS_LISTENERS)
    principal = f"us-east-1:{uuid.uuid4()}"
    key = iot_cli(b, "create-access-key", "--principal", principal)["AccessKey"]
    akid, secret = key["AccessKeyId"], key["SecretAccessKey"]
    assert akid and secret
    iot_cli(b, "attach-policy", "--policy-name", "dev-allow-all", "--target", principal)
    cid = uid("crt-clikey")
    conn = crt_sigv4(b, akid, secret, client_id=cid)
    crt.append(conn)
    try:
        conn.connect().result(T)
    except Exception as e:  # noqa: BLE001
        refusal = b.log_lines_with(cid, "connect refused")
        raise AssertionError(
            f"a CLI-made access key whose principal has dev-allow-all attached (attach-policy "
            f"while the broker runs) cannot connect: {e!r}; broker: {refusal}") from None
    crt_round_trip(conn, f"crt/{uid('t')}")
    assert principal in b.wait_log(cid, ["client connected"])
    # an independent signer with the same key, on the plain ws port
    ans, c = raw_ws(b, "ws", "/mqtt?" + presign_query(akid, secret))
    assert ans.status == 101, ans
    raws.append(c)
    c.connect_ok(uid("raw-clikey"))
    raw_roundtrip(c)


# ============================================================================================
# 4. Custom auth with the CRT: WebSocket (fields in the username) and direct (ALPN mqtt, 443)
# ============================================================================================

def test_crt_websockets_with_custom_authorizer(broker, authfn, signer, crt):
    b = auth_broker(broker, authfn, signer)
    token, principal = new_token(), new_principal()
    authfn.allow(token, principal)
    cid = uid("crt-cauth-ws")
    conn = mqtt_connection_builder.websockets_with_custom_authorizer(
        endpoint="localhost", port=b.tls_port, ca_filepath=str(b.ca_file), client_id=cid,
        clean_session=True, keep_alive_secs=30,
        auth_username="devuser", auth_authorizer_name="Auth",
        auth_authorizer_signature=signer.sign(token), auth_password="pw-ws",
        auth_token_key_name=TOKEN_KEY, auth_token_value=token)
    crt.append(conn)
    conn.connect().result(T)
    crt_round_trip(conn, f"crt/{uid('t')}")
    assert principal in b.wait_log(cid, ["client connected"])
    [ev] = authfn.events_for(token)
    assert "http" in ev["protocols"] and "mqtt" in ev["protocols"], ev
    assert ev["signatureVerified"] is True, ev
    mq = ev["protocolData"]["mqtt"]
    assert mq["clientId"] == cid, ev
    assert mq["username"].startswith("devuser?x-amz-customauthorizer-name=Auth"), ev
    assert base64.b64decode(mq["password"]) == b"pw-ws", ev


@needs_443
def test_crt_direct_with_custom_authorizer_on_443(broker, authfn, signer, crt, clients):
    b = auth_broker(broker, authfn, signer, listeners={"tls": "127.0.0.1:443"})
    witness = clients.witness(b)
    token, principal = new_token(), new_principal()
    authfn.allow(token, principal)
    cid = uid("crt-cauth-direct")
    conn = mqtt_connection_builder.direct_with_custom_authorizer(
        endpoint="localhost", ca_filepath=str(b.ca_file), client_id=cid, clean_session=True,
        keep_alive_secs=30, auth_username="devuser", auth_authorizer_name="Auth",
        auth_authorizer_signature=signer.sign(token), auth_password="secret-pw",
        auth_token_key_name=TOKEN_KEY, auth_token_value=token)
    crt.append(conn)
    conn.connect().result(T)
    crt_round_trip(conn, f"crt/{uid('t')}")
    assert principal in b.wait_log(cid, ["client connected"])
    [ev] = authfn.events_for(token)
    assert "mqtt" in ev["protocols"] and "http" not in ev["protocols"], ev
    assert ev["protocolData"]["tls"]["serverName"] == "localhost", ev
    assert base64.b64decode(ev["protocolData"]["mqtt"]["password"]) == b"secret-pw", ev

    # refused: the function says no → the CRT's connect fails, CONNACK refused logged
    bad = new_token("deny")
    authfn.deny(bad)
    cid2 = uid("crt-direct-denied")
    conn2 = mqtt_connection_builder.direct_with_custom_authorizer(
        endpoint="localhost", ca_filepath=str(b.ca_file), client_id=cid2, clean_session=True,
        keep_alive_secs=30, auth_username="devuser", auth_authorizer_name="Auth",
        auth_authorizer_signature=signer.sign(bad), auth_token_key_name=TOKEN_KEY,
        auth_token_value=bad)
    crt_refused(conn2)
    b.wait_log(cid2, ["connect refused"])
    assert "isauthenticated" in b.wait_log(cid2, ["connect refused"]).lower()
    witness.roundtrip()


# ============================================================================================
# 5. Custom auth over WebSocket headers / query with paho (iOS style), TLS and plain
# ============================================================================================

@pytest.mark.parametrize("how", ["tls-headers", "tls-noalpn-headers", "tls-query",
                                 "ws-headers", "ws-query"])
def test_paho_websocket_custom_auth(broker, authfn, signer, clients, how):
    b = auth_broker(broker, authfn, signer)
    token, principal = new_token(), new_principal()
    authfn.allow(token, principal)
    port_kind = how.rsplit("-", 1)[0]
    sig = signer.sign(token)
    if how.endswith("query"):
        p = paho_ws(b, port_kind, path="/mqtt?" + auth_query("Auth", sig, token))
    else:
        p = paho_ws(b, port_kind, headers=dict(auth_headers("Auth", sig, token)))
    clients.track(p)
    p.connect()
    p.roundtrip()
    assert principal in b.wait_log(p.client_id, ["client connected"])
    assert len(authfn.events_for(token)) == 1


# ============================================================================================
# 6. The policies the function returned govern the connection
# ============================================================================================

@pytest.mark.parametrize("violation", ["publish", "subscribe"])
def test_returned_policies_are_enforced(broker, authfn, signer, clients, raws, violation):
    b = auth_broker(broker, authfn, signer)
    witness = clients.witness(b)
    token, principal = new_token(), new_principal()
    prefix = f"devices/{principal}"
    authfn.allow(token, principal, [scoped_policy(prefix)])
    headers = auth_headers("Auth", signer.sign(token), token)
    ans, c = raw_ws(b, "ws", headers=headers)
    assert ans.status == 101, ans
    raws.append(c)
    cid = uid("scoped")
    c.connect_ok(cid)
    raw_roundtrip(c, prefix)
    # an allowed publish reaches a plain subscriber
    t = f"{prefix}/to-witness"
    witness.subscribe(t, 1)
    c.publish(t, b"allowed", qos=1)
    assert witness.expect(T, topic=t).payload == b"allowed"
    # the answer is cached per (authorizer, token): a second connection does not call again
    ans2, c2 = raw_ws(b, "tls", headers=headers)
    assert ans2.status == 101, ans2
    raws.append(c2)
    c2.connect_ok(uid("scoped2"))
    assert len(authfn.events_for(token)) == 1, "refreshAfterInSeconds=300: the answer is cached"
    # outside the returned policies: the connection is closed
    if violation == "publish":
        c.publish("elsewhere/x", b"denied", qos=0)
        assert c.closed_within(5), "a publish outside the returned policies must close the connection"
        b.wait_log(cid, ["publish denied", "publish refused"])
    else:
        c.send(subscribe_packet(77, [("elsewhere/#", 1)]))
        assert c.closed_within(5), "a subscribe outside the returned policies must close the connection"
        b.wait_log(cid, ["subscribe denied", "subscribe refused"])
    raw_roundtrip(c2, prefix)  # the other connection is unaffected
    witness.roundtrip()


# ============================================================================================
# 7. Custom-auth refusals: WebSocket (403) and CONNECT username over ALPN mqtt (CONNACK 5)
# ============================================================================================

REFUSALS = {
    "unknown-authorizer": ["does not exist", "unknown", "not found"],
    "inactive-authorizer": ["inactive"],
    "bad-signature": ["signature does not match", "signature mismatch", "does not verify"],
    "missing-signature": ["signature missing", "missing signature", "no signature"],
    "not-authenticated": ["isauthenticated"],
    "function-down": ["unreachable", "connection refused"],
    "function-slow": ["did not answer", "timed out", "timeout"],
    "garbage-answer": ["invalid answer", "not json", "not a json"],
    "http-500": ["http 500", "500 internal"],
    "invalid-principal-id": ["principalid"],
    "disconnect-after-too-short": ["disconnectafterinseconds"],
}
NOT_CALLED = {"unknown-authorizer", "inactive-authorizer", "bad-signature", "missing-signature"}


def refusal_broker(broker, authfn, signer):
    extra = (authorizer_toml("Inactive", authfn.url, signer.public_path, status="INACTIVE")
             + authorizer_toml("Down", f"http://127.0.0.1:{free_port()}/authorize",
                               signer.public_path))
    return auth_broker(broker, authfn, signer, extra, authorizer_timeout="1s")


def refusal_fields(case: str, authfn, signer) -> tuple[str, str | None, str]:
    """(authorizer name, signature, token) for a case; sets the function's behaviour."""
    token = new_token(case.replace("-", "")[:10])
    name, sig = "Auth", signer.sign(token)
    if case == "unknown-authorizer":
        name = "NoSuchAuthorizer"
    elif case == "inactive-authorizer":
        name = "Inactive"
    elif case == "bad-signature":
        sig = signer.sign(token + "x")
    elif case == "missing-signature":
        sig = None
    elif case == "not-authenticated":
        authfn.deny(token)
    elif case == "function-down":
        name = "Down"
    elif case == "function-slow":
        authfn.sleep(token, 3)
    elif case == "garbage-answer":
        authfn.raw(token, b"<html>this is not JSON</html>")
    elif case == "http-500":
        authfn.status(token, 500)
    elif case == "invalid-principal-id":
        authfn.answer(token, allow_answer("not-valid!"))
    elif case == "disconnect-after-too-short":
        authfn.answer(token, allow_answer(new_principal(), disconnect_after=60))
    if case not in ("unknown-authorizer", "inactive-authorizer", "bad-signature",
                    "missing-signature", "not-authenticated", "function-down", "function-slow",
                    "garbage-answer", "http-500", "invalid-principal-id",
                    "disconnect-after-too-short"):
        raise ValueError(case)
    return name, sig, token


@pytest.mark.parametrize("transport", ["ws-headers-tls", "ws-query-plain", "alpn-mqtt-username",
                                       "ws-username-bare-upgrade"])
@pytest.mark.parametrize("case", list(REFUSALS))
def test_custom_auth_refused_with_reason(broker, authfn, signer, clients, raws, case, transport):
    b = refusal_broker(broker, authfn, signer)
    witness = clients.witness(b)
    cursor = LogCursor(b)
    name, sig, token = refusal_fields(case, authfn, signer)
    cid = uid(f"ref-{case[:8]}")
    t0 = time.monotonic()
    if transport == "ws-headers-tls":
        ans, c = raw_ws(b, "tls", headers=auth_headers(name, sig, token))
        assert c is None, f"{case}: upgraded, expected 403"
        assert_403(ans, case)
        cursor.wait(["websocket upgrade refused", "403"], REFUSALS[case])
    elif transport == "ws-query-plain":
        ans, c = raw_ws(b, "ws", "/mqtt?" + auth_query(name, sig, token))
        assert c is None, f"{case}: upgraded, expected 403"
        assert_403(ans, case)
        cursor.wait(["websocket upgrade refused", "403"], REFUSALS[case])
    elif transport == "alpn-mqtt-username":
        o = attempt_connect(b.tls_port, ctx(b, ["mqtt"]), cid,
                            username=auth_username("devuser", name, sig, token), password=b"pw")
        assert o.alpn == "mqtt", o
        assert o.kind == "connack" and o.return_code == 5, f"{case}: expected CONNACK 5, got {o}"
        cursor.wait(["connect refused", cid], REFUSALS[case])
    else:  # a bare upgrade, fields in the CONNECT username (the CRT's WebSocket mode)
        ans, c = raw_ws(b, "tls")
        assert ans.status == 101, ans
        raws.append(c)
        ack = c.connect(cid, username=auth_username("devuser", name, sig, token), password=b"pw")
        assert ack.return_code == 5, f"{case}: expected CONNACK 5, got {ack!r}"
        cursor.wait(["connect refused", cid], REFUSALS[case])
    elapsed = time.monotonic() - t0
    if case == "function-slow":
        assert elapsed < 2.9, f"authorizer_timeout=1s but the refusal took {elapsed:.1f}s"
    called = authfn.events_for(token)
    if case in NOT_CALLED:
        assert not called, f"{case}: the function must not be called: {called}"
    elif case != "function-down":
        assert len(called) == 1, f"{case}: the function should have been called once: {called}"
    witness.roundtrip()
    b.assert_running()


# ============================================================================================
# 8. default_authorizer
# ============================================================================================

def test_default_authorizer_authenticates_token_only_username(broker, authfn, clients):
    b = broker(listeners=WS_LISTENERS, default_authorizer="DefAuth",
               extra_toml=authorizer_toml("DefAuth", authfn.url, signing_disabled=True))
    token, principal = new_token("def"), new_principal()
    authfn.allow(token, principal)
    p = paho_ws(b, "ws", username=f"?{TOKEN_KEY}={token}", password="pw-def")
    clients.track(p)
    p.connect()
    p.roundtrip()
    assert principal in b.wait_log(p.client_id, ["client connected"])
    [ev] = authfn.events_for(token)
    assert ev["signatureVerified"] is False, ev
    assert ev["protocolData"]["mqtt"]["clientId"] == p.client_id, ev
    # over TLS with ALPN mqtt, too
    token2, principal2 = new_token("def"), new_principal()
    authfn.allow(token2, principal2)
    c = clients.track(TlsRawClient(b.tls_port, ctx(b, ["mqtt"])))
    cid = uid("def-alpn")
    c.connect_ok(cid, username=f"?{TOKEN_KEY}={token2}&SDK=PythonV2&Version=1.31.0")
    assert principal2 in b.wait_log(cid, ["client connected"])


def test_no_default_authorizer_and_no_fields_is_connack_5(broker, authfn, signer, clients, raws):
    b = auth_broker(broker, authfn, signer)
    witness = clients.witness(b)
    # raw: exact CONNACK code
    for port_kind in ("ws", "tls"):
        ans, c = raw_ws(b, port_kind)
        assert ans.status == 101, ans
        raws.append(c)
        cid = uid(f"bare-{port_kind}")
        ack = c.connect(cid)
        assert ack.return_code == 5, f"{port_kind}: {ack!r}"
        b.wait_log(cid, ["connect refused"])
        # metrics only is no credential either
        ans, c = raw_ws(b, port_kind)
        raws.append(c)
        cid = uid(f"metrics-{port_kind}")
        ack = c.connect(cid, username=VECTORS["mqtt_connect_username"][1]["username"]
                        if VECTORS else "?SDK=IoTDeviceSDK/Python&Platform=Unix")
        assert ack.return_code == 5, f"{port_kind}: {ack!r}"
    # paho: a bare connection is not authorized
    p = paho_ws(b, "ws")
    clients.track(p)
    rc = paho_connack(p)
    p.close()
    assert rc.is_failure and ("authori" in str(rc).lower() or rc.value in (5, 135)), rc
    # ALPN mqtt with no fields
    o = attempt_connect(b.tls_port, ctx(b, ["mqtt"]), uid("alpn-nofields"), username="plainuser")
    assert o.kind == "connack" and o.return_code == 5, o
    witness.roundtrip()


# ============================================================================================
# 9. The event the function received
# ============================================================================================

def test_authorizer_event_fields(broker, authfn, signer, raws, clients):
    b = auth_broker(broker, authfn, signer)

    # (a) WebSocket headers over TLS
    tok = new_token("hdr")
    authfn.allow(tok, new_principal())
    ans, c = raw_ws(b, "tls", headers=auth_headers("Auth", signer.sign(tok), tok)
                    + [("X-Custom-Header", "custom-value")])
    assert ans.status == 101, ans
    raws.append(c)
    c.connect_ok(uid("ev-hdr"))
    [ev] = authfn.events_for(tok)
    assert ev["token"] == tok and ev["signatureVerified"] is True, ev
    assert set(ev["protocols"]) == {"tls", "http", "mqtt"}, ev
    pd = ev["protocolData"]
    assert pd["tls"]["serverName"] == "localhost", ev
    assert isinstance(pd["http"]["headers"], dict), ev
    assert header_value(pd["http"]["headers"], TOKEN_KEY) == tok, ev
    assert header_value(pd["http"]["headers"], "X-Custom-Header") == "custom-value", ev
    assert isinstance(ev["connectionMetadata"]["id"], str) and ev["connectionMetadata"]["id"], ev

    # (b) WebSocket query on the plain port: no TLS
    tok = new_token("qry")
    authfn.allow(tok, new_principal())
    query = auth_query("Auth", signer.sign(tok), tok)
    ans, c = raw_ws(b, "ws", "/mqtt?" + query)
    assert ans.status == 101, ans
    raws.append(c)
    c.connect_ok(uid("ev-qry"))
    [ev] = authfn.events_for(tok)
    assert "http" in ev["protocols"] and "mqtt" in ev["protocols"], ev
    assert "tls" not in ev["protocols"], f"plain ws port: no tls: {ev}"
    qs = ev["protocolData"]["http"]["queryString"]
    assert f"{TOKEN_KEY}={tok}" in qs and "x-amz-customauthorizer-name=Auth" in qs, ev

    # (c) CONNECT username over ALPN mqtt
    tok = new_token("usr")
    authfn.allow(tok, new_principal())
    cid = uid("ev-usr")
    username = auth_username("devuser", "Auth", signer.sign(tok), tok)
    c = clients.track(TlsRawClient(b.tls_port, ctx(b, ["mqtt"])))
    c.connect_ok(cid, username=username, password=b"p\x00ss\xffword")
    [ev] = authfn.events_for(tok)
    assert ev["token"] == tok and ev["signatureVerified"] is True, ev
    assert "mqtt" in ev["protocols"] and "http" not in ev["protocols"], ev
    assert "tls" in ev["protocols"], ev
    mq = ev["protocolData"]["mqtt"]
    assert mq["clientId"] == cid, ev
    assert mq["username"] == username, ev
    assert base64.b64decode(mq["password"]) == b"p\x00ss\xffword", ev
    assert ev["protocolData"]["tls"]["serverName"] == "localhost", ev
    assert "http" not in ev["protocolData"], ev


# ============================================================================================
# 10. HTTP basics
# ============================================================================================

@pytest.mark.parametrize("port_kind", ["ws", "tls", "tls-noalpn"])
def test_http_basics(broker, authfn, signer, port_kind):
    b = auth_broker(broker, authfn, signer)
    port = b.ws_port if port_kind == "ws" else b.tls_port
    alpn = None if port_kind != "tls" else ["http/1.1"]
    tls = None if port_kind == "ws" else ctx(b, alpn)
    ans = http_status(port, "/other", tls_ctx=tls)
    assert re.match(r"^HTTP/1\.1 404\b", ans.status_line), ans
    ans = http_status(port, "/", tls_ctx=tls)
    assert ans.status == 404, ans
    ans = http_status(port, "/mqtt", tls_ctx=tls)
    assert re.match(r"^HTTP/1\.1 400\b", ans.status_line), ans
    # an upgrade with a wrong version is not an upgrade
    ans = http_status(port, "/mqtt", [("Host", "localhost"), ("Upgrade", "websocket"),
                                      ("Connection", "Upgrade"), ("Sec-WebSocket-Key", "x3JJHMbDL1EzLkh9GBhXDw=="),
                                      ("Sec-WebSocket-Version", "8")], tls_ctx=tls)
    assert ans.status == 400, ans
    # other paths are 404 even with an upgrade
    ans, c = raw_ws(b, port_kind, "/notmqtt")
    assert ans.status == 404 and c is None, ans
    for proto in ("mqtt", "mqttv3.1"):
        ans, c = raw_ws(b, port_kind, subprotocol=proto)
        assert ans.status == 101, ans
        assert ans.header("sec-websocket-protocol") == proto, f"subprotocol not echoed: {ans}"
        assert ans.header("upgrade").lower() == "websocket", ans
        c.close()
    # a WebSocket carries MQTT once authenticated (headers, iOS style, with mqttv3.1)
    tok = new_token()
    authfn.allow(tok, new_principal())
    ans, c = raw_ws(b, port_kind, headers=auth_headers("Auth", signer.sign(tok), tok),
                    subprotocol="mqttv3.1")
    assert ans.status == 101 and ans.header("sec-websocket-protocol") == "mqttv3.1", ans
    try:
        c.connect_ok(uid("basics"))
        raw_roundtrip(c)
    finally:
        c.close()


# ============================================================================================
# 11. websocket_ttl
# ============================================================================================

def test_websocket_ttl_closes_connections(broker, authfn, signer, clients, crt, raws):
    b = auth_broker(broker, authfn, signer, credentials_toml(AKID, SECRET, "us-east-1:ttl"),
                    websocket_ttl="2s")
    observer = clients.paho(b, uid("observer"))
    observer.subscribe(DISCONNECTED + "+", 1)
    plain = clients.paho(b, uid("plain"))

    tok = new_token("ttl")
    authfn.allow(tok, new_principal())
    ans, c = raw_ws(b, "ws", headers=auth_headers("Auth", signer.sign(tok), tok))
    assert ans.status == 101, ans
    raws.append(c)
    cid_custom = uid("ttl-custom")
    t0 = time.monotonic()
    c.connect_ok(cid_custom)

    ans, s = raw_ws(b, "tls", "/mqtt?" + presign_query(AKID, SECRET))
    assert ans.status == 101, ans
    raws.append(s)
    cid_sigv4 = uid("ttl-sigv4")
    s.connect_ok(cid_sigv4)

    interrupted = threading.Event()
    cid_crt = uid("ttl-crt")
    conn = crt_sigv4(b, AKID, SECRET, client_id=cid_crt,
                     on_connection_interrupted=lambda connection, error, **kw: interrupted.set())
    crt.append(conn)
    conn.connect().result(T)

    closed = c.wait_closed(6)
    assert closed is not None, "websocket_ttl=2s: the custom-auth WebSocket still open after 6 s"
    assert time.monotonic() - t0 > 1.0, "closed too early for a 2 s TTL"
    assert s.closed_within(6), "websocket_ttl=2s: the SigV4 WebSocket still open"
    assert interrupted.wait(6), "websocket_ttl=2s: the CRT connection was not closed"
    for cid in (cid_custom, cid_sigv4):
        ev = observer.expect(T, topic=DISCONNECTED + cid).json()
        assert ev["disconnectReason"] == "WEBSOCKET_TTL_EXPIRATION", ev
    plain.roundtrip()  # plain MQTT has no TTL


# ============================================================================================
# Rules: credentials on the upgrade win; metrics in the username; signatures
# ============================================================================================

def test_upgrade_credentials_win_over_username(broker, authfn, signer, raws):
    b = auth_broker(broker, authfn, signer, credentials_toml(AKID, SECRET, "us-east-1:wins"))
    tok, principal = new_token("win"), new_principal()
    authfn.allow(tok, principal)
    junk = auth_username("someone", "NoSuchAuthorizer", "bm90IGEgc2lnbmF0dXJl", "nothing")
    # authorizer headers on the upgrade, junk fields in the username
    ans, c = raw_ws(b, "tls", headers=auth_headers("Auth", signer.sign(tok), tok))
    assert ans.status == 101, ans
    raws.append(c)
    cid = uid("win-hdr")
    c.connect_ok(cid, username=junk, password=b"x")
    assert principal in b.wait_log(cid, ["client connected"])
    # SigV4 on the upgrade, junk fields in the username
    ans, c = raw_ws(b, "ws", "/mqtt?" + presign_query(AKID, SECRET))
    assert ans.status == 101, ans
    raws.append(c)
    cid = uid("win-sigv4")
    c.connect_ok(cid, username=junk)
    assert "us-east-1:wins" in b.wait_log(cid, ["client connected"])
    assert authfn.events_for("nothing") == []


@pytest.mark.skipif(not shutil.which("openssl"), reason="openssl not on PATH")
def test_openssl_signature_is_accepted(broker, authfn, signer, clients, tmp_path):
    b = auth_broker(broker, authfn, signer)
    tok, principal = new_token("ossl"), new_principal()
    authfn.allow(tok, principal)
    r = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(signer.private_path)],
                       input=tok.encode(), capture_output=True, timeout=10)
    assert r.returncode == 0, r.stderr
    sig = base64.b64encode(r.stdout).decode()
    assert sig == signer.sign(tok), "PKCS#1 v1.5 is deterministic: openssl and cryptography agree"
    p = clients.track(paho_ws(b, "tls", path="/mqtt?" + auth_query("Auth", sig, tok)))
    p.connect()
    p.roundtrip()
    # a raw base64 signature ('+', '/', '=') unescaped in the username keeps its '+'
    tok2 = tok + "b"
    authfn.allow(tok2, principal)
    sig2 = signer.sign(tok2)
    cid = uid("ossl-raw")
    c = clients.track(TlsRawClient(b.tls_port, ctx(b, ["mqtt"])))
    c.connect_ok(cid, username=f"u?x-amz-customauthorizer-name=Auth&x-amz-customauthorizer-signature={sig2}&{TOKEN_KEY}={tok2}")


@pytest.mark.skipif(VECTORS is None, reason="vectors not found")
def test_vector_token_signature(broker, authfn, clients, tmp_path):
    """The captured token signature verifies with the captured public key; one flipped
    signature byte does not."""
    v = VECTORS["custom_auth_token_signature"]
    pub = tmp_path / "vector-pub.pem"
    pub.write_text(v["public_key_pem"])
    b = broker(listeners=WS_LISTENERS, extra_toml=authorizer_toml("Vec", authfn.url, pub.resolve()))
    witness = clients.witness(b)
    authfn.allow(v["token"], new_principal("vec"))
    ans, c = raw_ws(b, "ws", headers=auth_headers("Vec", v["signature_base64"], v["token"]))
    assert ans.status == 101, ans
    clients.track(c)
    c.connect_ok(uid("vec"))
    raw = bytearray(base64.b64decode(v["signature_base64"]))
    raw[10] ^= 0x01
    flipped = base64.b64encode(bytes(raw)).decode()
    ans, c = raw_ws(b, "ws", headers=auth_headers("Vec", flipped, v["token"]))
    assert_403(ans, "flipped signature byte")
    witness.roundtrip()


# ============================================================================================
# 12. A witness keeps working through a burst of refusals of every kind
# ============================================================================================

def test_witness_survives_refusal_burst(broker, authfn, signer, clients, raws):
    b = refusal_broker(broker, authfn, signer)
    witness = clients.witness(b)
    ws_witness = None
    tok = new_token("wit")
    authfn.allow(tok, new_principal())
    ans, ws_witness = raw_ws(b, "ws", headers=auth_headers("Auth", signer.sign(tok), tok))
    assert ans.status == 101, ans
    raws.append(ws_witness)
    ws_witness.connect_ok(uid("ws-witness"))
    for case in REFUSALS:
        if case == "function-slow":
            continue  # bounded time: covered above
        name, sig, token = refusal_fields(case, authfn, signer)
        ans, c = raw_ws(b, "ws", headers=auth_headers(name, sig, token))
        assert ans.status == 403, (case, ans)
        o = attempt_connect(b.tls_port, ctx(b, ["mqtt"]), uid("burst"),
                            username=auth_username("u", name, sig, token))
        assert o.kind == "connack" and o.return_code == 5, (case, o)
        ans, c = raw_ws(b, "tls", "/mqtt?" + presign_query("AKIANOSUCHKEY0000001", SECRET))
        assert ans.status == 403, ans
        http_status(b.ws_port, "/nope")
    witness.roundtrip()
    raw_roundtrip(ws_witness)
    b.assert_running()
