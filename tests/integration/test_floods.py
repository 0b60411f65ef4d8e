"""Floods of connections that stall before they are authenticated: a custom authorizer
whose function never answers (the CONNECT username over TLS with ALPN `mqtt` and over a
bare WebSocket upgrade, and WebSocket upgrades that carry the token), TLS handshakes that stop (before, inside or after the ClientHello),
WebSocket and HTTP request heads that never end, and TCP clients that never send CONNECT.

A thousand of them at once must not delay an unrelated publisher → subscriber pair (its
latency is measured in its own process, latency_probe.py, before and during the flood),
must not make the broker's memory grow without bound, and must each be closed after
`[limits] authorizer_timeout` (CONNACK 5 / HTTP 403) or `handshake_timeout`, with the
reason in the log."""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import resource
import ssl
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from authfn import AuthorizerFunction, authorizer_toml
from helpers import uid
from mqttraw import connect_packet
from tlscerts import client_context
from wsraw import frame, parse_frame, upgrade_headers

AUTHORIZER_TIMEOUT = 2.0
HANDSHAKE_TIMEOUT = 3.0
HANG_TOKEN = "hang"
# kind → how many; 1,000 in all. A complete TLS handshake costs the debug build ~3 ms of
# CPU on each side (the Python client's too), which is not what is measured here: few
# of the authorizer connections are over TLS.
FLOOD = {
    "alpn-authorizer": 50,     # TLS, ALPN mqtt, CONNECT with authorizer fields → CONNACK 5
    "ws-connect-authorizer": 250,  # bare WebSocket upgrade, the same CONNECT → CONNACK 5
    "ws-authorizer": 200,      # WebSocket upgrade with the token in headers → HTTP 403
    "tls-nothing": 50,         # TCP to the tls port, nothing sent
    "tls-half-hello": 100,     # half a ClientHello
    "tls-after-hello": 100,    # a whole ClientHello, then nothing (the server has answered)
    "ws-partial-head": 150,    # an upgrade request head without its blank line
    "http-partial-head": 50,   # the same on the control-plane / iot-data listener
    "mqtt-no-connect": 50,     # TCP to the mqtt port, no CONNECT
}
AUTHORIZER_KINDS = {"alpn-authorizer", "ws-connect-authorizer", "ws-authorizer"}
CONNACK_KINDS = {"alpn-authorizer", "ws-connect-authorizer"}
# What the broker logs for each kind (lowercase substrings, all on one line).
LOGGED = {
    "connect": ["connect refused", f"did not answer within {AUTHORIZER_TIMEOUT:.0f}s"],
    "ws-authorizer": ["websocket upgrade refused", "403",
                      f"did not answer within {AUTHORIZER_TIMEOUT:.0f}s"],
    "tls": [f"tls handshake not done within {HANDSHAKE_TIMEOUT:.0f}s"],
    "head": [f"no complete http request head within {HANDSHAKE_TIMEOUT:.0f}s"],
    "mqtt-no-connect": [f"no connect within {HANDSHAKE_TIMEOUT:.0f}s"],
}
PROBE_MESSAGES = 400
PROBE_INTERVAL = 0.01       # 400 messages span ~5 s: the burst, both timeout waves
P99_SLACK_MS = 20.0         # 2 shared cores, a Python load generator beside the broker
LOAD_NICENESS = 10
RSS_LIMIT_MB = 150
# Late by more than this, a close counts as a failure (the broker under the flood).
LATE = 3.0
CONNACK_NOT_AUTHORIZED = bytes([0x20, 0x02, 0x00, 0x05])
AUTHORIZER_USERNAME = f"?x-amz-customauthorizer-name=Hang&mytoken={HANG_TOKEN}"


def raise_open_files(at_least: int = 4096) -> None:
    """The flood needs more descriptors than a default soft limit of 1024; the broker,
    started after this, inherits the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < at_least:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(at_least, hard), hard))


def client_hello() -> bytes:
    """The first flight of a real TLS client (Python's ssl), never continued."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def request_head(method: str, target: str, headers: list[tuple[str, str]], end: bool = True) -> bytes:
    head = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    return (head + ("\r\n" if end else "")).encode("latin-1")


def ws_payload(received: bytes) -> bytes:
    """What the broker's binary frames in `received` carried (close frames aside)."""
    frames = bytearray(received)
    payload = b""
    while (parsed := parse_frame(frames)) is not None:
        opcode, data, used = parsed
        del frames[:used]
        if opcode in (0x0, 0x2):
            payload += data
    return payload


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(0.99 * len(ordered)) - 1]


@dataclass
class Stalled:
    kind: str
    answer: bytes = b""
    # From the start of the connection attempt (the broker's clocks start later: at accept,
    # at the authorizer call) to the broker's close.
    closed_after: float | None = None
    error: str = ""


class Flood:
    def __init__(self, b):
        self.b = b
        self.mqtt_tls = client_context(b.ca_file, alpn=["mqtt"])
        self.hello = client_hello()

    async def open(self, kind: str):
        """Connects and sends what `kind` sends before it stalls."""
        b = self.b
        if kind == "alpn-authorizer":
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", b.tls_port, ssl=self.mqtt_tls, server_hostname="localhost")
            writer.write(connect_packet(uid("flood"), username=AUTHORIZER_USERNAME, password=b"pw"))
            return reader, writer
        port = {"ws-authorizer": b.ws_port, "ws-connect-authorizer": b.ws_port,
                "ws-partial-head": b.ws_port, "http-partial-head": b.http_port,
                "mqtt-no-connect": b.port}.get(kind, b.tls_port)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        if kind == "ws-connect-authorizer":
            # As a WebSocket client does: the upgrade, its 101, then CONNECT in a frame.
            writer.write(request_head("GET", "/mqtt", upgrade_headers()))
            answer = await reader.readuntil(b"\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 101"), answer
            connect = connect_packet(uid("flood"), username=AUTHORIZER_USERNAME, password=b"pw")
            writer.write(frame(0x2, connect))
        elif kind == "ws-authorizer":
            headers = upgrade_headers() + [("x-amz-customauthorizer-name", "Hang"),
                                           ("mytoken", HANG_TOKEN)]
            writer.write(request_head("GET", "/mqtt", headers))
        elif kind == "ws-partial-head":
            writer.write(request_head("GET", "/mqtt", upgrade_headers(), end=False))
        elif kind == "http-partial-head":
            writer.write(request_head("POST", "/topics/flood", [("Host", "localhost")], end=False))
        elif kind == "tls-half-hello":
            writer.write(self.hello[:len(self.hello) // 2])
        elif kind == "tls-after-hello":
            writer.write(self.hello)
        return reader, writer

    async def stall(self, kind: str, give_up: float) -> Stalled:
        """One flood connection: open, stall, and read until the broker closes."""
        result = Stalled(kind)
        writer = None
        started, sent = time.monotonic(), False
        try:
            reader, writer = await self.open(kind)
            await writer.drain()
            sent = True
            while True:
                chunk = await asyncio.wait_for(reader.read(4096), give_up - time.monotonic())
                if not chunk:
                    break
                result.answer += chunk
            result.closed_after = time.monotonic() - started
        except (asyncio.TimeoutError, TimeoutError):
            result.error = "still open when the test gave up"
        except (ConnectionError, ssl.SSLError, OSError) as e:
            if not sent:
                result.error = f"could not open: {e!r}"
            else:  # a reset (or a TLS stream cut without close_notify) is a close too
                result.closed_after = time.monotonic() - started
        finally:
            if writer is not None:
                writer.close()
        return result


async def probe_process(port: int) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).with_name("latency_probe.py")), str(port),
        str(PROBE_MESSAGES), str(PROBE_INTERVAL),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    ready = await asyncio.wait_for(proc.stdout.readline(), 15)
    assert ready == b"ready\n", f"latency probe did not start: {ready!r}"
    return proc


async def probe_result(proc: asyncio.subprocess.Process) -> dict:
    """{"latencies_ms": [...], "sent_at": [...]}"""
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, f"latency probe failed ({proc.returncode}): {out[-500:]!r}"
    return json.loads(out.splitlines()[-1])


def niced(fn, *args):
    """fn(*args) on a thread of its own, at a lower CPU priority that the threads it
    starts inherit (Linux keeps nice per thread). The flood stands for clients on other
    machines: on this one, its Python must not take the CPU from the broker and the probe
    it is measured by."""
    outcome = {}

    def run():
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOAD_NICENESS)
        try:
            outcome["value"] = fn(*args)
        except BaseException as e:  # re-raised in the caller
            outcome["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


async def flood_all(b, kinds: list[str], give_up: float) -> list[Stalled]:
    flood = Flood(b)
    return await asyncio.gather(*(flood.stall(kind, give_up) for kind in kinds))


async def measure(b) -> dict:
    """Baseline latency, then latency and RSS during a flood; every flood connection's
    outcome."""
    proc = await probe_process(b.port)
    proc.stdin.write(b"go\n")
    baseline = await probe_result(proc)
    rss_before = rss_mb(b.proc.pid)

    proc = await probe_process(b.port)
    kinds = [kind for kind, n in FLOOD.items() for _ in range(n)]
    random.shuffle(kinds)
    give_up = time.monotonic() + HANDSHAKE_TIMEOUT + LATE + 3
    samples = []

    async def sample_rss():
        while True:
            samples.append(rss_mb(b.proc.pid))
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample_rss())
    started, started_at = time.monotonic(), time.time()
    flooding = asyncio.create_task(asyncio.to_thread(
        niced, lambda: asyncio.run(flood_all(b, kinds, give_up))))
    proc.stdin.write(b"go\n")
    during = await probe_result(proc)
    results = await flooding
    flood_seconds = time.monotonic() - started
    sampler.cancel()
    slow = [(round(at - started_at, 2), round(ms, 1))
            for at, ms in zip(during["sent_at"], during["latencies_ms"]) if ms > 20]
    return {"baseline": baseline["latencies_ms"], "during": during["latencies_ms"],
            "slow": slow, "rss_before": rss_before, "rss": samples, "results": results,
            "flood_seconds": flood_seconds}


def test_a_flood_of_stalled_openings_leaves_an_unrelated_pair_alone(broker):
    raise_open_files()
    authfn = niced(AuthorizerFunction)  # its threads are load too
    authfn.hang(HANG_TOKEN, hold=HANDSHAKE_TIMEOUT + LATE + 10)
    try:
        b = broker(listeners={"tls": "127.0.0.1:0", "ws": "127.0.0.1:0", "http": "127.0.0.1:0"},
                   authorizer_timeout=f"{AUTHORIZER_TIMEOUT:.0f}s",
                   handshake_timeout=f"{HANDSHAKE_TIMEOUT:.0f}s",
                   extra_toml=authorizer_toml("Hang", authfn.url, signing_disabled=True))
        m = asyncio.run(measure(b))
        # The function saw every authorizer call and the broker hung up on each.
        deadline = time.monotonic() + 5
        while len(authfn.abandoned) < len(authfn.events_for(HANG_TOKEN)) \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        calls = len(authfn.events_for(HANG_TOKEN))
        abandoned = list(authfn.abandoned)
    finally:
        authfn.close()

    base_p99, flood_p99 = p99(m["baseline"]), p99(m["during"])
    peak = max(m["rss"])
    print(f"\nlatency p99 baseline {base_p99:.2f} ms, during the flood {flood_p99:.2f} ms "
          f"(max {max(m['baseline']):.2f} / {max(m['during']):.2f} ms); broker RSS "
          f"{m['rss_before']:.1f} MB before, peak {peak:.1f} MB during the flood; "
          f"flood of {len(m['results'])} closed in {m['flood_seconds']:.1f} s; "
          f"messages over 20 ms (s into the flood, ms): {m['slow']}")

    # Every flood connection was closed, by the right deadline, with the right answer.
    problems = []
    for r in m["results"]:
        limit = AUTHORIZER_TIMEOUT if r.kind in AUTHORIZER_KINDS else HANDSHAKE_TIMEOUT
        if r.closed_after is None:
            problems.append(f"{r.kind}: {r.error}")
        elif not limit - 0.05 <= r.closed_after <= limit + LATE:
            problems.append(f"{r.kind}: closed after {r.closed_after:.2f}s, limit {limit}s")
        elif r.kind == "alpn-authorizer" and r.answer != CONNACK_NOT_AUTHORIZED:
            problems.append(f"{r.kind}: expected CONNACK 5, got {r.answer[:40]!r}")
        elif r.kind == "ws-connect-authorizer" and ws_payload(r.answer) != CONNACK_NOT_AUTHORIZED:
            problems.append(f"{r.kind}: expected CONNACK 5 in a frame, got {r.answer[:40]!r}")
        elif r.kind == "ws-authorizer" and not r.answer.startswith(b"HTTP/1.1 403"):
            problems.append(f"{r.kind}: expected HTTP 403, got {r.answer[:40]!r}")
        elif r.kind not in AUTHORIZER_KINDS | {"tls-after-hello"} and r.answer:
            problems.append(f"{r.kind}: the broker answered a stalled opening: {r.answer[:40]!r}")
    assert not problems, f"{len(problems)} of {len(m['results'])} wrong, e.g. " \
                         f"{Counter(p.split(':')[0] for p in problems)}: {problems[:5]}"

    # ... and said why, once per connection.
    authorizer_calls = sum(FLOOD[kind] for kind in AUTHORIZER_KINDS)
    assert calls == authorizer_calls, f"the function got {calls} calls"
    assert len(abandoned) == authorizer_calls and max(abandoned) < AUTHORIZER_TIMEOUT + LATE, \
        f"the broker hung up on {len(abandoned)} of {calls} calls, max {max(abandoned, default=0):.1f}s"
    expected_lines = {
        "connect": sum(FLOOD[kind] for kind in CONNACK_KINDS),
        "ws-authorizer": FLOOD["ws-authorizer"],
        "tls": FLOOD["tls-nothing"] + FLOOD["tls-half-hello"] + FLOOD["tls-after-hello"],
        "head": FLOOD["ws-partial-head"] + FLOOD["http-partial-head"],
        "mqtt-no-connect": FLOOD["mqtt-no-connect"],
    }
    logged = {what: len(b.log_lines_with(*LOGGED[what])) for what in expected_lines}
    assert logged == expected_lines, f"log lines per reason: {logged}, expected {expected_lines}"

    # Memory stayed bounded, and the pair did not notice.
    assert peak < RSS_LIMIT_MB, f"broker RSS peaked at {peak:.0f} MB during the flood"
    assert flood_p99 < base_p99 + P99_SLACK_MS, \
        f"p99 {flood_p99:.1f} ms during the flood vs {base_p99:.1f} ms before"
    b.assert_running()


def open_files_limits(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError(f"no open-files limit for {pid}")


def test_the_broker_raises_its_open_files_limit(broker):
    """A soft limit of 1,024 (a common default) would refuse the thousandth client."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(1024, hard)
    if low >= hard:
        pytest.skip(f"the hard limit ({hard}) leaves nothing to raise")
    resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))
    try:
        b = broker()  # inherits the low soft limit
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    broker_soft, broker_hard = open_files_limits(b.proc.pid)
    assert broker_hard == hard
    assert broker_soft == min(hard, 1 << 20), (broker_soft, broker_hard)
