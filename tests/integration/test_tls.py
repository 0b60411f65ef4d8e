"""TLS listeners (mqtts; tls with ALPN dispatch), the certificate registry (config and
`pubsub iot`), certificate principals and ${iot:Certificate.Subject.CommonName}.

Independent clients only: paho-mqtt over Python's ssl, mosquitto_pub/sub, raw MQTT over
Python's ssl (tlscerts.TlsRawClient); test certificates are made with `cryptography`."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import time
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from conftest import BIN
from helpers import uid
from mqttraw import connect_packet, publish_packet
from tlscerts import (
    ALPN_MQTT_CA, CertKey, TlsRawClient, attempt_connect, ca_toml, cert_arn, certificate_toml,
    client_context, expired_leaf, future_leaf, load_cert, make_ca, make_leaf, pem_id,
    policy_toml,
)

TLS_LISTENERS = {"mqtts": "127.0.0.1:0", "tls": "127.0.0.1:0"}
ARN = "arn:aws:iot:us-east-1:123456789012"
PORTS = ["mqtts", "tls"]

UNKNOWN_WORDS = ["unknown", "not registered", "unregistered", "not found", "no such"]
REASONS = {
    "unknown": UNKNOWN_WORDS,
    "inactive": ["inactive"],
    "revoked": ["revoked"],
    "expired": ["expired"],
    "not-yet-valid": ["not yet valid", "not valid yet", "notbefore", "not_before", "not before",
                      "future", "notvalidyet"],
    "ca-inactive": ["inactive"],
    "ca-no-auto-register": ["auto_register", "auto-register", "autoregister", "auto register",
                            *UNKNOWN_WORDS],
}


# -- helpers ---------------------------------------------------------------------------------

def tls_broker(broker, extra_toml: str = "", **kw):
    return broker(listeners=TLS_LISTENERS, extra_toml=extra_toml, **kw)


def port_of(b, which: str) -> int:
    port = b.mqtts_port if which == "mqtts" else b.tls_port
    assert port, f"listener {which} not in listeners.json: {b.listeners}"
    return port


def ctx_for(b, which: str, cert: CertKey | None = None, **kw) -> ssl.SSLContext:
    """mqtts: no ALPN; tls: ALPN x-amzn-mqtt-ca."""
    return client_context(b.ca_file, cert, alpn=[ALPN_MQTT_CA] if which == "tls" else None, **kw)


def accepted(b, which: str, cert: CertKey | None = None, client_id: str | None = None, **kw):
    o = attempt_connect(port_of(b, which), ctx_for(b, which, cert, **kw), client_id or uid("acc"))
    assert o.accepted, f"{which}: expected CONNACK 0, got {o}"
    return o


def refused(b, which: str, cert: CertKey | None = None, client_id: str | None = None, **kw):
    o = attempt_connect(port_of(b, which), ctx_for(b, which, cert, **kw), client_id or uid("ref"))
    assert o.refused, f"{which}: expected a refusal (TLS alert, close or CONNACK 5), got {o}"
    return o


def iot(b_or_dir, command: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    data_dir = getattr(b_or_dir, "data_dir", b_or_dir)
    if not os.path.exists(BIN):
        pytest.fail(f"binary not found: {BIN}")
    cmd = [BIN, "iot", command, "--data-dir", str(data_dir), *args]
    try:
        return subprocess.run(cmd, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL,
                              text=True)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`{' '.join(cmd)}` did not finish within {timeout}s")


def iot_ok(b, command: str, *args: str) -> str:
    r = iot(b, command, *args)
    assert r.returncode == 0, (f"`pubsub iot {command} {' '.join(args)}` exit {r.returncode}:\n"
                               f"stdout: {r.stdout}\nstderr: {r.stderr}")
    return r.stdout


def iot_json(b, command: str, *args: str) -> dict:
    out = iot_ok(b, command, *args)
    try:
        return json.loads(out)
    except json.JSONDecodeError:
        raise AssertionError(f"`pubsub iot {command}` printed no JSON: {out!r}") from None


def describe(b, cert_id: str) -> dict:
    d = iot_json(b, "describe-certificate", "--certificate-id", cert_id)
    assert "certificateDescription" in d, d
    return d["certificateDescription"]


def good_cert(tmp_path, name: str = "good", key_kind: str = "ec") -> CertKey:
    return make_leaf(f"{name}-{uuid.uuid4().hex[:6]}", key_kind=key_kind).write(tmp_path / "certs", name)


def mosquitto(tool: str) -> str:
    path = shutil.which(tool) or f"/usr/bin/{tool}"
    if not os.path.exists(path):
        pytest.skip(f"{tool} not installed")
    return path


def mosquitto_roundtrip(tmp_path, port: int, tls_args: list[str]) -> None:
    """mosquitto_pub → mosquitto_sub through the broker, both with `tls_args`."""
    topic = f"mq/{uid('t')}"
    payload = uid("payload")
    out_path, err_path = tmp_path / f"sub-{port}.out", tmp_path / f"sub-{port}.err"
    common = ["-h", "localhost", "-p", str(port), *tls_args]
    sub = subprocess.Popen(
        [mosquitto("mosquitto_sub"), *common, "-t", topic, "-C", "1", "-W", "10", "-q", "1",
         "-i", uid("msub")],
        stdout=open(out_path, "wb"), stderr=open(err_path, "wb"))
    pub_errors = []
    try:
        deadline = time.monotonic() + 10
        while sub.poll() is None and time.monotonic() < deadline:
            r = subprocess.run(
                [mosquitto("mosquitto_pub"), *common, "-t", topic, "-q", "1", "-m", payload,
                 "-i", uid("mpub")], capture_output=True, timeout=10)
            if r.returncode != 0:
                pub_errors.append(r.stderr.decode(errors="replace"))
                assert len(pub_errors) < 3, f"mosquitto_pub failed: {pub_errors}"
            try:
                sub.wait(0.3)
            except subprocess.TimeoutExpired:
                pass
        sub.wait(12)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()
    out, err = out_path.read_text(errors="replace"), err_path.read_text(errors="replace")
    assert sub.returncode == 0, f"mosquitto_sub exit {sub.returncode}: {err} (pub errors {pub_errors})"
    assert out.strip() == payload, f"mosquitto_sub printed {out!r}"


def wait_new_log(b, since: int, any_of: list[str], timeout: float = 5.0) -> str:
    """A log line written after offset `since` containing any of `any_of` (case-insensitive)."""
    words = [w.lower() for w in any_of]
    deadline = time.monotonic() + timeout
    while True:
        for line in b.log()[since:].splitlines():
            if any(w in line.lower() for w in words):
                return line
        if time.monotonic() > deadline:
            raise AssertionError(f"no new broker log line with any of {any_of}; new log:\n"
                                 f"{b.log()[since:][-3000:]}")
        time.sleep(0.1)


def http_status_line(b, alpn: list[str] | None, path: str) -> tuple[str, str | None]:
    """GET `path` over TLS on the tls port without a client certificate; returns the status
    line and the negotiated ALPN protocol."""
    ctx = client_context(b.ca_file, alpn=alpn)
    c = TlsRawClient(b.tls_port, ctx)
    try:
        proto = c.sock.selected_alpn_protocol()
        c.send(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        deadline = time.monotonic() + 5
        while b"\r\n" not in c.buf and not c.eof:
            try:
                c._fill(deadline)
            except TimeoutError:
                break
        data = bytes(c.buf)
        assert b"\r\n" in data, (f"no HTTP response to GET {path} (alpn {alpn}); got {data[:200]!r}, "
                                 f"tls error {c.tls_error!r}")
        return data.split(b"\r\n", 1)[0].decode(errors="replace"), proto
    finally:
        c.close()


# -- generated TLS material ------------------------------------------------------------------

def test_generated_server_certificate(broker, tmp_path):
    good = good_cert(tmp_path)
    b = tls_broker(broker, certificate_toml(good))
    tls_dir = b.data_dir / "tls"
    for f in ("ca.pem", "server.pem", "server.key"):
        assert (tls_dir / f).is_file(), f"{tls_dir / f} not generated"
    ca = load_cert(b.ca_file)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca, "ca.pem is no CA"
    server = load_cert(tls_dir / "server.pem")
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    import ipaddress
    assert "localhost" in san.get_values_for_type(x509.DNSName), san
    ips = san.get_values_for_type(x509.IPAddress)
    assert ipaddress.ip_address("127.0.0.1") in ips, san
    assert ipaddress.ip_address("::1") in ips, san
    # the chain verifies against ca.pem for the names localhost and 127.0.0.1 (ssl checks it)
    keep = []
    o = attempt_connect(b.mqtts_port, ctx_for(b, "mqtts", good), uid("sni"), keep=keep)
    assert o.accepted, str(o)
    peer = keep[0].sock.getpeercert(binary_form=True)
    keep[0].close()
    assert peer == server.public_bytes(serialization.Encoding.DER), "served cert is not server.pem"
    o = attempt_connect(b.mqtts_port, ctx_for(b, "mqtts", good), uid("ip"),
                        server_hostname="127.0.0.1")
    assert o.accepted, f"server cert not valid for 127.0.0.1: {o}"
    o = attempt_connect(b.tls_port, ctx_for(b, "tls", good), uid("ip"), server_hostname="127.0.0.1")
    assert o.accepted, f"tls port: {o}"


@pytest.mark.parametrize("in_memory", [True, False])
def test_generated_ca_is_reused_on_restart(broker, clients, tmp_path, in_memory):
    good = good_cert(tmp_path)
    b = tls_broker(broker, certificate_toml(good), in_memory=in_memory)
    ca_before = b.ca_file.read_bytes()
    saved_ca = tmp_path / "saved-ca.pem"
    saved_ca.write_bytes(ca_before)
    b.stop()
    b.start()
    assert b.ca_file.read_bytes() == ca_before, "the local root CA changed across a restart"
    # a client that trusted the CA before the restart still connects
    ctx = client_context(saved_ca, good)
    p = clients.paho_tls(b, ctx, b.mqtts_port, uid("after"))
    p.roundtrip()


# -- mqtts ------------------------------------------------------------------------------------

@pytest.mark.parametrize("key_kind", ["ec", "rsa"])
def test_mqtts_registered_certificate_pubsub_roundtrip(broker, clients, tmp_path, key_kind):
    good = good_cert(tmp_path, key_kind=key_kind)
    b = tls_broker(broker, certificate_toml(good))
    p = clients.paho_tls(b, ctx_for(b, "mqtts", good), b.mqtts_port, uid("mtls"))
    p.roundtrip()
    # same broker as the plain listener: plain subscriber gets what the TLS client publishes
    plain = clients.paho(b, uid("plain"))
    topic = f"x/{uid('t')}"
    plain.subscribe(topic, 1)
    p.publish(topic, b"over-mtls", 1)
    assert plain.expect(topic=topic).payload == b"over-mtls"


def test_mqtts_mosquitto_pub_to_sub(broker, tmp_path):
    good = good_cert(tmp_path)
    b = tls_broker(broker, certificate_toml(good))
    mosquitto_roundtrip(tmp_path, b.mqtts_port, [
        "--cafile", str(b.ca_file), "--cert", str(good.cert_path), "--key", str(good.key_path)])


# -- tls port, ALPN ----------------------------------------------------------------------------

def test_tls_port_alpn_x_amzn_mqtt_ca_roundtrip(broker, clients, tmp_path):
    good = good_cert(tmp_path)
    b = tls_broker(broker, certificate_toml(good))
    o = accepted(b, "tls", good)
    assert o.alpn == ALPN_MQTT_CA, f"negotiated ALPN {o.alpn!r}"
    p = clients.paho_tls(b, ctx_for(b, "tls", good), b.tls_port, uid("alpn"))
    p.roundtrip()


def test_tls_port_alpn_mosquitto_pub_to_sub(broker, tmp_path):
    good = good_cert(tmp_path)
    b = tls_broker(broker, certificate_toml(good))
    mosquitto_roundtrip(tmp_path, b.tls_port, [
        "--cafile", str(b.ca_file), "--cert", str(good.cert_path), "--key", str(good.key_path),
        "--tls-alpn", ALPN_MQTT_CA])


@pytest.mark.parametrize("which", PORTS)
def test_no_client_certificate_is_refused(broker, clients, tmp_path, which):
    good = good_cert(tmp_path)
    b = tls_broker(broker, certificate_toml(good))
    witness = clients.witness(b)
    refused(b, which, None)
    accepted(b, which, good)  # control: the same port takes a registered certificate
    witness.roundtrip()
    b.assert_running()


def test_alpn_mqtt_with_unknown_authorizer_gets_connack_5(broker, clients, tmp_path):
    """ALPN `mqtt` is custom authentication: an authorizer that does not exist is a
    CONNACK 5 with the reason logged (test_websocket.py covers working authorizers)."""
    b = tls_broker(broker)
    witness = clients.witness(b)
    client_id = uid("cauth")
    ctx = client_context(b.ca_file, alpn=["mqtt"])
    o = attempt_connect(b.tls_port, ctx, client_id,
                        username="dev?x-amz-customauthorizer-name=MyAuthorizer&tok=abc",
                        password=b"secret")
    assert o.refused and o.kind == "connack", f"expected CONNACK 5: {o}"
    line = b.wait_log(client_id, ["connect refused"])
    assert "MyAuthorizer" in line and "does not exist" in line, line
    witness.roundtrip()


@pytest.mark.parametrize("alpn", [["http/1.1"], None], ids=["http1.1", "no-alpn"])
def test_http_on_tls_port(broker, tmp_path, alpn):
    b = tls_broker(broker)
    status, proto = http_status_line(b, alpn, "/")
    assert proto in (None, "http/1.1"), f"negotiated ALPN {proto!r}"
    assert re.match(r"^HTTP/1\.1 404\b", status), f"GET / -> {status!r}"
    status, _ = http_status_line(b, alpn, "/mqtt")
    assert re.match(r"^HTTP/1\.1 \d{3}\b", status), f"GET /mqtt -> {status!r}"


# -- refusals ----------------------------------------------------------------------------------

def _refusal_case(case: str, d) -> tuple[CertKey, str]:
    """The client certificate to present and the registry TOML for each refusal case."""
    cn = f"{case}-{uuid.uuid4().hex[:6]}"
    if case == "unknown":
        return make_leaf(cn).write(d, case), ""
    if case in ("inactive", "revoked"):
        c = make_leaf(cn).write(d, case)
        return c, certificate_toml(c, status=case.upper())
    if case == "expired":
        c = expired_leaf(cn).write(d, case)
        return c, certificate_toml(c)
    if case == "not-yet-valid":
        c = future_leaf(cn).write(d, case)
        return c, certificate_toml(c)
    if case in ("ca-inactive", "ca-no-auto-register"):
        ca = make_ca(f"CA {cn}").write(d, f"{case}-ca")
        c = make_leaf(cn, ca).write(d, case)
        if case == "ca-inactive":
            return c, ca_toml(ca, status="INACTIVE", auto_register=True, policies=["dev-allow-all"])
        return c, ca_toml(ca, status="ACTIVE", auto_register=False, policies=["dev-allow-all"])
    raise ValueError(case)


@pytest.mark.parametrize("which", PORTS)
@pytest.mark.parametrize("case", list(REASONS))
def test_certificate_refused_with_reason_logged(broker, clients, tmp_path, case, which):
    good = good_cert(tmp_path)
    cert, toml = _refusal_case(case, tmp_path / "certs")
    b = tls_broker(broker, certificate_toml(good) + toml)
    witness = clients.witness(b)
    accepted(b, which, good)  # control: TLS set-up is right
    o = refused(b, which, cert)
    line = b.wait_log(cert.id, REASONS[case], timeout=5)
    assert cert.id in line.lower(), line
    witness.roundtrip()
    b.assert_running()
    print(f"{case}/{which}: {o}\n  log: {line}")


def test_unregistered_leaf_of_the_device_ca_is_refused(broker, tmp_path):
    """devices/ca.pem issues create-keys-and-certificate certificates but does not
    auto-register: a certificate it signs that was never registered is unknown."""
    b = tls_broker(broker)
    d = tmp_path / "cli"
    d.mkdir()
    r = iot_json(b, "create-keys-and-certificate", "--set-as-active",
                 "--certificate-pem-outfile", str(d / "c.pem"), "--private-key-outfile", str(d / "c.key"))
    iot_ok(b, "attach-policy", "--policy-name", "dev-allow-all", "--target", r["certificateArn"])
    dev_ca = CertKey(load_cert(b.data_dir / "devices" / "ca.pem"),
                     serialization.load_pem_private_key(
                         (b.data_dir / "devices" / "ca.key").read_bytes(), None))
    rogue = make_leaf("rogue", dev_ca).write(tmp_path / "certs", "rogue")
    accepted(b, "mqtts", cert_file=d / "c.pem", key_file=d / "c.key")  # control
    for which in PORTS:
        refused(b, which, rogue)
    b.wait_log(rogue.id, UNKNOWN_WORDS)


# -- CA auto-registration ----------------------------------------------------------------------

def test_ca_auto_register_registers_active_on_first_use(broker, clients, tmp_path):
    d = tmp_path / "certs"
    ca = make_ca("Auto CA").write(d, "auto-ca")
    leaf = make_leaf("auto-leaf-1", ca).write(d, "leaf")
    b = tls_broker(broker, ca_toml(ca, status="ACTIVE", auto_register=True,
                                   policies=["dev-allow-all"]))
    p = clients.paho_tls(b, ctx_for(b, "mqtts", leaf), b.mqtts_port, uid("auto"))
    p.roundtrip()
    desc = describe(b, leaf.id)
    assert desc["certificateId"] == leaf.id, desc
    assert desc["certificateArn"] == cert_arn(leaf.id), desc
    assert desc["status"] == "ACTIVE", desc
    assert pem_id(desc["certificatePem"]) == leaf.id, "certificatePem is not the leaf"
    # and it keeps working, on the other port too
    p2 = clients.paho_tls(b, ctx_for(b, "tls", leaf), b.tls_port, uid("auto2"))
    p2.roundtrip()
    # once registered it is an ordinary certificate: deactivating it sticks (no re-registration)
    iot_ok(b, "update-certificate", "--certificate-id", leaf.id, "--new-status", "INACTIVE")
    refused(b, "mqtts", leaf)
    b.wait_log(leaf.id, ["inactive"])
    assert describe(b, leaf.id)["status"] == "INACTIVE"


def test_ca_auto_register_with_chain_sent_by_the_client(broker, clients, tmp_path):
    """Devices often send leaf + CA: the certificate id is still the leaf's."""
    d = tmp_path / "certs"
    ca = make_ca("Chain CA").write(d, "chain-ca")
    leaf = make_leaf("chain-leaf", ca).write(d, "leaf")
    chain = d / "leaf-chain.pem"
    chain.write_bytes(leaf.pem + ca.pem)
    b = tls_broker(broker, ca_toml(ca, auto_register=True, policies=["dev-allow-all"]))
    ctx = ctx_for(b, "tls", cert_file=chain, key_file=leaf.key_path)
    p = clients.paho_tls(b, ctx, b.tls_port, uid("chain"))
    p.roundtrip()
    assert describe(b, leaf.id)["status"] == "ACTIVE"


def test_ca_auto_register_refuses_forged_and_expired_leaves(broker, clients, tmp_path):
    d = tmp_path / "certs"
    ca = make_ca("Real CA").write(d, "real-ca")
    impostor = make_ca("Impostor")
    # names the real CA as issuer (subject and key id) but is signed by another key
    forged = make_leaf("forged", impostor, forged_issuer=ca).write(d, "forged")
    old = expired_leaf("old", ca).write(d, "old")
    good = make_leaf("fine", ca).write(d, "fine")
    b = tls_broker(broker, ca_toml(ca, auto_register=True, policies=["dev-allow-all"]))
    witness = clients.witness(b)
    accepted(b, "mqtts", good)  # control
    refused(b, "mqtts", forged)
    refused(b, "tls", forged)
    b.wait_log(forged.id, ["refused", "denied", "invalid", "signature", *UNKNOWN_WORDS])
    refused(b, "mqtts", old)
    b.wait_log(old.id, ["expired"])
    for c in (forged, old):
        r = iot(b, "describe-certificate", "--certificate-id", c.id)
        if r.returncode == 0:
            assert json.loads(r.stdout)["certificateDescription"]["status"] != "ACTIVE", (
                f"refused certificate {c.id} was registered ACTIVE: {r.stdout}")
    witness.roundtrip()


# -- CLI ---------------------------------------------------------------------------------------

def test_cli_create_keys_attach_policy_and_status_changes(broker, clients, tmp_path):
    b = tls_broker(broker)
    witness = clients.witness(b)
    d = tmp_path / "cli"
    d.mkdir()
    cert_f, key_f, pub_f = d / "device.pem", d / "device.key", d / "device.pub"
    r = iot_json(b, "create-keys-and-certificate", "--set-as-active",
                 "--certificate-pem-outfile", str(cert_f), "--private-key-outfile", str(key_f),
                 "--public-key-outfile", str(pub_f))
    cert_id = r["certificateId"]
    assert re.fullmatch(r"[0-9a-f]{64}", cert_id), r
    assert r["certificateArn"] == cert_arn(cert_id), r
    assert pem_id(cert_f.read_bytes()) == cert_id, "certificateId is not SHA-256 of the file's DER"
    assert pem_id(r["certificatePem"]) == cert_id
    assert r["keyPair"]["PrivateKey"].strip() == key_f.read_text().strip()
    assert r["keyPair"]["PublicKey"].strip() == pub_f.read_text().strip()
    cert = load_cert(cert_f)
    key = serialization.load_pem_private_key(key_f.read_bytes(), None)
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)
    assert serialization.load_pem_public_key(pub_f.read_bytes()).public_bytes(*spki) == \
        cert.public_key().public_bytes(*spki)
    dev_ca = load_cert(b.data_dir / "devices" / "ca.pem")
    cert.verify_directly_issued_by(dev_ca)
    assert describe(b, cert_id)["status"] == "ACTIVE"

    iot_ok(b, "attach-policy", "--policy-name", "dev-allow-all", "--target", r["certificateArn"])
    kw = dict(cert_file=cert_f, key_file=key_f)
    p = clients.paho_tls(b, ctx_for(b, "mqtts", **kw), b.mqtts_port, uid("cli"))
    p.roundtrip()
    accepted(b, "tls", **kw)

    out = iot_ok(b, "update-certificate", "--certificate-id", cert_id, "--new-status", "INACTIVE")
    assert out.strip() == "", f"update-certificate printed {out!r}"
    assert describe(b, cert_id)["status"] == "INACTIVE"
    refused(b, "mqtts", **kw)
    refused(b, "tls", **kw)
    b.wait_log(cert_id, ["inactive"])

    iot_ok(b, "update-certificate", "--certificate-id", cert_id, "--new-status", "ACTIVE")
    accepted(b, "mqtts", **kw)

    iot_ok(b, "update-certificate", "--certificate-id", cert_id, "--new-status", "REVOKED")
    assert describe(b, cert_id)["status"] == "REVOKED"
    refused(b, "mqtts", **kw)
    b.wait_log(cert_id, ["revoked"])
    witness.roundtrip()
    b.assert_running()


def test_cli_certificate_without_policy_cannot_connect(broker, tmp_path):
    b = tls_broker(broker)
    d = tmp_path / "cli"
    d.mkdir()
    iot_json(b, "create-keys-and-certificate", "--set-as-active",
             "--certificate-pem-outfile", str(d / "c.pem"), "--private-key-outfile", str(d / "c.key"))
    o = refused(b, "mqtts", cert_file=d / "c.pem", key_file=d / "c.key")
    assert o.kind == "connack", f"an ACTIVE certificate without policies: expected CONNACK 5, got {o}"


def test_cli_errors_exit_nonzero_with_a_reason(broker):
    b = tls_broker(broker)
    missing = "ab" * 32
    r = iot(b, "describe-certificate", "--certificate-id", missing)
    assert r.returncode != 0, f"describe-certificate of an unknown id succeeded: {r.stdout}"
    assert r.stderr.strip(), "no reason on stderr"
    r = iot(b, "update-certificate", "--certificate-id", missing, "--new-status", "ACTIVE")
    assert r.returncode != 0, "update-certificate of an unknown id succeeded"
    d = b.workdir / "cli"
    d.mkdir()
    c = iot_json(b, "create-keys-and-certificate", "--set-as-active",
                 "--certificate-pem-outfile", str(d / "c.pem"), "--private-key-outfile", str(d / "c.key"))
    r = iot(b, "update-certificate", "--certificate-id", c["certificateId"], "--new-status", "BOGUS")
    assert r.returncode != 0, "update-certificate accepted status BOGUS"
    assert describe(b, c["certificateId"])["status"] == "ACTIVE"


def test_cli_registered_certificate_survives_a_restart(broker, clients, tmp_path):
    b = tls_broker(broker)
    d = tmp_path / "cli"
    d.mkdir()
    c = iot_json(b, "create-keys-and-certificate", "--set-as-active",
                 "--certificate-pem-outfile", str(d / "c.pem"), "--private-key-outfile", str(d / "c.key"))
    iot_ok(b, "attach-policy", "--policy-name", "dev-allow-all", "--target", c["certificateArn"])
    kw = dict(cert_file=d / "c.pem", key_file=d / "c.key")
    accepted(b, "mqtts", **kw)
    b.stop()
    b.start()
    accepted(b, "mqtts", **kw)
    assert describe(b, c["certificateId"])["status"] == "ACTIVE"


def test_cli_describe_endpoint(broker):
    b = tls_broker(broker)
    assert iot_json(b, "describe-endpoint") == {"endpointAddress": "localhost"}


def test_cli_register_certificate_inactive_then_active(broker, clients, tmp_path):
    b = tls_broker(broker)
    d = tmp_path / "certs"
    own = make_leaf("own-device").write(d, "own")
    r = iot_json(b, "register-certificate", "--certificate-pem", f"file://{own.cert_path}")
    assert r["certificateId"] == own.id, r
    assert r["certificateArn"] == own.arn, r
    assert describe(b, own.id)["status"] == "INACTIVE"
    iot_ok(b, "attach-policy", "--policy-name", "dev-allow-all", "--target", own.arn)
    refused(b, "mqtts", own)
    b.wait_log(own.id, ["inactive"])
    iot_ok(b, "update-certificate", "--certificate-id", own.id, "--new-status", "ACTIVE")
    p = clients.paho_tls(b, ctx_for(b, "mqtts", own), b.mqtts_port, uid("own"))
    p.roundtrip()

    other = make_leaf("own-device-2").write(d, "own2")
    r2 = iot_json(b, "register-certificate", "--certificate-pem", f"file://{other.cert_path}",
                  "--set-as-active")
    assert r2["certificateId"] == other.id, r2
    assert describe(b, other.id)["status"] == "ACTIVE"
    iot_ok(b, "attach-policy", "--policy-name", "dev-allow-all", "--target", other.arn)
    accepted(b, "tls", other)


# -- principal and policy variables ---------------------------------------------------------

def test_policy_variable_certificate_subject_common_name(broker, clients, tmp_path):
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{ARN}:client/*"},
            {"Effect": "Allow", "Action": "iot:Publish",
             "Resource": f"{ARN}:topic/cn/${{iot:Certificate.Subject.CommonName}}"},
        ],
    }
    dev = make_leaf("dev-42").write(tmp_path / "certs", "dev42")
    b = tls_broker(broker, policy_toml("cn-policy", policy)
                   + certificate_toml(dev, policies=["cn-policy"]))
    monitor = clients.paho(b, uid("mon"))  # plain, anonymous = dev-allow-all
    monitor.subscribe("cn/#", 1)
    cid = uid("dev42")
    keep = []
    o = attempt_connect(b.mqtts_port, ctx_for(b, "mqtts", dev), cid, keep=keep)
    raw = clients.track(keep[0])
    assert o.accepted, str(o)
    line = b.wait_log(cid, ["connected"])
    assert dev.id in line, f"the principal of a certificate client is its certificate id: {line}"
    raw.publish("cn/dev-42", b"mine", qos=1)
    assert monitor.expect(topic="cn/dev-42").payload == b"mine"
    raw.send(publish_packet("cn/other", b"not mine", 1, pid=9))
    assert raw.closed_within(5), "publish to cn/other must close the connection"
    b.wait_log(cid, ["publish denied"])
    assert not [m for m in monitor.drain(0.5) if m.topic == "cn/other"]


# -- the broker keeps serving ------------------------------------------------------------------

def test_witnesses_keep_working_while_refusals_happen(broker, clients, tmp_path):
    good = good_cert(tmp_path)
    unknown = make_leaf("stranger").write(tmp_path / "certs", "stranger")
    b = tls_broker(broker, certificate_toml(good))
    plain = clients.witness(b)
    secure = clients.paho_tls(b, ctx_for(b, "mqtts", good), b.mqtts_port, uid("tlswit"))
    secure.roundtrip()
    # stalled peers: TCP connected, no handshake
    stalled = [socket.create_connection(("127.0.0.1", p), timeout=5)
               for p in (b.mqtts_port, b.tls_port, b.mqtts_port, b.tls_port)]
    try:
        for which in PORTS:
            refused(b, which, unknown)
            refused(b, which, None)
        o = attempt_connect(b.tls_port, client_context(b.ca_file, alpn=["mqtt"]), uid("ca"))
        assert not o.accepted, str(o)
        # plain MQTT sent to the TLS ports
        for p in (b.mqtts_port, b.tls_port):
            s = socket.create_connection(("127.0.0.1", p), timeout=5)
            s.sendall(connect_packet(uid("plain-on-tls")))
            s.settimeout(5)
            try:
                while s.recv(4096):
                    pass
            except OSError:
                pass
            s.close()
        # a handshake abandoned midway
        s = socket.create_connection(("127.0.0.1", b.mqtts_port), timeout=5)
        s.sendall(b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03")
        s.close()
        # new good connections are accepted while the stalled ones are open
        accepted(b, "mqtts", good)
        accepted(b, "tls", good)
        plain.roundtrip()
        secure.roundtrip()
        b.assert_running()
    finally:
        for s in stalled:
            s.close()


def test_stalled_tls_handshake_is_closed(broker):
    """A peer that connects and never starts TLS does not hold its socket forever."""
    b = tls_broker(broker)
    socks = [socket.create_connection(("127.0.0.1", p), timeout=5) for p in (b.mqtts_port, b.tls_port)]
    try:
        deadline = time.monotonic() + 40
        for s in socks:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                data = s.recv(100)
            except socket.timeout:
                raise AssertionError("a connection with no TLS handshake still open after 40 s") from None
            except OSError:
                data = b""
            assert data == b"", f"unexpected bytes {data!r}"
    finally:
        for s in socks:
            s.close()
