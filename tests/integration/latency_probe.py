"""Publisher → subscriber latency of one paho pair, run as its own process so that a load
generator in the test process (its threads, its GIL) does not show up in the figures.

    python3 latency_probe.py PORT COUNT INTERVAL_S

Connects a publisher and a subscriber (QoS 1) to 127.0.0.1:PORT, prints `ready`, waits
for a line on stdin, then publishes COUNT messages one at a time (each waits for its
delivery, then INTERVAL_S), and prints one JSON object: {"latencies_ms": [...],
"sent_at": [...]} (the wall-clock time each was published, to line slow ones up with
what the broker was doing)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from helpers import Paho, uid  # noqa: E402

WARM_UP = 20
TIMEOUT = 10.0


def main() -> None:
    port, count, interval = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    topic = f"probe/{uid('t')}"
    sub = Paho(port, uid("probe-sub")).connect()
    pub = Paho(port, uid("probe-pub")).connect()
    try:
        sub.subscribe(topic, 1)

        def one(i: int) -> float:
            payload = str(i).encode()
            sent = time.perf_counter()
            pub.client.publish(topic, payload, qos=1)
            m = sub.expect(TIMEOUT, topic=topic)
            assert m.payload == payload, (m.payload, payload)
            return (time.perf_counter() - sent) * 1000

        for i in range(WARM_UP):
            one(-1 - i)
        print("ready", flush=True)
        sys.stdin.readline()
        latencies, sent_at = [], []
        for i in range(count):
            sent_at.append(time.time())
            latencies.append(one(i))
            time.sleep(interval)
        print(json.dumps({"latencies_ms": latencies, "sent_at": sent_at}), flush=True)
    finally:
        pub.close()
        sub.close()


if __name__ == "__main__":
    main()
