"""Test X.509 material made with the `cryptography` package (independent of the broker),
TLS client contexts, a raw MQTT-over-TLS client, and TOML snippets for the registry.

Certificate id = lowercase hex SHA-256 of the DER (as AWS IoT Core)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mqttraw import CONNACK, RawClient, connect_packet

ALPN_MQTT_CA = "x-amzn-mqtt-ca"
ACCOUNT = "123456789012"
REGION = "us-east-1"


def cert_arn(cert_id: str) -> str:
    return f"arn:aws:iot:{REGION}:{ACCOUNT}:cert/{cert_id}"


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def new_key(kind: str = "ec"):
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(kind)


@dataclass
class CertKey:
    cert: x509.Certificate
    key: object
    cert_path: Path | None = None
    key_path: Path | None = None

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    @property
    def id(self) -> str:
        return hashlib.sha256(self.der).hexdigest()

    @property
    def arn(self) -> str:
        return cert_arn(self.id)

    def write(self, directory: Path, name: str) -> "CertKey":
        directory.mkdir(parents=True, exist_ok=True)
        self.cert_path = directory / f"{name}.pem"
        self.key_path = directory / f"{name}.key"
        self.cert_path.write_bytes(self.pem)
        self.key_path.write_bytes(self.key_pem)
        self.key_path.chmod(0o600)
        return self


def _name(cn: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pubsub integration tests"),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


def make_ca(cn: str = "Test Device CA", key_kind: str = "ec") -> CertKey:
    key = new_key(key_kind)
    t = now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(t - dt.timedelta(days=1))
        .not_valid_after(t + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertKey(cert, key)


def make_leaf(cn: str, issuer: CertKey | None = None, key_kind: str = "ec",
              not_before: dt.datetime | None = None,
              not_after: dt.datetime | None = None,
              forged_issuer: CertKey | None = None) -> CertKey:
    """A client certificate; self-signed when `issuer` is None. `forged_issuer`: claim that
    CA as issuer (its subject and key identifier) while signing with `issuer`'s key."""
    key = new_key(key_kind)
    t = now()
    not_before = not_before or (t - dt.timedelta(hours=1))
    not_after = not_after or (t + dt.timedelta(days=30))
    signer_key = issuer.key if issuer else key
    claimed = forged_issuer or issuer
    issuer_name = claimed.cert.subject if claimed else _name(cn)
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(cn)).issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=(key_kind == "rsa"), data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if claimed is not None:
        b = b.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(claimed.key.public_key()),
            critical=False)
    return CertKey(b.sign(signer_key, hashes.SHA256()), key)


def expired_leaf(cn: str, issuer: CertKey | None = None) -> CertKey:
    t = now()
    return make_leaf(cn, issuer, not_before=t - dt.timedelta(days=10),
                     not_after=t - dt.timedelta(days=1))


def future_leaf(cn: str, issuer: CertKey | None = None) -> CertKey:
    t = now()
    return make_leaf(cn, issuer, not_before=t + dt.timedelta(days=1),
                     not_after=t + dt.timedelta(days=10))


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(Path(path).read_bytes())


def pem_id(pem: bytes | str) -> str:
    if isinstance(pem, str):
        pem = pem.encode()
    c = x509.load_pem_x509_certificate(pem)
    return hashlib.sha256(c.public_bytes(serialization.Encoding.DER)).hexdigest()


# -- TOML registry snippets ------------------------------------------------------------------

def _q(s) -> str:
    return json.dumps(str(s))


def certificate_toml(ck: CertKey, status: str = "ACTIVE",
                     policies: list[str] | None = ("dev-allow-all",)) -> str:
    lines = ["", "[[certificates]]", f"pem_file = {_q(ck.cert_path)}", f"status = {_q(status)}"]
    if policies is not None:
        lines.append(f"policies = [{', '.join(_q(p) for p in policies)}]")
    return "\n".join(lines) + "\n"


def ca_toml(ck: CertKey, status: str = "ACTIVE", auto_register: bool = True,
            policies: list[str] | None = None) -> str:
    lines = ["", "[[ca_certificates]]", f"pem_file = {_q(ck.cert_path)}", f"status = {_q(status)}",
             f"auto_register = {'true' if auto_register else 'false'}"]
    if policies is not None:
        lines.append(f"policies = [{', '.join(_q(p) for p in policies)}]")
    return "\n".join(lines) + "\n"


def policy_toml(name: str, document: dict) -> str:
    return f"\n[[policies]]\nname = {_q(name)}\ndocument = '''{json.dumps(document)}'''\n"


# -- TLS clients -------------------------------------------------------------------------------

def client_context(ca_file: Path, cert: CertKey | None = None, alpn: list[str] | None = None,
                   cert_file: Path | None = None, key_file: Path | None = None) -> ssl.SSLContext:
    """A TLS client context trusting only `ca_file`, optionally presenting a client cert."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(ca_file))
    if cert is not None:
        cert_file, key_file = cert.cert_path, cert.key_path
    if cert_file is not None:
        ctx.load_cert_chain(str(cert_file), str(key_file))
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def tcp_connect(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> socket.socket:
    """A TCP connection; failing here (e.g. connection refused: no listener) is never a TLS
    refusal, so it raises."""
    raw = socket.create_connection((host, port), timeout=timeout)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return raw


class TlsRawClient(RawClient):
    """RawClient over TLS. TLS errors while reading (alerts, truncation) count as a close and
    are kept in `tls_error`. A handshake failure raises from the constructor."""

    def __init__(self, port: int, ctx: ssl.SSLContext, server_hostname: str | None = "localhost",
                 host: str = "127.0.0.1", timeout: float = 10.0, raw: socket.socket | None = None):
        if raw is None:
            raw = tcp_connect(port, host, timeout)
        try:
            self.sock = ctx.wrap_socket(raw, server_hostname=server_hostname)
        except BaseException:
            raw.close()
            raise
        self.buf = bytearray()
        self.eof = False
        self.received = []
        self.pending = []
        self._next_pid = 1
        self.tls_error: Exception | None = None

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("timed out waiting for data from broker")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("timed out waiting for data from broker") from None
        except ssl.SSLError as e:
            self.tls_error = e
            chunk = b""
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError) as e:
            self.tls_error = e
            chunk = b""
        if not chunk:
            self.eof = True
        else:
            self.buf += chunk

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


@dataclass
class Outcome:
    kind: str   # "connack" | "handshake" | "send" | "closed" | "timeout"
    detail: str
    return_code: int | None = None
    alpn: str | None = None

    @property
    def accepted(self) -> bool:
        return self.kind == "connack" and self.return_code == 0

    @property
    def refused(self) -> bool:
        if self.kind == "connack":
            return self.return_code != 0
        return self.kind in ("handshake", "send", "closed")

    def __str__(self) -> str:
        rc = f" rc={self.return_code}" if self.return_code is not None else ""
        return f"{self.kind}{rc}: {self.detail}"


def attempt_connect(port: int, ctx: ssl.SSLContext, client_id: str, timeout: float = 8.0,
                    server_hostname: str = "localhost", keep: list | None = None,
                    **connect_kw) -> Outcome:
    """TLS handshake, CONNECT, then the broker's answer. A client-side server-certificate
    verification failure is a test-setup problem and raises."""
    raw = tcp_connect(port, timeout=timeout)  # raises if nothing listens
    try:
        c = TlsRawClient(port, ctx, server_hostname=server_hostname, timeout=timeout, raw=raw)
    except ssl.SSLCertVerificationError:
        raise
    except (ssl.SSLError, ConnectionError, OSError) as e:
        if isinstance(e, socket.timeout):
            return Outcome("timeout", f"handshake timed out: {e!r}")
        return Outcome("handshake", repr(e))
    alpn = c.sock.selected_alpn_protocol()
    try:
        try:
            c.send(connect_packet(client_id, **connect_kw))
        except (ssl.SSLError, OSError) as e:
            return Outcome("send", repr(e), alpn=alpn)
        try:
            p = c.read_packet(timeout)
        except TimeoutError:
            return Outcome("timeout", f"no answer to CONNECT within {timeout}s", alpn=alpn)
        if p is None:
            return Outcome("closed", f"closed; tls error: {c.tls_error!r}", alpn=alpn)
        if p.type != CONNACK:
            return Outcome("other", repr(p), alpn=alpn)
        return Outcome("connack", repr(p), return_code=p.return_code, alpn=alpn)
    finally:
        if keep is not None:
            keep.append(c)
        else:
            c.close()
