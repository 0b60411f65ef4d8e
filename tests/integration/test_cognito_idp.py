"""Cognito user pools (`cognito-idp`) on the control-plane listeners: AWS's JSON 1.1 protocol,
driven by boto3 exactly as against AWS (only `endpoint_url` changes). Pools and clients are
made with the `[admin]` SigV4 credentials or declared in the config (`[[user_pools]]`); an
app's calls (SignUp, ConfirmSignUp, InitiateAuth, RespondToAuthChallenge, GetUser,
GlobalSignOut) are unsigned, as in AWS. An SRP sign-in is made by pycognito's `AWSSRP` (an
independent implementation of Cognito's SRP); tokens are checked by PyJWT against the JWKS
the broker serves at `/<userPoolId>/.well-known/jwks.json`. Refusals carry Cognito's
exception names and messages. The `pubsub cognito-idp …` CLI is checked against the same API,
and offline.

Every wait is bounded (≤ 10 s); every broker is per test."""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import BIN
from helpers import uid
from test_control_plane import ADMIN_KEY, ADMIN_SECRET, BOTO_CONFIG, REGION, api_error, boto, cp_broker, endpoint

import boto3  # noqa: E402
import botocore  # noqa: E402
from botocore.config import Config  # noqa: E402

jwt = pytest.importorskip("jwt", reason="PyJWT is in tests/integration/requirements.txt")
aws_srp = pytest.importorskip("pycognito.aws_srp", reason="pycognito is in tests/integration/requirements.txt")

POOL_ID_RE = re.compile(r"us-east-1_[A-Za-z0-9]{9}")
CLIENT_ID_RE = re.compile(r"[a-z0-9]{26}")
PASSWORD = "Corr3ct!horse"
FLOWS = ["ALLOW_USER_SRP_AUTH", "ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]
FIXED_CLIENT = "appclient0000000000000000a"
CONFIG_POOL_TOML = f'''
[[user_pools]]
name = "config-users"
confirmation_code = "424242"

[[user_pools.clients]]
name = "app"
client_id = "{FIXED_CLIENT}"
explicit_auth_flows = {json.dumps(FLOWS)}
access_token_validity = "2s"
id_token_validity = "2s"
refresh_token_validity = "3s"

[[user_pools.users]]
username = "carol"
password = "{PASSWORD}"
attributes = {{ email = "carol@example.com" }}
'''


# -- helpers -----------------------------------------------------------------------------------

def idp(b):
    """The admin's (signed) cognito-idp client."""
    return boto(b, "cognito-idp")


def app(b, url: str | None = None, verify=None):
    """An app's client: unsigned, as an app calls SignUp, InitiateAuth, …"""
    return boto3.client("cognito-idp", endpoint_url=url or endpoint(b), region_name=REGION,
                        verify=verify,
                        config=Config(signature_version=botocore.UNSIGNED, **BOTO_CONFIG))


def new_pool(admin, **kw) -> str:
    name = uid("users")
    r = admin.create_user_pool(PoolName=name, **kw)["UserPool"]
    assert POOL_ID_RE.fullmatch(r["Id"]), f"pool id must be <region>_<9 alphanumerics>: {r}"
    assert r["Name"] == name and r["Arn"].endswith(f":userpool/{r['Id']}"), r
    return r["Id"]


def new_client(admin, pool_id: str, **kw) -> str:
    kw.setdefault("ExplicitAuthFlows", FLOWS)
    r = admin.create_user_pool_client(UserPoolId=pool_id, ClientName="app", **kw)["UserPoolClient"]
    assert CLIENT_ID_RE.fullmatch(r["ClientId"]), r
    assert r["UserPoolId"] == pool_id, r
    return r["ClientId"]


def password_sign_in(client, client_id: str, username: str, password: str = PASSWORD) -> dict:
    r = client.initiate_auth(AuthFlow="USER_PASSWORD_AUTH", ClientId=client_id,
                             AuthParameters={"USERNAME": username, "PASSWORD": password})
    result = r["AuthenticationResult"]
    assert result["TokenType"] == "Bearer" and result["ExpiresIn"] > 0, r
    for k in ("AccessToken", "IdToken", "RefreshToken"):
        assert isinstance(result.get(k), str) and result[k], f"{k} missing: {r}"
    return result


def issuer(pool_id: str) -> str:
    return f"https://cognito-idp.{REGION}.amazonaws.com/{pool_id}"


def jwks(b, pool_id: str) -> dict:
    with urllib.request.urlopen(f"{endpoint(b)}/{pool_id}/.well-known/jwks.json", timeout=5) as r:
        assert r.status == 200
        return json.loads(r.read())


def verified(b, pool_id: str, token: str, **kw) -> dict:
    """The claims of a token PyJWT verified against the pool's JWKS (signature, exp, iss)."""
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256", header
    keys = {k["kid"]: k for k in jwks(b, pool_id)["keys"]}
    assert header["kid"] in keys, f"kid {header['kid']} not in the JWKS {list(keys)}"
    key = jwt.PyJWK(keys[header["kid"]]).key
    return jwt.decode(token, key, algorithms=["RS256"], issuer=issuer(pool_id), **kw)


def check_tokens(b, pool_id: str, client_id: str, username: str, result: dict) -> tuple[dict, dict]:
    id_claims = verified(b, pool_id, result["IdToken"], audience=client_id)
    assert id_claims["token_use"] == "id" and id_claims["cognito:username"] == username, id_claims
    access = verified(b, pool_id, result["AccessToken"], options={"verify_aud": False})
    assert access["token_use"] == "access" and access["client_id"] == client_id, access
    assert access["username"] == username and access["sub"] == id_claims["sub"], access
    assert access["origin_jti"] == id_claims["origin_jti"], (access, id_claims)
    return id_claims, access


def refused(fn, kind: str, message: str, **kw) -> None:
    code, status, text = api_error(fn, **kw)
    assert (code, status, text) == (kind, 400, message), (code, status, text)


def cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return subprocess.run([BIN, "cognito-idp", *args], capture_output=True, text=True, timeout=20,
                          stdin=subprocess.DEVNULL, cwd=cwd, env=env)


def cli_json(args: list[str], cwd: Path) -> dict:
    r = cli(args, cwd)
    assert r.returncode == 0, f"pubsub cognito-idp {args[0]} failed: {r.stderr}"
    return json.loads(r.stdout) if r.stdout.strip() else {}


# -- tests -------------------------------------------------------------------------------------

def test_sign_up_confirm_sign_in_refresh_get_user_and_global_sign_out(broker):
    b = cp_broker(broker)
    admin, user = idp(b), app(b)
    pool_id = new_pool(admin)
    client_id = new_client(admin, pool_id)
    name = uid("dana")
    r = user.sign_up(ClientId=client_id, Username=name, Password=PASSWORD,
                     UserAttributes=[{"Name": "email", "Value": "dana@example.com"}])
    assert r["UserConfirmed"] is False and r["UserSub"], r
    assert r["CodeDeliveryDetails"]["DeliveryMedium"] == "EMAIL", r
    refused(user.sign_up, "UsernameExistsException", "User already exists",
            ClientId=client_id, Username=name, Password=PASSWORD)
    refused(user.sign_up, "InvalidPasswordException",
            "Password did not conform with policy: Password not long enough",
            ClientId=client_id, Username=uid("eve"), Password="Sh0rt!")
    for password in (PASSWORD, "Wr0ng!password"):
        refused(user.initiate_auth, "UserNotConfirmedException", "User is not confirmed.",
                AuthFlow="USER_PASSWORD_AUTH", ClientId=client_id,
                AuthParameters={"USERNAME": name, "PASSWORD": password})
    refused(user.confirm_sign_up, "CodeMismatchException",
            "Invalid verification code provided, please try again.",
            ClientId=client_id, Username=name, ConfirmationCode="000000")
    user.confirm_sign_up(ClientId=client_id, Username=name, ConfirmationCode="123456")
    refused(user.confirm_sign_up, "NotAuthorizedException",
            "User cannot be confirmed. Current status is CONFIRMED",
            ClientId=client_id, Username=name, ConfirmationCode="123456")

    result = password_sign_in(user, client_id, name)
    id_claims, _ = check_tokens(b, pool_id, client_id, name, result)
    assert id_claims["email"] == "dana@example.com" and id_claims["sub"] == r["UserSub"], id_claims
    refused(user.initiate_auth, "NotAuthorizedException", "Incorrect username or password.",
            AuthFlow="USER_PASSWORD_AUTH", ClientId=client_id,
            AuthParameters={"USERNAME": name, "PASSWORD": "Wr0ng!password"})
    refused(user.initiate_auth, "UserNotFoundException", "User does not exist.",
            AuthFlow="USER_PASSWORD_AUTH", ClientId=client_id,
            AuthParameters={"USERNAME": uid("nobody"), "PASSWORD": PASSWORD})

    me = user.get_user(AccessToken=result["AccessToken"])
    attrs = {a["Name"]: a["Value"] for a in me["UserAttributes"]}
    assert me["Username"] == name and attrs["sub"] == r["UserSub"], me
    assert attrs["email"] == "dana@example.com" and attrs["email_verified"] == "true", me

    again = user.initiate_auth(AuthFlow="REFRESH_TOKEN_AUTH", ClientId=client_id,
                               AuthParameters={"REFRESH_TOKEN": result["RefreshToken"]})
    refreshed = again["AuthenticationResult"]
    assert "RefreshToken" not in refreshed, "a refresh does not rotate the refresh token"
    _, access = check_tokens(b, pool_id, client_id, name, refreshed)
    assert access["origin_jti"] == id_claims["origin_jti"], "a refresh stays in its sign-in"
    refused(user.initiate_auth, "NotAuthorizedException", "Invalid Refresh Token",
            AuthFlow="REFRESH_TOKEN_AUTH", ClientId=client_id,
            AuthParameters={"REFRESH_TOKEN": result["RefreshToken"][:-4] + "AAAA"})

    user.global_sign_out(AccessToken=refreshed["AccessToken"])
    for token in (result["AccessToken"], refreshed["AccessToken"]):
        refused(user.get_user, "NotAuthorizedException", "Access Token has been revoked",
                AccessToken=token)
    refused(user.initiate_auth, "NotAuthorizedException", "Refresh Token has been revoked",
            AuthFlow="REFRESH_TOKEN_AUTH", ClientId=client_id,
            AuthParameters={"REFRESH_TOKEN": result["RefreshToken"]})
    later = password_sign_in(user, client_id, name)
    assert user.get_user(AccessToken=later["AccessToken"])["Username"] == name
    assert "cognito-idp request refused" in b.log() and "Access Token has been revoked" in b.log()


def test_admin_operations_and_new_password_required(broker):
    b = cp_broker(broker)
    admin, user = idp(b), app(b)
    pool_id = new_pool(admin, Policies={"PasswordPolicy": {"MinimumLength": 10, "RequireSymbols": False}})
    described = admin.describe_user_pool(UserPoolId=pool_id)["UserPool"]
    assert described["Policies"]["PasswordPolicy"]["MinimumLength"] == 10, described
    assert pool_id in [p["Id"] for p in admin.list_user_pools(MaxResults=60)["UserPools"]]
    refused(admin.describe_user_pool, "ResourceNotFoundException",
            "User pool us-east-1_Nope00000 does not exist.", UserPoolId="us-east-1_Nope00000")
    client_id = new_client(admin, pool_id)
    refused(user.initiate_auth, "ResourceNotFoundException",
            "User pool client nosuchclient does not exist.", AuthFlow="USER_PASSWORD_AUTH",
            ClientId="nosuchclient", AuthParameters={"USERNAME": "x", "PASSWORD": "y"})
    srp_only = new_client(admin, pool_id, ExplicitAuthFlows=["ALLOW_USER_SRP_AUTH"])
    refused(user.initiate_auth, "InvalidParameterException",
            "USER_PASSWORD_AUTH flow not enabled for this client", AuthFlow="USER_PASSWORD_AUTH",
            ClientId=srp_only, AuthParameters={"USERNAME": "x", "PASSWORD": "y"})

    name = uid("frank")
    made = admin.admin_create_user(UserPoolId=pool_id, Username=name, TemporaryPassword="Temp0rary1x",
                                   UserAttributes=[{"Name": "email", "Value": "f@example.com"}],
                                   MessageAction="SUPPRESS")["User"]
    assert made["UserStatus"] == "FORCE_CHANGE_PASSWORD" and made["Enabled"] is True, made
    refused(admin.admin_create_user, "UsernameExistsException", "User account already exists",
            UserPoolId=pool_id, Username=name, TemporaryPassword="Temp0rary1x")
    r = user.initiate_auth(AuthFlow="USER_PASSWORD_AUTH", ClientId=client_id,
                           AuthParameters={"USERNAME": name, "PASSWORD": "Temp0rary1x"})
    assert r["ChallengeName"] == "NEW_PASSWORD_REQUIRED" and r["Session"], r
    refused(user.respond_to_auth_challenge, "InvalidPasswordException",
            "Password did not conform with policy: Password not long enough",
            ClientId=client_id, ChallengeName="NEW_PASSWORD_REQUIRED", Session=r["Session"],
            ChallengeResponses={"USERNAME": name, "NEW_PASSWORD": "Short1x"})
    r = user.initiate_auth(AuthFlow="USER_PASSWORD_AUTH", ClientId=client_id,
                           AuthParameters={"USERNAME": name, "PASSWORD": "Temp0rary1x"})
    done = user.respond_to_auth_challenge(
        ClientId=client_id, ChallengeName="NEW_PASSWORD_REQUIRED", Session=r["Session"],
        ChallengeResponses={"USERNAME": name, "NEW_PASSWORD": "Chosen0password"})
    check_tokens(b, pool_id, client_id, name, done["AuthenticationResult"])
    got = admin.admin_get_user(UserPoolId=pool_id, Username=name)
    assert got["UserStatus"] == "CONFIRMED", got
    password_sign_in(user, client_id, name, "Chosen0password")

    admin.admin_set_user_password(UserPoolId=pool_id, Username=name, Password="Another0password",
                                  Permanent=True)
    password_sign_in(user, client_id, name, "Another0password")
    admin.admin_set_user_password(UserPoolId=pool_id, Username=name, Password="Temporary0again",
                                  Permanent=False)
    assert admin.admin_get_user(UserPoolId=pool_id, Username=name)["UserStatus"] == "FORCE_CHANGE_PASSWORD"
    refused(admin.admin_get_user, "UserNotFoundException", "User does not exist.",
            UserPoolId=pool_id, Username=uid("ghost"))

    signed_up = uid("gina")
    user.sign_up(ClientId=client_id, Username=signed_up, Password="Signed0up-pw")
    admin.admin_confirm_sign_up(UserPoolId=pool_id, Username=signed_up)
    assert admin.admin_get_user(UserPoolId=pool_id, Username=signed_up)["UserStatus"] == "CONFIRMED"

    # The Admin operations need the admin's signature: unsigned or signed by another key,
    # refused.
    for client in (user, boto(b, "cognito-idp", key="AKIANOTADMIN0000", secret="nope")):
        code, status, _ = api_error(client.admin_get_user, UserPoolId=pool_id, Username=signed_up)
        assert (code, status) == ("NotAuthorizedException", 403), (code, status)


def test_srp_sign_in_by_pycognito(broker):
    b = cp_broker(broker)
    admin, user = idp(b), app(b)
    pool_id = new_pool(admin)
    client_id = new_client(admin, pool_id)
    name = uid("hana")
    user.sign_up(ClientId=client_id, Username=name, Password=PASSWORD)
    admin.admin_confirm_sign_up(UserPoolId=pool_id, Username=name)
    srp = aws_srp.AWSSRP(username=name, password=PASSWORD, pool_id=pool_id, client_id=client_id,
                         client=user)
    result = srp.authenticate_user()["AuthenticationResult"]
    check_tokens(b, pool_id, client_id, name, result)
    wrong = aws_srp.AWSSRP(username=name, password="Wr0ng!password", pool_id=pool_id,
                           client_id=client_id, client=user)
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        wrong.authenticate_user()
    error = ei.value.response["Error"]
    assert (error["Code"], error["Message"]) == ("NotAuthorizedException", "Incorrect username or password.")

    # A user made by the admin sets a new password through pycognito's SRP flow.
    temp_user = uid("ivan")
    admin.admin_create_user(UserPoolId=pool_id, Username=temp_user, TemporaryPassword="Temp0rary!1")
    fresh = aws_srp.AWSSRP(username=temp_user, password="Temp0rary!1", pool_id=pool_id,
                           client_id=client_id, client=user)
    tokens = fresh.set_new_password_challenge("Brand-new-passw0rd")["AuthenticationResult"]
    check_tokens(b, pool_id, client_id, temp_user, tokens)
    again = aws_srp.AWSSRP(username=temp_user, password="Brand-new-passw0rd", pool_id=pool_id,
                           client_id=client_id, client=user)
    assert again.authenticate_user()["AuthenticationResult"]["IdToken"]


def test_config_pool_keeps_its_ids_and_users_across_restarts_and_tokens_expire(broker):
    b = cp_broker(broker, extra_toml=CONFIG_POOL_TOML)
    admin, user = idp(b), app(b)
    pools = [p for p in admin.list_user_pools(MaxResults=60)["UserPools"] if p["Name"] == "config-users"]
    assert len(pools) == 1, pools
    pool_id = pools[0]["Id"]
    api_pool = new_pool(admin)
    api_client = new_client(admin, api_pool)
    user.sign_up(ClientId=api_client, Username="dave", Password=PASSWORD)
    admin.admin_confirm_sign_up(UserPoolId=api_pool, Username="dave")
    kids = [k["kid"] for k in jwks(b, pool_id)["keys"]]

    result = password_sign_in(user, FIXED_CLIENT, "carol")
    id_claims, _ = check_tokens(b, pool_id, FIXED_CLIENT, "carol", result)
    assert id_claims["exp"] - id_claims["iat"] == 2, id_claims
    time.sleep(3.2)
    refused(user.get_user, "NotAuthorizedException", "Access Token has expired",
            AccessToken=result["AccessToken"])
    refused(user.initiate_auth, "NotAuthorizedException", "Refresh Token has expired",
            AuthFlow="REFRESH_TOKEN_AUTH", ClientId=FIXED_CLIENT,
            AuthParameters={"REFRESH_TOKEN": result["RefreshToken"]})
    with pytest.raises(jwt.ExpiredSignatureError):
        verified(b, pool_id, result["IdToken"], audience=FIXED_CLIENT)

    user.sign_up(ClientId=FIXED_CLIENT, Username="erin", Password=PASSWORD)
    user.confirm_sign_up(ClientId=FIXED_CLIENT, Username="erin", ConfirmationCode="424242")
    b.stop()
    b.start()
    admin, user = idp(b), app(b)
    pools = [p for p in admin.list_user_pools(MaxResults=60)["UserPools"] if p["Name"] == "config-users"]
    assert [p["Id"] for p in pools] == [pool_id], f"the config pool keeps its id: {pools}"
    assert [k["kid"] for k in jwks(b, pool_id)["keys"]] == kids, "and its signing key"
    for client_id, name in ((FIXED_CLIENT, "carol"), (FIXED_CLIENT, "erin"), (api_client, "dave")):
        password_sign_in(user, client_id, name)
    assert admin.describe_user_pool(UserPoolId=api_pool)["UserPool"]["EstimatedNumberOfUsers"] == 1
    registry = (b.data_dir / "registry.json").read_text()
    assert PASSWORD not in registry, "passwords are kept only as SRP verifiers"


def test_jwks_and_api_over_https_on_the_tls_port(broker):
    b = cp_broker(broker, extra_toml=CONFIG_POOL_TOML)
    pool_id = [p["Id"] for p in idp(b).list_user_pools(MaxResults=10)["UserPools"]][0]
    context = ssl.create_default_context(cafile=str(b.ca_file))
    url = f"https://localhost:{b.tls_port}/{pool_id}/.well-known/jwks.json"
    with urllib.request.urlopen(url, context=context, timeout=5) as r:
        keys = json.loads(r.read())["keys"]
    assert keys == jwks(b, pool_id)["keys"] and keys[0]["kty"] == "RSA" and keys[0]["alg"] == "RS256"
    user = app(b, url=f"https://localhost:{b.tls_port}", verify=str(b.ca_file))
    result = password_sign_in(user, FIXED_CLIENT, "carol")
    verified(b, pool_id, result["IdToken"], audience=FIXED_CLIENT)
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(f"{endpoint(b)}/us-east-1_Nope00000/.well-known/jwks.json", timeout=5)
    assert ei.value.code == 404


def test_cli_commands_online_and_offline(broker, tmp_path):
    b = cp_broker(broker)
    work = tmp_path / "cli"
    work.mkdir()
    cfg = ["--config", str(b.config_path)]
    pool = cli_json(["create-user-pool", "--pool-name", "cli-users", *cfg], work)["UserPool"]
    pool_id = pool["Id"]
    assert POOL_ID_RE.fullmatch(pool_id), pool
    client_id = cli_json(["create-user-pool-client", "--user-pool-id", pool_id, "--client-name", "cli",
                          "--explicit-auth-flows", *FLOWS, *cfg], work)["UserPoolClient"]["ClientId"]
    listed = cli_json(["list-user-pools", "--max-results", "10", *cfg], work)["UserPools"]
    assert pool_id in [p["Id"] for p in listed], listed
    signed = cli_json(["sign-up", "--client-id", client_id, "--username", "jo", "--password", PASSWORD,
                       "--user-attributes", "Name=email,Value=jo@example.com", *cfg], work)
    assert signed["UserConfirmed"] is False, signed
    cli_json(["confirm-sign-up", "--client-id", client_id, "--username", "jo",
              "--confirmation-code", "123456", *cfg], work)
    wrong = cli(["initiate-auth", "--auth-flow", "USER_PASSWORD_AUTH", "--client-id", client_id,
                 "--auth-parameters", "USERNAME=jo,PASSWORD=Wr0ng!password", *cfg], work)
    assert wrong.returncode != 0 and "NotAuthorizedException" in wrong.stderr, wrong
    assert "Incorrect username or password." in wrong.stderr, wrong.stderr
    tokens = cli_json(["initiate-auth", "--auth-flow", "USER_PASSWORD_AUTH", "--client-id", client_id,
                       "--auth-parameters", f"USERNAME=jo,PASSWORD={PASSWORD}", *cfg],
                      work)["AuthenticationResult"]
    check_tokens(b, pool_id, client_id, "jo", tokens)
    me = cli_json(["get-user", "--access-token", tokens["AccessToken"], *cfg], work)
    assert me["Username"] == "jo", me
    refreshed = cli_json(["initiate-auth", "--auth-flow", "REFRESH_TOKEN_AUTH", "--client-id", client_id,
                          "--auth-parameters", f"REFRESH_TOKEN={tokens['RefreshToken']}", *cfg], work)
    assert refreshed["AuthenticationResult"]["AccessToken"]
    cli_json(["admin-create-user", "--user-pool-id", pool_id, "--username", "kim",
              "--temporary-password", "Temp0rary!1", *cfg], work)
    cli_json(["admin-set-user-password", "--user-pool-id", pool_id, "--username", "kim",
              "--password", "Perm4nent!pw", "--permanent", *cfg], work)
    got = cli_json(["admin-get-user", "--user-pool-id", pool_id, "--username", "kim", *cfg], work)
    assert got["UserStatus"] == "CONFIRMED", got
    cli_json(["global-sign-out", "--access-token", tokens["AccessToken"], *cfg], work)
    revoked = cli(["get-user", "--access-token", tokens["AccessToken"], *cfg], work)
    assert revoked.returncode != 0 and "Access Token has been revoked" in revoked.stderr, revoked.stderr
    assert "cognito-idp request" in b.log(), "the commands went through the running broker's API"

    # Offline, on the data directory: the same answers.
    b.stop()
    offline = cli_json(["admin-get-user", "--user-pool-id", pool_id, "--username", "jo", *cfg], work)
    assert offline["UserStatus"] == "CONFIRMED", offline
    tokens = cli_json(["initiate-auth", "--auth-flow", "USER_PASSWORD_AUTH", "--client-id", client_id,
                       "--auth-parameters", f"USERNAME=kim,PASSWORD=Perm4nent!pw", *cfg],
                      work)["AuthenticationResult"]
    assert tokens["IdToken"].count(".") == 2, tokens
    b.start()
    assert app(b).get_user(AccessToken=tokens["AccessToken"])["Username"] == "kim", \
        "a sign-in made offline is the running broker's too"
