"""Load helpers shared by the reliability tests and `bench/backlog`: a QoS 1 publisher
with a window, a persistent-session drainer, resident-memory and disk-usage probes."""

import threading
import time
from pathlib import Path

from helpers import uid
from mqttraw import PUBACK, PUBLISH, RawClient, publish_packet, puback_packet

PAYLOAD = 131_000
MiB = 1 << 20


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class PeakRss:
    """Samples a process's resident set every 20 ms until stopped."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, rss_bytes(self.pid))
            except (FileNotFoundError, ProcessLookupError):
                return
            time.sleep(0.02)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_blocks * 512 for f in path.rglob("*") if f.is_file())


def payload(n: int, size: int = PAYLOAD) -> bytes:
    head = f"{n:08}".encode()
    return head + b"." * (size - len(head))


def publish_all(port: int, topic: str, count: int, size: int = PAYLOAD, window: int = 20,
                stall: float = 30.0) -> set[int]:
    """Publishes messages 0..count-1 at QoS 1, `window` in flight; returns the numbers
    PUBACKed. Stops early when no PUBACK arrives for `stall` seconds."""
    pub = RawClient(port)
    pub.connect_ok(uid("pub"))
    acked, in_flight, n = set(), {}, 0
    last_ack = time.monotonic()
    while len(acked) + len(in_flight) < count or in_flight:
        while n < count and len(in_flight) < window:
            pid = n % 65535 + 1
            in_flight[pid] = n
            pub.send(publish_packet(topic, payload(n, size), 1, pid=pid))
            n += 1
        try:
            p = pub.read_packet(timeout=0.5)
        except TimeoutError:
            if time.monotonic() - last_ack > stall:
                break
            continue
        assert p is not None, "the broker closed the publisher's connection"
        if p.type == PUBACK:
            acked.add(in_flight.pop(p.pid))
            last_ack = time.monotonic()
    pub.close()
    return acked


def drain(port: int, client_id: str, quiet: float = 3.0) -> list[int]:
    """Resumes a persistent session and returns the message numbers it receives, in order."""
    sub = RawClient(port)
    ack = sub.connect(client_id, clean_session=False)
    assert ack.return_code == 0 and ack.session_present, f"session {client_id} is gone"
    got = []
    while True:
        try:
            p = sub.read_packet(timeout=quiet)
        except TimeoutError:
            break
        if p is None:
            break
        sub.received.clear()  # 131 kB each: keep only the numbers
        if p.type == PUBLISH:
            got.append(int(p.payload[:8]))
            if p.pid:
                sub.send(puback_packet(p.pid))
    sub.close()
    return got
