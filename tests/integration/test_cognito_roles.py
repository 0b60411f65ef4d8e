"""IoT Core's rule for Cognito identities, and authenticated identities, driven by independent
clients: boto3 `cognito-identity` (as against AWS; only `endpoint_url` changes) and the AWS CRT
SDK's `websockets_with_default_aws_signing` on the tls port.

- A guest (unauthenticated) identity may do exactly what its pool's unauthenticated role policy
  allows; an IoT policy attached to it is not consulted.
- An authenticated identity needs both its pool's authenticated role policy and an IoT policy
  attached to its identity id: role alone refused, IoT policy alone refused, both allowed.
- Logins: developer-authenticated identities (GetOpenIdTokenForDeveloperIdentity, admin-signed,
  its RS256 token then in `Logins["cognito-identity.amazonaws.com"]`) and an OpenID Connect
  provider of `[[openid_providers]]` (tokens signed by a test key with PyJWT); the same login
  always gets the same identity id; a foreign issuer, an expired token, another audience, another
  key are refused with Cognito's NotAuthorizedException messages.
- test-authorization and the log (and the console's refusals) name the side that denied.

Every wait is bounded (≤ 10 s); every broker is per test."""

from __future__ import annotations

import base64
import json
import subprocess
import time
import urllib.request
import uuid

import pytest

from conftest import BIN
from helpers import uid
from test_control_plane import ARN, REGION, ADMIN_KEY, ADMIN_SECRET, api_error, boto, create_policy, \
    cp_broker, endpoint, scoped, ALLOW_MQTT, LogCursor

awscrt = pytest.importorskip("awscrt")
jwt = pytest.importorskip("jwt")
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402
import botocore.auth  # noqa: E402
import botocore.awsrequest  # noqa: E402
import botocore.credentials  # noqa: E402
from awscrt import mqtt as crt_mqtt  # noqa: E402

from test_cognito import (  # noqa: E402,F401 - crt: the fixture
    ID_RE, T, cognito, cognito_cli, credentials, crt, crt_conn, crt_refused, crt_round_trip,
    new_identity, new_pool, role_arn,
)

ACCOUNT = ARN.split(":")[4]
DEVELOPER = "login.pubsub.test"
ISSUER = "https://issuer.pubsub.test"
AUDIENCE = "test-client"
COGNITO_TOKEN = "cognito-identity.amazonaws.com"
# What AWS's console puts in a new pool's unauthenticated role: nothing of IoT's.
NO_IOT = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["mobileanalytics:PutEvents", "cognito-sync:*"], "Resource": "*"}]}


def toml_json(document: dict) -> str:
    return "'" + json.dumps(document) + "'"


def roles_toml() -> str:
    return (f"\n[[roles]]\nname = \"no-iot\"\npolicy = {toml_json(NO_IOT)}\n"
            f"\n[[roles]]\nname = \"guest-mqtt\"\npolicy = {toml_json(scoped('guest'))}\n")


def auth_pool_toml(name: str, extra: str = "") -> str:
    """A config pool whose authenticated role allows MQTT under `auth/` only."""
    return (f"\n[[identity_pools]]\nname = \"{name}\"\nallow_unauthenticated = false\n"
            f"authenticated_role_policy = {toml_json(scoped('auth'))}\n{extra}")


def pool_id(cog, name: str) -> str:
    found = [p["IdentityPoolId"] for p in cog.list_identity_pools(MaxResults=60)["IdentityPools"]
             if p["IdentityPoolName"] == name]
    assert len(found) == 1, found
    return found[0]


def signed(b, method: str, path: str, body: dict | None = None) -> dict:
    """A control-plane request signed with the admin key (boto3 drops the `reason` that
    test-authorization adds to AWS's answer)."""
    data = json.dumps(body).encode() if body is not None else None
    req = botocore.awsrequest.AWSRequest(method=method, url=endpoint(b) + path, data=data)
    botocore.auth.SigV4Auth(botocore.credentials.Credentials(ADMIN_KEY, ADMIN_SECRET), "iot",
                            REGION).add_auth(req)
    prepared = req.prepare()
    r = urllib.request.Request(prepared.url, data=prepared.body, method=method,
                               headers=dict(prepared.headers.items()))
    with urllib.request.urlopen(r, timeout=T) as ans:
        return json.loads(ans.read())


def why(b, identity: str, action: str, resource: str) -> dict:
    r = signed(b, "POST", "/test-authorization",
               {"principal": identity, "authInfos": [{"actionType": action, "resources": [resource]}]})
    return r["authResults"][0]


def claims_of(token: str) -> tuple[dict, dict]:
    def part(p):
        return json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
    header, payload, _ = token.split(".")
    return part(header), part(payload)


def connect_ok(b, c: dict, crt: list, prefix: str):
    conn = crt_conn(b, c["AccessKeyId"], c["SecretKey"], c["SessionToken"], uid(prefix))
    crt.append(conn)
    conn.connect().result(T)
    return conn


def publish_refused(b, c: dict, crt: list, topic: str, reason: str) -> None:
    """A QoS 1 publish outside what is allowed closes the connection, with `reason` logged."""
    cursor = LogCursor(b)
    closed = []
    cid = uid("cog-pub")
    conn = crt_conn(b, c["AccessKeyId"], c["SecretKey"], c["SessionToken"], cid,
                    on_connection_interrupted=lambda connection, error, **kw: closed.append(error))
    crt.append(conn)
    conn.connect().result(T)
    conn.publish(topic=topic, payload=b"x", qos=crt_mqtt.QoS.AT_MOST_ONCE)
    cursor.wait([cid], [reason], timeout=T)
    deadline = time.monotonic() + T
    while not closed and time.monotonic() < deadline:
        time.sleep(0.05)
    assert closed, f"a publish to {topic} must close the connection"


# ============================================================================================
# 1. A guest: its role, never its IoT policies
# ============================================================================================

def test_guest_gets_its_unauthenticated_role_not_its_attached_iot_policy(broker, crt):
    b = cp_broker(broker, extra_toml=roles_toml())
    cog, iot = cognito(b), boto(b, "iot")
    pool = new_pool(cog, role="no-iot")
    identity = new_identity(cog, pool)
    c = credentials(cog, identity)
    iot.attach_policy(policyName=create_policy(iot, ALLOW_MQTT, "guest"), target=identity)

    # only an IoT policy allows it: refused, and the log says why
    cursor = LogCursor(b)
    crt_refused(crt_conn(b, c["AccessKeyId"], c["SecretKey"], c["SessionToken"], uid("guest")),
                "a guest allowed only by an attached IoT policy")
    line = cursor.wait(["CONNECT refused", identity],
                       ["the identity pool's unauthenticated role policy does not allow iot:Connect"])
    assert "not consulted" in line, f"the reason must say the attached policy does not count: {line}"
    result = why(b, identity, "CONNECT", f"{ARN}:client/x")
    assert result["authDecision"] == "IMPLICIT_DENY", result
    assert "unauthenticated role policy does not allow" in result["reason"], result
    assert result["denied"]["implicitDeny"]["policies"] == [
        {"policyName": "no-iot", "policyArn": role_arn("no-iot")}], result
    refusals = signed(b, "GET", "/pubsub/refusals")["refusals"]
    assert any(identity == r.get("principal") and "unauthenticated role policy" in json.dumps(r)
               for r in refusals), f"the console's refusals must give the reason: {refusals[:3]}"

    # the pool's unauthenticated role allows it: the same credentials connect, within the role
    cog.set_identity_pool_roles(IdentityPoolId=pool, Roles={"unauthenticated": role_arn("guest-mqtt")})
    conn = connect_ok(b, c, crt, "guest-ok")
    crt_round_trip(conn, f"guest/{uid('t')}")
    result = why(b, identity, "PUBLISH", f"{ARN}:topic/guest/x")
    assert result["authDecision"] == "ALLOWED", result
    assert result["allowed"]["policies"] == [
        {"policyName": "guest-mqtt", "policyArn": role_arn("guest-mqtt")}], result
    # the attached IoT policy allows `other/…`; the role does not: refused
    publish_refused(b, c, crt, "other/x", "unauthenticated role policy does not allow iot:Publish")


# ============================================================================================
# 2. Developer-authenticated identities: both policies, or nothing
# ============================================================================================

def test_developer_authenticated_identity_needs_role_and_iot_policy(broker, crt, tmp_path):
    b = cp_broker(broker, extra_toml=auth_pool_toml("dev", f'developer_provider_name = "{DEVELOPER}"\n'))
    cog, iot = cognito(b), boto(b, "iot")
    pool = pool_id(cog, "dev")
    d = cog.describe_identity_pool(IdentityPoolId=pool)
    assert d.get("DeveloperProviderName") == DEVELOPER, d
    assert cog.get_identity_pool_roles(IdentityPoolId=pool)["Roles"] == {
        "authenticated": role_arn("Cognito_devAuth_Role")}

    r = cog.get_open_id_token_for_developer_identity(IdentityPoolId=pool, Logins={DEVELOPER: "alice"})
    identity, token = r["IdentityId"], r["Token"]
    assert ID_RE.fullmatch(identity), r
    header, claims = claims_of(token)
    assert header.get("alg") == "RS256" and header.get("kid"), header
    assert claims["sub"] == identity and claims["aud"] == pool, claims
    assert claims["iss"] == "https://cognito-identity.amazonaws.com", claims
    assert "authenticated" in claims["amr"], claims
    # the same user, the same identity; another user, another
    again = cog.get_open_id_token_for_developer_identity(IdentityPoolId=pool, Logins={DEVELOPER: "alice"})
    assert again["IdentityId"] == identity, again
    bob = cog.get_open_id_token_for_developer_identity(IdentityPoolId=pool, Logins={DEVELOPER: "bob"})
    assert bob["IdentityId"] != identity, bob
    # admin-only, as in AWS
    code, status, _ = api_error(cognito(b, unsigned=True).get_open_id_token_for_developer_identity,
                                IdentityPoolId=pool, Logins={DEVELOPER: "alice"})
    assert status == 403, (code, status)

    # credentials need the token; without it (or with another identity's) the Logins don't match
    code, _, msg = api_error(cog.get_credentials_for_identity, IdentityId=identity)
    assert code == "NotAuthorizedException" and "Logins don't match" in msg, (code, msg)
    code, _, msg = api_error(cog.get_credentials_for_identity, IdentityId=identity,
                             Logins={COGNITO_TOKEN: bob["Token"]})
    assert code == "NotAuthorizedException" and "Logins don't match" in msg, (code, msg)
    code, _, msg = api_error(cog.get_credentials_for_identity, IdentityId=identity,
                             Logins={COGNITO_TOKEN: token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")})
    assert code == "NotAuthorizedException" and msg.startswith("Invalid login token."), (code, msg)
    c = cog.get_credentials_for_identity(IdentityId=identity, Logins={COGNITO_TOKEN: token})["Credentials"]
    # `pubsub cognito` takes the same logins
    r = cognito_cli(["get-credentials-for-identity", "--identity-id", identity, "--logins",
                     f"{COGNITO_TOKEN}={token}", "--endpoint-url", endpoint(b)], tmp_path)
    assert r.returncode == 0 and json.loads(r.stdout)["IdentityId"] == identity, r

    # the role alone: refused, naming the IoT side
    result = why(b, identity, "CONNECT", f"{ARN}:client/x")
    assert result["authDecision"] == "IMPLICIT_DENY", result
    assert result["reason"].startswith(f"no IoT policy attached to identity {identity} allows iot:Connect"), result
    cursor = LogCursor(b)
    crt_refused(crt_conn(b, c["AccessKeyId"], c["SecretKey"], c["SessionToken"], uid("dev-role")),
                "the authenticated role alone")
    cursor.wait(["CONNECT refused", identity], [f"no IoT policy attached to identity {identity} allows"])

    # the IoT policy alone (beyond the role's `auth/…`): refused, naming the role
    iot.attach_policy(policyName=create_policy(iot, ALLOW_MQTT, "dev"), target=identity)
    result = why(b, identity, "PUBLISH", f"{ARN}:topic/other/x")
    assert result["authDecision"] == "IMPLICIT_DENY", result
    assert "authenticated role policy does not allow iot:Publish" in result["reason"], result
    publish_refused(b, c, crt, "other/x", "authenticated role policy does not allow iot:Publish")

    # both: allowed
    conn = connect_ok(b, c, crt, "dev-both")
    crt_round_trip(conn, f"auth/{uid('t')}")
    result = why(b, identity, "PUBLISH", f"{ARN}:topic/auth/x")
    assert result["authDecision"] == "ALLOWED", result
    names = [p["policyName"] for p in result["allowed"]["policies"]]
    assert "Cognito_devAuth_Role" in names and len(names) == 2, result


# ============================================================================================
# 3. An OpenID Connect provider
# ============================================================================================

def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk_of(key, kid: str) -> dict:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return {**jwk, "kid": kid, "alg": "RS256", "use": "sig"}


def id_token(key, kid: str, **claims) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "iat": now, "exp": now + 300, **claims}
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": kid})


def test_openid_provider_tokens_verified_before_credentials(broker, crt, tmp_path):
    key, stranger = rsa_key(), rsa_key()
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk_of(key, "k1")]}))
    provider = ISSUER.removeprefix("https://")
    b = cp_broker(broker, extra_toml=(
        f"\n[[openid_providers]]\nissuer = \"{ISSUER}\"\njwks_file = \"{tmp_path / 'jwks.json'}\"\n"
        f"audiences = [\"{AUDIENCE}\"]\n" + auth_pool_toml("oidc", f'openid_providers = ["{ISSUER}"]\n')))
    cog, iot = cognito(b), boto(b, "iot")
    pool = pool_id(cog, "oidc")
    arns = cog.describe_identity_pool(IdentityPoolId=pool)["OpenIdConnectProviderARNs"]
    assert arns == [f"arn:aws:iam::{ACCOUNT}:oidc-provider/{provider}"], arns

    good = id_token(key, "k1", sub="carol")
    identity = cog.get_id(IdentityPoolId=pool, Logins={provider: good})["IdentityId"]
    assert ID_RE.fullmatch(identity)
    fresh = id_token(key, "k1", sub="carol", iat=int(time.time()) - 1)
    assert cog.get_id(IdentityPoolId=pool, Logins={provider: fresh})["IdentityId"] == identity, \
        "the same user must get the same identity id"
    other = cog.get_id(IdentityPoolId=pool, Logins={provider: id_token(key, "k1", sub="dave")})
    assert other["IdentityId"] != identity

    refused = {
        "foreign issuer": (id_token(key, "k1", sub="carol", iss="https://elsewhere.test"),
                           "Invalid login token. Issuer doesn't match providerName"),
        "expired": (id_token(key, "k1", sub="carol", iat=int(time.time()) - 600,
                             exp=int(time.time()) - 60), "Invalid login token. Token expired: "),
        "another audience": (id_token(key, "k1", sub="carol", aud="someone-else"),
                             "Invalid login token. Incorrect token audience."),
        "another key": (id_token(stranger, "k1", sub="carol"), "Invalid login token."),
    }
    for what, (token, message) in refused.items():
        for call, kw in ((cog.get_id, {"IdentityPoolId": pool}),
                         (cog.get_credentials_for_identity, {"IdentityId": identity})):
            code, status, msg = api_error(call, Logins={provider: token}, **kw)
            assert (code, status) == ("NotAuthorizedException", 400), (what, code, status, msg)
            assert msg.startswith(message), (what, msg)
    code, _, msg = api_error(cog.get_id, IdentityPoolId=pool, Logins={"accounts.unknown.test": good})
    assert code == "NotAuthorizedException", (code, msg)
    code, _, msg = api_error(cog.get_id, IdentityPoolId=pool)
    assert code == "NotAuthorizedException" and "Unauthenticated access" in msg, (code, msg)

    c = cog.get_credentials_for_identity(IdentityId=identity, Logins={provider: good})["Credentials"]
    iot.attach_policy(policyName=create_policy(iot, ALLOW_MQTT, "oidc"), target=identity)
    conn = connect_ok(b, c, crt, "oidc")
    crt_round_trip(conn, f"auth/{uid('t')}")


# ============================================================================================
# 4. A user pool's signed-in user
# ============================================================================================

def test_user_pool_sign_in_gets_an_authenticated_identity(broker, crt):
    b = cp_broker(broker, extra_toml=f"\n[[roles]]\nname = \"signed-in\"\npolicy = {toml_json(scoped('auth'))}\n")
    idp, cog, iot = boto(b, "cognito-idp"), cognito(b), boto(b, "iot")
    user_pool = idp.create_user_pool(PoolName=uid("users").replace("-", "_"))["UserPool"]["Id"]
    client = idp.create_user_pool_client(UserPoolId=user_pool, ClientName="app",
                                         ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH",
                                                            "ALLOW_REFRESH_TOKEN_AUTH"])
    client_id = client["UserPoolClient"]["ClientId"]
    idp.admin_create_user(UserPoolId=user_pool, Username="erin")
    idp.admin_set_user_password(UserPoolId=user_pool, Username="erin", Password="Passw0rd!x",
                                Permanent=True)
    provider = f"cognito-idp.{REGION}.amazonaws.com/{user_pool}"
    pool = cog.create_identity_pool(
        IdentityPoolName=uid("signed").replace("-", "_"), AllowUnauthenticatedIdentities=False,
        CognitoIdentityProviders=[{"ProviderName": provider, "ClientId": client_id}])["IdentityPoolId"]
    cog.set_identity_pool_roles(IdentityPoolId=pool, Roles={"authenticated": role_arn("signed-in")})

    def sign_in() -> str:
        r = boto(b, "cognito-idp", unsigned=True).initiate_auth(
            ClientId=client_id, AuthFlow="USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": "erin", "PASSWORD": "Passw0rd!x"})
        return r["AuthenticationResult"]["IdToken"]

    token = sign_in()
    identity = cog.get_id(IdentityPoolId=pool, Logins={provider: token})["IdentityId"]
    assert cog.get_id(IdentityPoolId=pool, Logins={provider: sign_in()})["IdentityId"] == identity, \
        "the same user, signed in again, must get the same identity id"
    code, _, msg = api_error(cog.get_id, IdentityPoolId=pool,
                             Logins={provider: token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")})
    assert code == "NotAuthorizedException" and msg.startswith("Invalid login token."), (code, msg)
    c = cog.get_credentials_for_identity(IdentityId=identity, Logins={provider: token})["Credentials"]

    # the authenticated role alone: refused; with the user's IoT policy too: allowed
    crt_refused(crt_conn(b, c["AccessKeyId"], c["SecretKey"], c["SessionToken"], uid("erin")),
                "a signed-in user with no IoT policy attached")
    iot.attach_policy(policyName=create_policy(iot, ALLOW_MQTT, "erin"), target=identity)
    conn = connect_ok(b, c, crt, "erin")
    crt_round_trip(conn, f"auth/{uid('t')}")
    result = why(b, identity, "PUBLISH", f"{ARN}:topic/other/x")
    assert "authenticated role policy does not allow iot:Publish" in result["reason"], result


def test_config_identity_pool_names_a_config_user_pool(broker, crt):
    client_id = "appclient0000000000000000r"
    b = cp_broker(broker, extra_toml=(
        "\n[[user_pools]]\nname = \"app-users\"\n"
        f"[[user_pools.clients]]\nname = \"app\"\nclient_id = \"{client_id}\"\n"
        "explicit_auth_flows = [\"ALLOW_USER_PASSWORD_AUTH\", \"ALLOW_REFRESH_TOKEN_AUTH\"]\n"
        "[[user_pools.users]]\nusername = \"frank\"\npassword = \"Passw0rd!x\"\nconfirmed = true\n"
        + auth_pool_toml("signed-in", 'user_pools = [{ user_pool = "app-users", client = "app" }]\n')))
    idp, cog, iot = boto(b, "cognito-idp"), cognito(b), boto(b, "iot")
    user_pool = [p["Id"] for p in idp.list_user_pools(MaxResults=10)["UserPools"]
                 if p["Name"] == "app-users"][0]
    provider = f"cognito-idp.{REGION}.amazonaws.com/{user_pool}"
    pool = pool_id(cog, "signed-in")
    # `pubsub cognito list-identity-pools` finds the broker (and its admin key) by its config
    r = subprocess.run([BIN, "cognito", "list-identity-pools", "--config", str(b.config_path)],
                       capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r
    assert [p["IdentityPoolId"] for p in json.loads(r.stdout)["IdentityPools"]] == [pool], r.stdout
    providers = cog.describe_identity_pool(IdentityPoolId=pool)["CognitoIdentityProviders"]
    assert [(p["ProviderName"], p.get("ClientId")) for p in providers] == [(provider, client_id)], providers

    token = boto(b, "cognito-idp", unsigned=True).initiate_auth(
        ClientId=client_id, AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": "frank", "PASSWORD": "Passw0rd!x"})["AuthenticationResult"]["IdToken"]
    identity = cog.get_id(IdentityPoolId=pool, Logins={provider: token})["IdentityId"]
    c = cog.get_credentials_for_identity(IdentityId=identity, Logins={provider: token})["Credentials"]
    iot.attach_policy(policyName=create_policy(iot, ALLOW_MQTT, "frank"), target=identity)
    crt_round_trip(connect_ok(b, c, crt, "frank"), f"auth/{uid('t')}")
