"""Reliability under pressure: the memory budget, messages stored once, a full disk.

The backlog here is the issue's scenario scaled to fit the suite: ten offline persistent
sessions and 600 QoS 1 messages of 131,000 bytes (79 MB of payload, 786 MB queued in all)
into a broker whose memory budget is 64 MiB. `bench/backlog` runs the full-size one.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import Broker, tail
from helpers import uid, wait_until
from load import MiB, PAYLOAD, PeakRss, dir_bytes, drain, payload, publish_all, rss_bytes
from mqttraw import PUBACK, RawClient, publish_packet
from test_durability import kill_and_restart, offline_persistent_subscriber

@pytest.mark.timeout(150)
def test_a_backlog_for_offline_sessions_stays_within_the_memory_budget(broker):
    b = broker(in_memory=False, memory_budget="64MiB", max_queued_per_session=100_000)
    sessions = [uid("offline") for _ in range(10)]
    for client_id in sessions:
        offline_persistent_subscriber(b, client_id, "big/t")
    idle_rss = rss_bytes(b.proc.pid)
    before = dir_bytes(b.data_dir)
    peak = PeakRss(b.proc.pid)
    count = 600  # 79 MB of payload, 786 MB queued in all
    acked = publish_all(b.port, "big/t", count)
    assert len(acked) == count
    grown = dir_bytes(b.data_dir) - before
    for client_id in sessions:
        got = drain(b.port, client_id)
        assert got == list(range(count)), (
            f"{client_id}: {len(got)} of {count}, first gaps at "
            f"{sorted(set(range(count)) - set(got))[:5]}")
    high = peak.stop()
    print(f"\nbacklog: idle RSS {idle_rss / MiB:.1f} MiB, peak {high / MiB:.1f} MiB; "
          f"data dir +{grown / MiB:.1f} MiB for {count * PAYLOAD / MiB:.1f} MiB of payload "
          f"queued by {len(sessions)} sessions")
    # The budget plus what it does not count: allocator rounding of 131 kB blocks, socket
    # and write buffers. Measured against the binary's own idle size, which is 12 MB for
    # a release build and about 33 MB for the debug build the suite runs.
    assert high < idle_rss + (64 + 24) * MiB, f"peak RSS {high / MiB:.1f} MiB"
    # One copy of each message, not one per session (with room for redb's page overhead).
    assert grown < 2 * count * PAYLOAD, f"data dir grew {grown / MiB:.1f} MiB"
    assert b.log_lines_with("memory budget reached") == [], "durable mode evicts, never drops"


def test_in_memory_past_the_budget_drops_the_oldest_and_says_so(broker):
    b = broker(in_memory=True, memory_budget="8MiB")
    client_id = uid("offline")
    offline_persistent_subscriber(b, client_id, "big/t")
    count = 200  # 26 MB into an 8 MiB budget
    assert len(publish_all(b.port, "big/t", count)) == count
    got = drain(b.port, client_id)
    assert 0 < len(got) < count and got == sorted(got)
    assert got[-1] == count - 1, "the newest are kept"
    assert len(got) * PAYLOAD <= 8 * MiB
    line = b.wait_log(client_id, ["memory budget reached"])
    assert "dropped" in line


def test_the_qos1_queue_bound_does_not_cut_an_online_subscribers_qos0_stream(broker, clients):
    b = broker(max_queued_per_session=1)
    sub = clients.paho(b, uid("sub"))
    sub.subscribe("burst/t", qos=0)
    pub = clients.paho(b, uid("pub"))
    for n in range(50):
        pub.publish("burst/t", f"{n}", qos=0)
    pub.roundtrip()
    got = [m.payload for m in sub.drain(1.5)]
    assert got == [str(n).encode() for n in range(50)]


# -- a full disk -----------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 48 MiB tmpfs mounted for the test (skipped where mounting is not permitted)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root: the disk-full test is skipped")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): "
                    "the disk-full test is skipped")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(disk: Path, leave: int) -> Path:
    """Writes a filler file until only `leave` bytes are free on `disk`."""
    filler = disk / "filler"
    stat = os.statvfs(disk)
    free = stat.f_bavail * stat.f_frsize
    with open(filler, "wb") as f:
        remaining = max(0, free - leave)
        block = b"\0" * MiB
        while remaining > 0:
            f.write(block[:min(remaining, MiB)])
            remaining -= min(remaining, MiB)
    return filler


def test_a_full_disk_pauses_acknowledgements_loses_nothing_and_recovers(tmp_path, small_disk,
                                                                          request, clients):
    b = Broker(small_disk / "broker", {"in_memory": False, "session_expiry": "1h"})
    b.log_path = tmp_path / "broker.log"  # the log must not need the full disk
    request.node._brokers = [b]
    try:
        b.start()
        keeper = uid("keeper")
        offline_persistent_subscriber(b, keeper, "full/t")
        live_sub = clients.paho(b, uid("live"))
        live_sub.subscribe("live/t", qos=0)
        live_pub = clients.paho(b, uid("livepub"))
        filler = fill(small_disk, leave=2 * MiB)

        # 100 kB messages until the store cannot take more: PUBACKs stop.
        acked_during = publish_all(b.port, "full/t", 200, size=100_000, window=10, stall=4.0)
        assert len(acked_during) < 200, "the disk never filled"
        line = wait_until(lambda: b.log_lines_with("store: write failed", "no space left"),
                          timeout=10, msg="no disk-full log line")
        assert "QoS 1 acknowledgements paused" in line[0]
        assert len(b.log_lines_with("store: write failed")) == 1, "one line per state change"

        # Connected QoS 0 delivery keeps working meanwhile.
        live_pub.publish("live/t", "still here", qos=0)
        assert live_sub.expect(timeout=5).payload == b"still here"

        # A publisher whose QoS 1 message cannot be made durable gets no PUBACK...
        waiting = RawClient(b.port)
        waiting.connect_ok(uid("waiting"))
        waiting.send(publish_packet("full/t", payload(10_000, 1000), 1, pid=7))
        with pytest.raises(TimeoutError):
            waiting.expect(PUBACK, timeout=2)
        # ...until space is back: then it comes by itself, and the store works again.
        filler.unlink()
        assert waiting.expect(PUBACK, timeout=15).pid == 7
        wait_until(lambda: b.log_lines_with("store: writes succeed again"), timeout=10,
                   msg="no recovery log line")
        waiting.close()
        acked_after = publish_all(b.port, "full/t", 5, size=1000)
        assert len(acked_after) == 5

        # Nothing acknowledged was lost, through a SIGKILL too: the store is intact.
        kill_and_restart(b)
        got = set(drain(b.port, keeper))
        assert acked_during <= got, f"lost {sorted(acked_during - got)[:10]}"
        assert 10_000 in got and {0, 1, 2, 3, 4} <= got
        assert b.log_lines_with("durable store recovered")
    except Exception:
        print(tail(b.log_path, 40))
        raise
    finally:
        b.stop()
