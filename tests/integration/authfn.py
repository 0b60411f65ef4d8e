"""A custom-authorizer function served from the test process (stands in for IoT Core's
Lambda): an HTTP endpoint on a free loopback port that gets the event JSON by POST and
answers per token. Also token signing (RSA-SHA256 PKCS#1 v1.5, base64) with `cryptography`."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ARN = "arn:aws:iot:us-east-1:123456789012"

ALLOW_ALL = {"Version": "2012-10-17",
             "Statement": [{"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]}


def scoped_policy(prefix: str) -> dict:
    """Connect as anyone; publish, receive and subscribe only under `prefix/`."""
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"},
        {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
         "Resource": f"{ARN}:topic/{prefix}/*"},
        {"Effect": "Allow", "Action": "iot:Subscribe",
         "Resource": f"{ARN}:topicfilter/{prefix}/*"},
    ]}


def allow_answer(principal: str, policies: list[dict] | None = None,
                 disconnect_after: int = 86400, refresh_after: int = 300) -> dict:
    return {
        "isAuthenticated": True,
        "principalId": principal,
        "policyDocuments": [json.dumps(p) for p in (policies or [ALLOW_ALL])],
        "disconnectAfterInSeconds": disconnect_after,
        "refreshAfterInSeconds": refresh_after,
    }


def deny_answer(principal: str = "denied") -> dict:
    a = allow_answer(principal)
    a["isAuthenticated"] = False
    return a


# Sockets held by free_port for the whole test run: a bound socket that never listens
# refuses connections, and the OS cannot hand its port to a broker started later (a
# released port was once reused by the broker's own WebSocket listener, which turned "the
# function is down" into "the function answered 404").
_HELD: list = []


def free_port() -> int:
    """A loopback port nothing listens on and nothing else can take (bound, never listening)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    _HELD.append(s)
    return s.getsockname()[1]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog is 5: a burst of calls from the broker would wait in
    # SYN retries (1 s, 3 s) before the function even saw them.
    request_queue_size = 1024


class AuthorizerFunction:
    """Per-token behaviour, set with .allow / .deny / .sleep / .hang / .raw / .status /
    .answer: unknown tokens are denied. Every request is recorded in .events (parsed JSON,
    or {"_unparsed": text}); for a hanging token, .abandoned gets how long each caller
    waited before closing the connection."""

    def __init__(self):
        self.behaviours: dict[str, tuple] = {}
        self.events: list[dict] = []
        self.abandoned: list[float] = []
        self.lock = threading.Lock()
        fn = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                started = time.monotonic()
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                try:
                    event = json.loads(body)
                except ValueError:
                    event = {"_unparsed": body.decode(errors="replace")}
                with fn.lock:
                    fn.events.append({"path": self.path, **event} if isinstance(event, dict)
                                     else {"path": self.path, "_event": event})
                token = event.get("token") if isinstance(event, dict) else None
                kind, arg = fn.behaviours.get(token, ("json", deny_answer()))
                status, ctype, out = 200, "application/json", b""
                if kind == "hang":
                    # No answer at all: wait (at most `arg` seconds) for the caller to give
                    # up and close, and record when it did.
                    self.close_connection = True
                    self.connection.settimeout(arg)
                    try:
                        gone = self.connection.recv(1) == b""
                    except TimeoutError:
                        gone = False
                    except OSError:
                        gone = True
                    if gone:
                        with fn.lock:
                            fn.abandoned.append(time.monotonic() - started)
                    return
                if kind == "sleep":
                    time.sleep(arg[0])
                    out = json.dumps(arg[1]).encode()
                elif kind == "json":
                    out = json.dumps(arg).encode()
                elif kind == "raw":
                    ctype, out = "text/plain", arg
                elif kind == "status":
                    status, out = arg, json.dumps(allow_answer("p500")).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                except OSError:
                    pass  # the broker gave up (timeout)

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                       kwargs={"poll_interval": 0.1})
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/authorize"

    # behaviours
    def answer(self, token: str, body: dict) -> None:
        self.behaviours[token] = ("json", body)

    def allow(self, token: str, principal: str, policies: list[dict] | None = None, **kw) -> None:
        self.answer(token, allow_answer(principal, policies, **kw))

    def deny(self, token: str) -> None:
        self.answer(token, deny_answer())

    def sleep(self, token: str, seconds: float, principal: str = "sleepy") -> None:
        self.behaviours[token] = ("sleep", (seconds, allow_answer(principal)))

    def hang(self, token: str, hold: float = 60.0) -> None:
        """Never answers `token`; holds each such request until the caller closes (or for
        `hold` seconds)."""
        self.behaviours[token] = ("hang", hold)

    def raw(self, token: str, body: bytes) -> None:
        self.behaviours[token] = ("raw", body)

    def status(self, token: str, code: int) -> None:
        self.behaviours[token] = ("status", code)

    def events_for(self, token: str) -> list[dict]:
        with self.lock:
            return [e for e in self.events if e.get("token") == token]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


class TokenSigner:
    """An RSA-2048 token-signing key pair; the public key PEM is written to `directory`."""

    def __init__(self, directory: Path, bits: int = 2048):
        directory.mkdir(parents=True, exist_ok=True)
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        self.public_pem = self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.public_path = (directory / f"authorizer-pub-{bits}.pem").resolve()
        self.public_path.write_bytes(self.public_pem)
        self.private_path = (directory / f"authorizer-key-{bits}.pem").resolve()
        self.private_path.write_bytes(self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        self.private_path.chmod(0o600)

    def sign(self, token: str) -> str:
        sig = self.key.sign(token.encode(), padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(sig).decode()


def authorizer_toml(name: str, function_url: str, public_key: Path | str | None = None,
                    token_key_name: str = "mytoken", signing_disabled: bool = False,
                    status: str = "ACTIVE") -> str:
    lines = ["", "[[authorizers]]", f"name = {json.dumps(name)}",
             f"function_url = {json.dumps(function_url)}",
             f"token_key_name = {json.dumps(token_key_name)}",
             f"signing_disabled = {'true' if signing_disabled else 'false'}",
             f"status = {json.dumps(status)}"]
    if public_key is not None:
        lines.append(f"token_signing_public_keys = {{ key1 = {json.dumps(str(public_key))} }}")
    return "\n".join(lines) + "\n"


def credentials_toml(access_key_id: str, secret: str, principal: str,
                     policies: list[str] = ("dev-allow-all",)) -> str:
    return "\n".join([
        "", "[[credentials]]", f"access_key_id = {json.dumps(access_key_id)}",
        f"secret_access_key = {json.dumps(secret)}", f"principal = {json.dumps(principal)}",
        f"policies = {json.dumps(list(policies))}"]) + "\n"


def policy_toml(name: str, document: dict) -> str:
    return f"\n[[policies]]\nname = {json.dumps(name)}\ndocument = '''{json.dumps(document)}'''\n"
