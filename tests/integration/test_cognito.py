"""Cognito Identity emulation on `listeners.http` (the control-plane endpoint): the AWS JSON 1.1
protocol of `cognito-identity`, driven by boto3 exactly as against AWS (only `endpoint_url`
changes). Pools are made with the `[admin]` SigV4 credentials (CreateIdentityPool & co) or
declared in the config (`[[identity_pools]]`); GetId / GetCredentialsForIdentity /
GetOpenIdToken are unsigned as in AWS. The temporary credentials are then used by the
official AWS CRT SDK (and an independent presigner, `sigv4presign.py`) for a SigV4 WebSocket
on the tls port: only with their own session token, only until they expire; the principal is
the IdentityId and `${cognito-identity.amazonaws.com:sub}` resolves to it. What a guest identity
may do is what its pool's unauthenticated role allows (SetIdentityPoolRoles with a role of
`[[roles]]`), as IoT Core grants it (test_cognito_roles.py checks the rule itself). The
`pubsub cognito …` CLI is checked against the same API.

Every wait is bounded (≤ 10 s); every broker is per test."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from conftest import BIN
from helpers import uid
from sigv4presign import presign_query
from tlscerts import client_context
from wsraw import ws_connect
from test_control_plane import (
    ADMIN_KEY, ADMIN_SECRET, ALLOW_MQTT, ARN, REGION, api_error, boto, cp_broker,
    endpoint, LogCursor,
)

awscrt = pytest.importorskip("awscrt")
import awscrt.auth  # noqa: E402
from awscrt import mqtt as crt_mqtt  # noqa: E402
from awsiot import mqtt_connection_builder  # noqa: E402
import botocore.auth  # noqa: E402
import botocore.awsrequest  # noqa: E402
import botocore.credentials  # noqa: E402

T = 10  # every wait is bounded by this
ID_RE = re.compile(r"us-east-1:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SUB = "${cognito-identity.amazonaws.com:sub}"
USERS_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{ARN}:client/*"},
    {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"], "Resource": f"{ARN}:topic/users/{SUB}/*"},
    {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": f"{ARN}:topicfilter/users/{SUB}/*"},
]}
# The roles guest identities get: SetIdentityPoolRoles names them by ARN.
ROLES_TOML = (f"\n[[roles]]\nname = \"allow-mqtt\"\npolicy = '{json.dumps(ALLOW_MQTT)}'\n"
              f"\n[[roles]]\nname = \"users\"\npolicy = '{json.dumps(USERS_POLICY)}'\n")
SHORT_POOL_TOML = ('\n[[identity_pools]]\nname = "short"\nallow_unauthenticated = true\ncredentials_ttl = "2s"\n'
                   f"unauthenticated_role_policy = '{json.dumps(ALLOW_MQTT)}'\n")


def role_arn(name: str) -> str:
    return f"arn:aws:iam::{ARN.split(':')[4]}:role/{name}"


def cog_broker(broker, extra_toml: str = ""):
    """A control-plane broker with the roles of ROLES_TOML."""
    return cp_broker(broker, extra_toml=ROLES_TOML + extra_toml)


# -- fixtures & helpers ------------------------------------------------------------------------

@pytest.fixture
def crt():
    """AWS CRT connections, disconnected at teardown."""
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


def cognito(b, **kw):
    return boto(b, "cognito-identity", **kw)


def new_pool(cog, allow_unauthenticated: bool = True, role: str | None = "allow-mqtt") -> str:
    """A pool whose guests get `role` (a [[roles]] entry), as an AWS deployment sets it."""
    name = uid("pool").replace("-", "_")
    r = cog.create_identity_pool(IdentityPoolName=name,
                                 AllowUnauthenticatedIdentities=allow_unauthenticated)
    assert ID_RE.fullmatch(r.get("IdentityPoolId", "")), f"IdentityPoolId must be us-east-1:<uuid>: {r}"
    assert r.get("IdentityPoolName") == name, r
    assert r.get("AllowUnauthenticatedIdentities") is allow_unauthenticated, r
    pool = r["IdentityPoolId"]
    if role:
        cog.set_identity_pool_roles(IdentityPoolId=pool, Roles={"unauthenticated": role_arn(role)})
        got = cog.get_identity_pool_roles(IdentityPoolId=pool)
        assert got == {**got, "IdentityPoolId": pool, "Roles": {"unauthenticated": role_arn(role)}}, got
    return pool


def pool_id_by_name(cog, name: str) -> str:
    pools = cog.list_identity_pools(MaxResults=60)["IdentityPools"]
    found = [p["IdentityPoolId"] for p in pools if p["IdentityPoolName"] == name]
    assert len(found) == 1, f"the config pool {name!r} must be listed once: {pools}"
    assert ID_RE.fullmatch(found[0]), found
    return found[0]


def new_identity(cog, pool_id: str) -> str:
    r = cog.get_id(IdentityPoolId=pool_id)
    assert ID_RE.fullmatch(r.get("IdentityId", "")), f"IdentityId must be us-east-1:<uuid>: {r}"
    return r["IdentityId"]


def credentials(cog, identity_id: str) -> dict:
    r = cog.get_credentials_for_identity(IdentityId=identity_id)
    assert r.get("IdentityId") == identity_id, r
    c = r["Credentials"]
    for k in ("AccessKeyId", "SecretKey", "SessionToken"):
        assert isinstance(c.get(k), str) and c[k], f"Credentials.{k} missing: {r}"
    assert isinstance(c.get("Expiration"), dt.datetime), f"Expiration must be a timestamp: {r}"
    return c


def seconds_left(c: dict) -> float:
    return (c["Expiration"] - dt.datetime.now(dt.timezone.utc)).total_seconds()


def crt_conn(b, akid: str, secret: str, token: str | None, client_id: str, **kw):
    provider = awscrt.auth.AwsCredentialsProvider.new_static(akid, secret, token)
    return mqtt_connection_builder.websockets_with_default_aws_signing(
        endpoint="localhost", port=b.tls_port, region=REGION, credentials_provider=provider,
        ca_filepath=str(b.ca_file), client_id=client_id, clean_session=True, keep_alive_secs=30, **kw)


def crt_refused(connection, what: str) -> Exception:
    try:
        connection.connect().result(T)
    except Exception as e:  # noqa: BLE001 - any CRT error is the refusal
        return e
    connection.disconnect().result(5)
    raise AssertionError(f"{what}: the CRT client connected, a refusal was expected")


def crt_round_trip(connection, topic: str) -> None:
    got = threading.Event()
    received = {}

    def on_message(topic, payload, **kwargs):
        received["payload"] = payload
        got.set()

    sub, _ = connection.subscribe(topic=topic, qos=crt_mqtt.QoS.AT_LEAST_ONCE, callback=on_message)
    assert sub.result(T)["qos"] == crt_mqtt.QoS.AT_LEAST_ONCE, f"subscribe to {topic} refused"
    payload = uuid.uuid4().hex.encode()
    pub, _ = connection.publish(topic=topic, payload=payload, qos=crt_mqtt.QoS.AT_LEAST_ONCE)
    pub.result(T)
    assert got.wait(T), f"the CRT client did not receive its own message on {topic}"
    assert received["payload"] == payload


def presigned_ws(b, c: dict, token: str | None):
    """An upgrade presigned by our own SigV4 code with the temporary key; `token` appended."""
    q = presign_query(c["AccessKeyId"], c["SecretKey"], token=token)
    return ws_connect(b.tls_port, "/mqtt?" + q, tls_ctx=client_context(b.ca_file, alpn=["http/1.1"]))


def raw_roundtrip(c, prefix: str) -> None:
    topic = f"{prefix}/{uid('t')}"
    assert c.subscribe(topic, 1) == [1]
    payload = uuid.uuid4().bytes
    c.publish(topic, payload, qos=1)
    m = c.next_publish(T)
    assert (m.topic, m.payload) == (topic, payload)


def cognito_json(b, op: str, body: dict, sign: tuple[str, str] | None = None) -> tuple[int, dict]:
    """One raw AWS JSON 1.1 call (optionally SigV4-signed with botocore's signer)."""
    req = botocore.awsrequest.AWSRequest(
        method="POST", url=endpoint(b) + "/", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/x-amz-json-1.1",
                 "X-Amz-Target": f"AWSCognitoIdentityService.{op}"})
    if sign:
        creds = botocore.credentials.Credentials(*sign)
        botocore.auth.SigV4Auth(creds, "cognito-identity", REGION).add_auth(req)
    prepared = req.prepare()
    r = urllib.request.Request(prepared.url, data=prepared.body, method="POST",
                               headers=dict(prepared.headers.items()))
    try:
        with urllib.request.urlopen(r, timeout=T) as ans:
            return ans.status, json.loads(ans.read() or b"{}")
    except urllib.error.HTTPError as e:
        text = e.read()
        try:
            return e.code, json.loads(text or b"{}")
        except ValueError:
            return e.code, {"raw": text.decode(errors="replace")}


# ============================================================================================
# 1. The acceptance: pool → identity → credentials → policy → SigV4 WebSocket
# ============================================================================================

def test_full_flow_identity_credentials_policy_websocket(broker, clients, crt):
    b = cog_broker(broker)
    cog = cognito(b)
    pool = new_pool(cog, role="users")
    identity = new_identity(cog, pool)
    other = new_identity(cog, pool)
    assert other != identity, "each unauthenticated GetId makes a new identity"
    c = credentials(cog, identity)
    assert 60 < seconds_left(c) <= 3600 + 60, f"Expiration of a default pool: {c['Expiration']}"

    witness = clients.witness(b)
    cid = uid("cog-crt")
    interrupted = threading.Event()
    conn = crt_conn(b, c["AccessKeyId"], c["SecretKey"], c["SessionToken"], cid,
                    on_connection_interrupted=lambda connection, error, **kw: interrupted.set())
    crt.append(conn)
    conn.connect().result(T)
    line = b.wait_log(cid, ["client connected"])
    assert identity in line, f"the connection's principal must be the IdentityId: {line}"

    # its own subtree: subscribe, publish, receive; an observer sees it too
    crt_round_trip(conn, f"users/{identity}/x")
    own = f"users/{identity}/obs"
    witness.subscribe(own, 1)
    conn.publish(topic=own, payload=b"mine", qos=crt_mqtt.QoS.AT_LEAST_ONCE)[0].result(T)
    assert witness.expect(T, topic=own).payload == b"mine"

    # another identity's subtree: the publish closes the connection, nothing delivered
    theirs = f"users/{other}/x"
    witness.subscribe(theirs, 1)
    conn.publish(topic=theirs, payload=b"not mine", qos=crt_mqtt.QoS.AT_MOST_ONCE)
    assert interrupted.wait(T), f"a publish to {theirs} must close the connection"
    b.wait_log(cid, ["publish denied", "publish refused"], timeout=5)
    assert not [m for m in witness.drain(0.5) if m.topic == theirs], "the denied message was delivered"
    witness.roundtrip()


# ============================================================================================
# 2. Session token binding and expiry
# ============================================================================================

def test_session_token_is_required_and_bound(broker, clients, crt, raws):
    b = cog_broker(broker)
    cog = cognito(b)
    pool = new_pool(cog)
    identity = new_identity(cog, pool)
    c = credentials(cog, identity)
    c2 = credentials(cog, new_identity(cog, pool))
    assert c2["SessionToken"] != c["SessionToken"] and c2["AccessKeyId"] != c["AccessKeyId"], \
        "two identities must get different temporary credentials"
    witness = clients.witness(b)

    # control: the right token (independent presigner, then the CRT) works
    ans, ws = presigned_ws(b, c, c["SessionToken"])
    assert ans.status == 101, f"own session token: {ans}"
    raws.append(ws)
    cid = uid("cog-raw")
    ws.connect_ok(cid)
    raw_roundtrip(ws, "cog")
    assert identity in b.wait_log(cid, ["client connected"])
    ok = crt_conn(b, c["AccessKeyId"], c["SecretKey"], c["SessionToken"], uid("cog-ok"))
    crt.append(ok)
    ok.connect().result(T)

    cases = {"missing": None, "other-identity's": c2["SessionToken"],
             "altered": c["SessionToken"][:-2] + ("AA" if not c["SessionToken"].endswith("AA") else "BB"),
             "made-up": "FwoGZXIvYXdzEJr//////////wEaDNotARealToken"}
    for what, token in cases.items():
        cursor = LogCursor(b)
        ans, ws = presigned_ws(b, c, token)
        if ws is not None:
            raws.append(ws)
        assert ans.status == 403 and ws is None, f"{what} session token: expected HTTP 403, got {ans}"
        cursor.wait(["upgrade refused", "403"], ["session token"])  # the reason is logged
        crt_refused(crt_conn(b, c["AccessKeyId"], c["SecretKey"], token, uid("cog-bad")),
                    f"{what} session token")
    witness.roundtrip()


def test_expired_credentials_are_refused(broker, clients, crt, raws):
    b = cp_broker(broker, extra_toml=SHORT_POOL_TOML)
    cog = cognito(b)
    d = cog.describe_identity_pool(IdentityPoolId=pool_id_by_name(cog, "short"))
    assert d["IdentityPoolName"] == "short" and d["AllowUnauthenticatedIdentities"] is True, d
    # the config's unauthenticated_role_policy is the role the AWS console would name so
    roles = cog.get_identity_pool_roles(IdentityPoolId=d["IdentityPoolId"])["Roles"]
    assert roles == {"unauthenticated": role_arn("Cognito_shortUnauth_Role")}, roles
    identity = new_identity(cog, d["IdentityPoolId"])
    witness = clients.witness(b)
    c = credentials(cog, identity)
    left = seconds_left(c)
    assert -1 < left <= 3, f"credentials_ttl = 2s: Expiration {c['Expiration']} is {left:.1f}s away"

    # while valid (best effort: the TTL is short; a slow start is not the broker's fault)
    ans, ws = presigned_ws(b, c, c["SessionToken"])
    if seconds_left(c) > 0.3:
        assert ans.status == 101, f"fresh credentials refused: {ans}"
    if ws is not None:
        raws.append(ws)

    time.sleep(min(max(seconds_left(c), 0) + 1.0, 5))  # ≥ 1 s past Expiration (≈ 3 s in all)
    assert seconds_left(c) < 0
    cursor = LogCursor(b)
    ans, ws = presigned_ws(b, c, c["SessionToken"])
    if ws is not None:
        raws.append(ws)
    assert ans.status == 403 and ws is None, f"expired credentials: expected HTTP 403, got {ans}"
    cursor.wait(["upgrade refused", "403"], ["expire"])  # the reason is logged
    crt_refused(crt_conn(b, c["AccessKeyId"], c["SecretKey"], c["SessionToken"], uid("cog-exp")),
                "expired credentials")

    # new credentials for the same identity work again
    fresh = credentials(cog, identity)
    ans, ws = presigned_ws(b, fresh, fresh["SessionToken"])
    assert ans.status == 101, f"fresh credentials after expiry: {ans}"
    raws.append(ws)
    ws.connect_ok(uid("cog-fresh"))
    witness.roundtrip()


# ============================================================================================
# 3. Error shapes; signatures
# ============================================================================================

def test_error_shapes(broker):
    b = cog_broker(broker)
    cog = cognito(b)
    unknown_pool = f"us-east-1:{uuid.uuid4()}"
    code, status, msg = api_error(cog.get_id, IdentityPoolId=unknown_pool)
    assert code == "ResourceNotFoundException" and 400 <= status < 500, (code, status, msg)
    code, status, msg = api_error(cog.describe_identity_pool, IdentityPoolId=unknown_pool)
    assert code == "ResourceNotFoundException" and 400 <= status < 500, (code, status, msg)

    unknown_identity = f"us-east-1:{uuid.uuid4()}"
    code, status, msg = api_error(cog.get_credentials_for_identity, IdentityId=unknown_identity)
    assert code == "ResourceNotFoundException" and 400 <= status < 500, (code, status, msg)
    code, status, msg = api_error(cog.get_open_id_token, IdentityId=unknown_identity)
    assert code == "ResourceNotFoundException" and 400 <= status < 500, (code, status, msg)

    closed = new_pool(cog, allow_unauthenticated=False)
    code, status, msg = api_error(cog.get_id, IdentityPoolId=closed)
    assert code == "NotAuthorizedException" and 400 <= status < 500, (code, status, msg)
    assert msg, "NotAuthorizedException needs a message"
    # the broker still serves an open pool
    assert ID_RE.fullmatch(cog.get_id(IdentityPoolId=new_pool(cog))["IdentityId"])

    # a pool without an unauthenticated role cannot give a guest credentials (as in AWS)
    roleless = new_identity(cog, new_pool(cog, role=None))
    code, status, msg = api_error(cog.get_credentials_for_identity, IdentityId=roleless)
    assert code == "InvalidIdentityPoolConfigurationException" and status == 400, (code, status, msg)
    assert "IAM roles" in msg, msg
    # roles name IAM role ARNs of roles the broker knows
    pool = new_pool(cog, role=None)
    not_a_role = f"arn:aws:iam::{ARN.split(':')[4]}:user/alice"
    for roles in ({"unauthenticated": not_a_role}, {"unauthenticated": role_arn("no-such-role")},
                  {"guests": role_arn("allow-mqtt")}):
        code, status, msg = api_error(cog.set_identity_pool_roles, IdentityPoolId=pool, Roles=roles)
        assert code == "InvalidParameterException" and status == 400, (roles, code, status, msg)
    assert cog.get_identity_pool_roles(IdentityPoolId=pool)["Roles"] == {}


@pytest.mark.parametrize("case", ["unsigned", "wrong-secret", "unknown-key"])
@pytest.mark.parametrize("op", ["create_identity_pool", "list_identity_pools"])
def test_admin_operations_need_the_admin_signature(broker, case, op):
    b = cp_broker(broker)
    if case == "unsigned":
        cog = cognito(b, unsigned=True)
    elif case == "wrong-secret":
        cog = cognito(b, secret=ADMIN_SECRET + "x")
    else:
        cog = cognito(b, key="AKIANOSUCHADMINKEY01")
    kw = ({"IdentityPoolName": uid("p").replace("-", "_"), "AllowUnauthenticatedIdentities": True}
          if op == "create_identity_pool" else {"MaxResults": 10})
    code, status, msg = api_error(getattr(cog, op), **kw)
    assert status == 403, (code, status, msg)
    assert msg, f"{case}: the 403 must give the reason"
    # nothing was made; the admin's signed call works on the same broker
    assert cognito(b).list_identity_pools(MaxResults=60)["IdentityPools"] == []


def test_get_id_signed_or_unsigned(broker):
    """boto3 sends GetId unsigned (authtype none); a signed GetId (other SDKs) works too."""
    b = cog_broker(broker)
    pool = new_pool(cognito(b))
    status, body = cognito_json(b, "GetId", {"IdentityPoolId": pool})
    assert status == 200 and ID_RE.fullmatch(body.get("IdentityId", "")), (status, body)
    status, body2 = cognito_json(b, "GetId", {"IdentityPoolId": pool}, sign=(ADMIN_KEY, ADMIN_SECRET))
    assert status == 200 and ID_RE.fullmatch(body2.get("IdentityId", "")), (status, body2)
    status, creds = cognito_json(b, "GetCredentialsForIdentity", {"IdentityId": body["IdentityId"]})
    assert status == 200 and creds.get("IdentityId") == body["IdentityId"], (status, creds)
    exp = creds.get("Credentials", {}).get("Expiration")
    assert isinstance(exp, (int, float)), f"on the wire Expiration is epoch seconds (a number): {creds}"
    status, err = cognito_json(b, "GetId", {"IdentityPoolId": f"us-east-1:{uuid.uuid4()}"})
    assert status >= 400 and "ResourceNotFoundException" in str(err.get("__type", "")), (status, err)


# ============================================================================================
# 4. describe / list pools; GetOpenIdToken
# ============================================================================================

def test_describe_list_pools_and_open_id_token(broker):
    b = cog_broker(broker, extra_toml=SHORT_POOL_TOML)
    cog = cognito(b)
    a = new_pool(cog)
    closed = new_pool(cog, allow_unauthenticated=False)
    short = pool_id_by_name(cog, "short")
    assert len({a, closed, short}) == 3, (a, closed, short)

    d = cog.describe_identity_pool(IdentityPoolId=a)
    assert d["IdentityPoolId"] == a and d["AllowUnauthenticatedIdentities"] is True, d
    d2 = cog.describe_identity_pool(IdentityPoolId=closed)
    assert d2["IdentityPoolId"] == closed and d2["AllowUnauthenticatedIdentities"] is False, d2
    assert d2["IdentityPoolName"] != d["IdentityPoolName"], (d, d2)

    pools = {p["IdentityPoolId"]: p["IdentityPoolName"]
             for p in cog.list_identity_pools(MaxResults=60)["IdentityPools"]}
    assert pools == {a: d["IdentityPoolName"], closed: d2["IdentityPoolName"], short: "short"}, pools

    identity = new_identity(cog, a)
    t = cog.get_open_id_token(IdentityId=identity)
    assert t.get("IdentityId") == identity, t
    assert isinstance(t.get("Token"), str) and t["Token"], f"Token must be a non-empty string: {t}"
    parts = t["Token"].split(".")
    if len(parts) == 3:  # a JWT (as AWS's): its subject is the identity
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        assert claims.get("sub") == identity, claims

    # MaxResults bounds a page; NextToken continues (as AWS ListIdentityPools)
    seen, kw = [], {}
    for _ in range(5):
        page = cog.list_identity_pools(MaxResults=1, **kw)
        assert len(page["IdentityPools"]) <= 1, f"MaxResults=1 returned {len(page['IdentityPools'])} pools: {page}"
        seen += [p["IdentityPoolId"] for p in page["IdentityPools"]]
        if not page.get("NextToken"):
            break
        kw = {"NextToken": page["NextToken"]}
    assert sorted(seen) == sorted(pools), f"paging with MaxResults=1 / NextToken: {seen}"


# ============================================================================================
# 5. `pubsub cognito …` against the API
# ============================================================================================

def cognito_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION})  # no credentials: unsigned calls
    return subprocess.run([BIN, "cognito", *args], capture_output=True, text=True, timeout=20,
                          stdin=subprocess.DEVNULL, cwd=cwd, env=env)


def test_cli_get_id_and_credentials(broker, crt, tmp_path):
    b = cog_broker(broker)
    cog = cognito(b)
    pool = new_pool(cog)
    url = endpoint(b)
    work = tmp_path / "cli"
    work.mkdir()

    r = cognito_cli(["get-id", "--identity-pool-id", pool, "--endpoint-url", url], work)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    out = json.loads(r.stdout)
    identity = out.get("IdentityId", "")
    assert ID_RE.fullmatch(identity), out

    r = cognito_cli(["get-credentials-for-identity", "--identity-id", identity, "--endpoint-url", url], work)
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    out = json.loads(r.stdout)
    assert out.get("IdentityId") == identity, out
    c = out.get("Credentials", {})
    for k in ("AccessKeyId", "SecretKey", "SessionToken", "Expiration"):
        assert c.get(k), f"Credentials.{k} missing: {out}"

    # the CLI's credentials connect (the pool's unauthenticated role allows it)
    cid = uid("cog-cli")
    conn = crt_conn(b, c["AccessKeyId"], c["SecretKey"], c["SessionToken"], cid)
    crt.append(conn)
    conn.connect().result(T)
    crt_round_trip(conn, f"cog/{uid('t')}")
    assert identity in b.wait_log(cid, ["client connected"])

    # an API error: non-zero, naming it
    r = cognito_cli(["get-id", "--identity-pool-id", f"us-east-1:{uuid.uuid4()}", "--endpoint-url", url], work)
    assert r.returncode != 0, r
    assert "ResourceNotFoundException" in r.stderr or "not found" in r.stderr.lower(), r.stderr
    assert not (work / ".pubsub").exists(), "with --endpoint-url the CLI must not open a data dir"
