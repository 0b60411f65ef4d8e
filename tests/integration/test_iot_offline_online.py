"""`pubsub iot` has one control-plane implementation: the same commands, run once on a data
directory with no broker running (answered by `broker::control::answer_local`) and once
against a running broker's `http` control plane (signed API calls), print the same answers —
up to what is unique to each run (certificate ids, PEMs, keys, dates), which is replaced by
placeholders before comparing command by command.

Also the drift this replaced: offline `attach-policy` refused a policy made by
`create-policy` (it only knew the config's policies)."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import BIN, render_config
from helpers import uid

ADMIN_TOML = '\n[admin]\naccess_key_id = "AKIAOFFON"\nsecret_access_key = "offonsecret"\n'
OVERRIDES = {"listeners": {"http": "127.0.0.1:0"}, "extra_toml": ADMIN_TOML}
IDENTITY = "us-east-1:0b6f4c2e-4d3a-4a7e-9d56-3f2b1c0a9e88"
AUTHORIZER_URL = "http://127.0.0.1:9/authorize"
TIMEOUT = 30


def iot(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    if not os.path.exists(BIN):
        pytest.fail(f"pubsub binary not found: {BIN} (build it, or set PUBSUB_BIN)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return subprocess.run([BIN, "iot", *args], capture_output=True, text=True, timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL, cwd=cwd, env=env)


def ok(r: subprocess.CompletedProcess, what: str) -> str:
    assert r.returncode == 0, f"`pubsub iot {what}`: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def policy_document(arn_prefix: str) -> str:
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect",
             "Resource": f"{arn_prefix}:client/${{iot:ClientId}}"},
            {"Effect": "Allow", "Action": "iot:Publish",
             "Resource": f"{arn_prefix}:topic/allowed/*"},
        ],
    })


def normalize(text: str, data_dir: Path, workdir: Path) -> str:
    """What differs between two runs of the same commands, as placeholders."""
    text = text.replace(str(data_dir), "<DATA_DIR>").replace(str(workdir), "<WORKDIR>")
    text = re.sub(r"-----BEGIN ([A-Z ]+)-----.*?-----END \1-----(\\n)?", r"<PEM \1>", text)
    text = re.sub(r"\b[0-9a-f]{64}\b", "<CERT_ID>", text)
    text = re.sub(r'("(?:creationDate|lastModifiedDate)":\s*)[^,\n}]+', r"\1<DATE>", text)
    text = re.sub(r'("SecretAccessKey":\s*)"[^"]*"', r'\1"<SECRET>"', text)
    text = re.sub(r"\bAKIA[A-Z0-9]{8,}\b", "<ACCESS_KEY_ID>", text)
    return text


def error_line(stderr: str) -> str:
    """The CLI's one-line failure reason (stderr also carries log lines)."""
    return "\n".join(l for l in stderr.splitlines() if l.startswith("pubsub:"))


def run_sequence(location: list[str], workdir: Path, data_dir: Path) -> list[tuple[str, int, str, str]]:
    """The command sequence; per command (name, exit code, normalized stdout, error line)."""
    results: list[tuple[str, int, str, str]] = []
    state: dict = {}

    def step(name: str, *args: str, expect_ok: bool = True) -> str:
        r = iot([name, *location, *args], workdir)
        if expect_ok:
            ok(r, f"{name} {' '.join(args)}")
        else:
            assert r.returncode != 0, f"`pubsub iot {name}` should fail: {r.stdout}"
        results.append((name, r.returncode, normalize(r.stdout, data_dir, workdir),
                        normalize(error_line(r.stderr), data_dir, workdir)))
        return r.stdout

    # the policy, made through the control plane (the ARN prefix from its own answer)
    made = json.loads(step("create-policy", "--policy-name", "offon_policy",
                           "--policy-document", policy_document("arn:aws:iot:us-east-1:123456789012")))
    prefix = made["policyArn"].rsplit(":policy/", 1)[0]
    assert json.loads(made["policyDocument"]) == json.loads(policy_document(prefix)), made
    got = json.loads(step("get-policy", "--policy-name", "offon_policy"))
    assert got["policyName"] == "offon_policy", got
    names = [p["policyName"] for p in json.loads(step("list-policies"))["policies"]]
    assert "offon_policy" in names and "dev-allow-all" in names, names

    # a certificate, its outfiles written from the answer
    pem_file, key_file = workdir / "device.pem", workdir / "device.key"
    cert = json.loads(step("create-keys-and-certificate", "--set-as-active",
                           "--certificate-pem-outfile", str(pem_file),
                           "--private-key-outfile", str(key_file)))
    state["id"], state["arn"] = cert["certificateId"], cert["certificateArn"]
    assert pem_file.read_text() == cert["certificatePem"], "certificate outfile"
    assert key_file.read_text() == cert["keyPair"]["PrivateKey"], "private key outfile"
    described = json.loads(step("describe-certificate", "--certificate-id", state["id"]))
    assert described["certificateDescription"]["status"] == "ACTIVE", described
    listed = json.loads(step("list-certificates"))["certificates"]
    assert [c["certificateId"] for c in listed] == [state["id"]], listed

    # attachments (the API-made policy, to the certificate ARN; and to an identity id)
    assert step("attach-policy", "--policy-name", "offon_policy", "--target", state["arn"]) == ""
    attached = json.loads(step("list-attached-policies", "--target", state["arn"]))["policies"]
    assert [p["policyName"] for p in attached] == ["offon_policy"], attached
    assert step("attach-principal-policy", "--policy-name", "offon_policy",
                "--principal", IDENTITY) == ""
    targets = json.loads(step("list-targets-for-policy", "--policy-name", "offon_policy"))["targets"]
    assert sorted(targets) == sorted([state["arn"], IDENTITY]), targets

    # test-authorization, both forms
    allowed, denied = f"{prefix}:topic/allowed/x", f"{prefix}:topic/other"
    aws_form = json.loads(step("test-authorization", "--principal", state["arn"], "--auth-infos",
                               f"actionType=PUBLISH,resources={allowed}",
                               f"actionType=iot:Publish,resources={denied}"))
    decisions = [r["authDecision"] for r in aws_form["authResults"]]
    assert decisions == ["ALLOWED", "IMPLICIT_DENY"], aws_form
    short = json.loads(step("test-authorization", "--principal", state["id"], "--action",
                            "iot:Connect", "--resource", f"{prefix}:client/dev-1",
                            "--client-id", "dev-1"))
    assert [r["authDecision"] for r in short["authResults"]] == ["ALLOWED"], short
    added = json.loads(step("test-authorization", "--principal", state["arn"], "--action",
                            "iot:Publish", "--resource", denied,
                            "--policy-names-to-add", "dev-allow-all"))
    assert [r["authDecision"] for r in added["authResults"]] == ["ALLOWED"], added

    # certificate status
    assert step("update-certificate", "--certificate-id", state["id"],
                "--new-status", "INACTIVE") == ""
    described = json.loads(step("describe-certificate", "--certificate-id", state["id"]))
    assert described["certificateDescription"]["status"] == "INACTIVE", described

    # custom authorizers
    created = json.loads(step("create-authorizer", "--authorizer-name", "offon-authorizer",
                              "--authorizer-function-arn", AUTHORIZER_URL,
                              "--token-key-name", "x-token", "--signing-disabled"))
    assert created["authorizerName"] == "offon-authorizer", created
    d = json.loads(step("describe-authorizer", "--authorizer-name", "offon-authorizer"))
    assert d["authorizerDescription"]["authorizerFunctionArn"] == AUTHORIZER_URL, d
    step("list-authorizers")

    # access keys and the endpoint
    key = json.loads(step("create-access-key", "--principal", IDENTITY))["AccessKey"]
    assert key["Principal"] == IDENTITY and key["Status"] == "Active", key
    assert key["AccessKeyId"].startswith("AKIA") and key["SecretAccessKey"], key
    assert json.loads(step("describe-endpoint", "--endpoint-type", "iot:Data-ATS"))["endpointAddress"]

    # tearing down
    assert step("detach-policy", "--policy-name", "offon_policy", "--target", state["arn"]) == ""
    assert step("detach-principal-policy", "--policy-name", "offon_policy",
                "--principal", IDENTITY) == ""
    attached = json.loads(step("list-attached-policies", "--target", state["arn"]))["policies"]
    assert attached == [], attached
    assert step("delete-certificate", "--certificate-id", state["id"]) == ""
    again = json.loads(step("register-certificate", "--certificate-pem", f"file://{pem_file}"))
    assert again["certificateId"] == state["id"], again
    assert step("delete-policy", "--policy-name", "offon_policy") == ""
    step("get-policy", "--policy-name", "offon_policy", expect_ok=False)
    step("attach-policy", "--policy-name", "no_such_policy", "--target", state["arn"],
         expect_ok=False)
    return results


def test_offline_and_online_answers_are_the_same(broker, tmp_path):
    # offline: a config like the broker's (with its http listener), no broker running
    offline = tmp_path / "offline"
    offline.mkdir()
    offline_data = offline / "data"
    offline_config = offline / "pubsub.toml"
    offline_config.write_text(render_config(offline_data, OVERRIDES))
    off = run_sequence(["--config", str(offline_config)], offline, offline_data)
    assert not (offline_data / "listeners.json").exists()

    # online: a running broker; the CLI finds its control plane through listeners.json
    b = broker(**OVERRIDES)
    assert b.http_port, "the http listener is enabled"
    on = run_sequence(["--config", str(b.config_path)], b.workdir, b.data_dir)
    b.assert_running()
    for path in ("/policies/offon_policy", "/keys-and-certificate", "/target-policies/offon_policy",
                 "/test-authorization", "/access-keys", "/authorizer/offon-authorizer",
                 "/endpoint"):
        assert b.log_lines_with("control plane request", path), \
            f"the online run did not call the API for {path}"

    assert [r[0] for r in off] == [r[0] for r in on]
    for i, (o, n) in enumerate(zip(off, on)):
        assert o == n, (f"command {i} `{o[0]}` differs offline vs online:\n"
                        f"--- offline (exit {o[1]})\n{o[2]}{o[3]}\n"
                        f"--- online (exit {n[1]})\n{n[2]}{n[3]}")


def test_offline_attach_of_an_api_made_policy_then_allowed(tmp_path):
    """The old drift: offline attach-policy only knew the config's policies."""
    data = tmp_path / "data"
    loc = ["--data-dir", str(data)]
    name = uid("drift").replace("-", "_")
    made = json.loads(ok(iot(["create-policy", *loc, "--policy-name", name, "--policy-document",
                              policy_document("arn:aws:iot:us-east-1:123456789012")], tmp_path),
                         "create-policy"))
    prefix = made["policyArn"].rsplit(":policy/", 1)[0]
    cert = json.loads(ok(iot(["create-keys-and-certificate", *loc, "--set-as-active"], tmp_path),
                         "create-keys-and-certificate"))
    r = iot(["attach-policy", *loc, "--policy-name", name, "--target", cert["certificateArn"]],
            tmp_path)
    assert r.returncode == 0, f"offline attach-policy of a create-policy policy: {r.stderr}"
    answer = json.loads(ok(iot(["test-authorization", *loc, "--principal", cert["certificateArn"],
                                "--action", "iot:Publish",
                                "--resource", f"{prefix}:topic/allowed/1"], tmp_path),
                           "test-authorization"))
    results = answer["authResults"]
    assert [x["authDecision"] for x in results] == ["ALLOWED"], answer
    denied = json.loads(ok(iot(["test-authorization", *loc, "--principal", cert["certificateArn"],
                                "--auth-infos", f"actionType=PUBLISH,resources={prefix}:topic/no"],
                               tmp_path), "test-authorization"))
    assert [x["authDecision"] for x in denied["authResults"]] == ["IMPLICIT_DENY"], denied
