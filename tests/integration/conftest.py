"""Fixtures: start the `pubsub broker` binary with a generated config, clients that clean up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import Paho, uid  # noqa: E402
from mqttraw import RawClient  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BIN = os.environ.get("PUBSUB_BIN") or str(REPO / "target" / "debug" / "pubsub")
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0

TOP_LEVEL_KEYS = {
    "region", "account_id", "endpoint", "data_dir", "in_memory", "session_expiry",
    "retained_on_wildcard", "subscribe_denied", "default_authorizer",
}


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML for {v!r}")


DEFAULT_LISTENERS = {"mqtt": "127.0.0.1:0", "mqtts": "", "tls": "", "http": ""}


def merged_listeners(overrides: dict) -> dict:
    """The [listeners] table: defaults plus `listeners={...}` ("" disables)."""
    listeners = dict(DEFAULT_LISTENERS)
    listeners.update(overrides.get("listeners", {}))
    return listeners


def render_config(data_dir: Path, overrides: dict) -> str:
    """The test config; overrides go to the top level if the key is a top-level key,
    else to [limits]. `listeners={...}` and `limits={...}` dicts are merged too;
    `anonymous=[...]` replaces the anonymous principal's policies and `extra_toml="..."`
    is appended verbatim (e.g. `[[policies]]` tables)."""
    top = {
        "data_dir": str(data_dir),
        "in_memory": True,
        "session_expiry": "1h",
        "retained_on_wildcard": False,
    }
    listeners = merged_listeners(overrides)
    limits = {"keepalive_min": "1s", "connects_per_client_id_per_sec": 0}
    anonymous = ["dev-allow-all"]
    extra_toml = ""
    for k, v in overrides.items():
        if k == "anonymous":
            anonymous = v
        elif k == "extra_toml":
            extra_toml = v
        elif k == "listeners":
            pass  # merged above
        elif k == "limits":
            limits.update(v)
        elif k in TOP_LEVEL_KEYS:
            top[k] = v
        else:
            limits[k] = v
    lines = [f"{k} = {toml_value(v)}" for k, v in top.items()]
    lines.append("")
    lines.append("[listeners]")
    lines += [f"{k} = {toml_value(v)}" for k, v in listeners.items()]
    lines.append("")
    lines.append("[limits]")
    lines += [f"{k} = {toml_value(v)}" for k, v in limits.items()]
    lines.append("")
    lines.append("[anonymous]")
    lines.append(f"policies = {toml_value(anonymous)}")
    lines.append(extra_toml)
    return "\n".join(lines) + "\n"


def tail(path: Path, n: int = 60) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log file)"
    return "\n".join(lines[-n:])


class Broker:
    def __init__(self, workdir: Path, overrides: dict):
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.config_path = workdir / "pubsub.toml"
        self.config_path.write_text(render_config(self.data_dir, overrides))
        self.log_path = workdir / "broker.log"
        self.proc: subprocess.Popen | None = None
        self.addr: str | None = None
        self.port: int | None = None
        # listeners enabled in the config: start() waits until listeners.json names them all
        self.enabled = [k for k, v in merged_listeners(overrides).items() if v]
        self.listeners: dict = {}
        self.mqtts_port: int | None = None
        self.tls_port: int | None = None
        self.ws_port: int | None = None
        self.http_port: int | None = None
        tls = any(k in self.enabled for k in ("mqtts", "tls", "ws"))
        # generating key material on first start may take a while in a debug build
        self.start_timeout = START_TIMEOUT * 3 if tls else START_TIMEOUT

    def start(self) -> "Broker":
        if not os.path.exists(BIN):
            pytest.fail(f"broker binary not found: {BIN} (build it, or set PUBSUB_BIN)")
        env = dict(os.environ)
        env["RUST_LOG"] = os.environ.get("PUBSUB_TEST_RUST_LOG", "info")
        env.setdefault("NO_COLOR", "1")
        listeners = self.data_dir / "listeners.json"
        try:
            listeners.unlink()  # a restart must not read the previous run's ports
        except FileNotFoundError:
            pass
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [BIN, "broker", "--config", str(self.config_path)],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=self.workdir, env=env,
        )
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"broker exited with {self.proc.returncode} during start-up; log:\n"
                            f"{tail(self.log_path)}")
            try:
                data = json.loads(listeners.read_text())
                if "mqtt" in data and all(k in data for k in self.enabled):
                    self.addr = data["mqtt"]
                    self.listeners = data
                    break
            except (FileNotFoundError, json.JSONDecodeError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"{listeners} not written (with keys {self.enabled}) within "
                            f"{self.start_timeout}s; log:\n{tail(self.log_path)}")
            time.sleep(0.05)
        host, port = self.addr.rsplit(":", 1)
        self.host, self.port = host, int(port)
        for name in ("mqtts", "tls", "ws", "http"):
            a = self.listeners.get(name)
            setattr(self, f"{name}_port", int(a.rsplit(":", 1)[1]) if a else None)
        return self

    @property
    def ca_file(self) -> Path:
        """The generated local root CA (when [tls] is absent)."""
        return self.data_dir / "tls" / "ca.pem"

    # -- process control ---------------------------------------------------------------

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, wait up to `timeout`; returns the exit code or None if still running."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        """Always leaves the process dead: SIGTERM, ≤5 s, then SIGKILL."""
        if self.proc is None:
            return
        if self.terminate() is None:
            self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        try:
            self._log.close()
        except Exception:
            pass

    # -- log ---------------------------------------------------------------------------

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_lines_with(self, *needles: str) -> list[str]:
        """Lines containing every needle (case-insensitive)."""
        ns = [n.lower() for n in needles]
        return [l for l in self.log().splitlines() if all(n in l.lower() for n in ns)]

    def wait_log(self, client_id: str, any_of: list[str], timeout: float = 3.0) -> str:
        """Waits for a log line naming `client_id` and containing any of `any_of`
        (case-insensitive substrings); returns it or fails with the log tail."""
        deadline = time.monotonic() + timeout
        cid, words = client_id.lower(), [w.lower() for w in any_of]
        while True:
            for line in self.log().splitlines():
                low = line.lower()
                if cid in low and any(w in low for w in words):
                    return line
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no broker log line with {client_id!r} and any of {any_of}; log tail:\n"
                    f"{tail(self.log_path, 30)}")
            time.sleep(0.1)

    def assert_running(self) -> None:
        assert self.alive(), f"broker died (exit {self.proc.returncode}); log:\n{tail(self.log_path)}"

    # -- clients -----------------------------------------------------------------------

    def raw(self) -> RawClient:
        return RawClient(self.port, self.host)


# ---------------------------------------------------------------------------------------

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for b in getattr(item, "_brokers", []):
            rep.sections.append((f"broker log tail ({b.log_path})", tail(b.log_path)))


@pytest.fixture
def broker(tmp_path, request):
    """Factory: broker(**overrides) starts a broker and returns it (stopped at teardown).

    Overrides: top-level config keys (retained_on_wildcard=True, session_expiry="2s") or
    [limits] keys (max_payload_bytes=1024, connects_per_client_id_per_sec=1);
    listeners={"mqtts": "127.0.0.1:0", "tls": "127.0.0.1:0"} enables TLS listeners (then
    .mqtts_port / .tls_port / .ca_file; "ws" → .ws_port; "http" → .http_port); anonymous=[...];
    extra_toml="..."."""
    started: list[Broker] = []
    request.node._brokers = started

    def start(**overrides) -> Broker:
        b = Broker(tmp_path / f"broker{len(started)}", overrides)
        started.append(b)
        return b.start()

    yield start
    for b in started:
        b.stop()


@pytest.fixture
def clients(broker):
    """Factory for clients that are closed at teardown:
    clients.paho(broker, client_id=None, clean_session=True, ...) -> connected Paho
    clients.paho_new(...) -> not yet connected; clients.raw(broker) -> RawClient."""

    class Clients:
        def __init__(self):
            self.all = []

        def paho_new(self, broker, client_id=None, port=None, host=None, **kw) -> Paho:
            c = Paho(port or broker.port, client_id, host=host or broker.host, **kw)
            self.all.append(c)
            return c

        def paho_tls(self, broker, ctx, port, client_id=None, **kw) -> Paho:
            """Connected over TLS to `port` (host "localhost", as the server cert names it)."""
            return self.paho_new(broker, client_id, port=port, host="localhost",
                                 tls_context=ctx, **kw).connect()

        def paho(self, broker, client_id=None, **kw) -> Paho:
            return self.paho_new(broker, client_id, **kw).connect()

        def raw(self, broker) -> RawClient:
            c = broker.raw()
            self.all.append(c)
            return c

        def track(self, c):
            """Closes `c` at teardown."""
            self.all.append(c)
            return c

        def witness(self, broker) -> Paho:
            """A client connected before the misbehaving one, to show the broker still serves."""
            w = self.paho(broker, uid("witness"))
            w.roundtrip()
            return w

    cs = Clients()
    yield cs
    for c in reversed(cs.all):
        try:
            c.close()
        except Exception:
            pass
