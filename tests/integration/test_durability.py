"""Durability: what the broker acknowledged survives SIGKILL (in_memory = false)."""

import subprocess
import time

import pytest

from conftest import BIN
from helpers import uid
from mqttraw import PUBACK, PUBLISH, RawClient, publish_packet, puback_packet, subscribe_packet

DURABLE = {"in_memory": False, "session_expiry": "1h"}


def kill_and_restart(b):
    b.proc.kill()
    b.proc.wait(5)
    b._log.close()
    b.start()


def offline_persistent_subscriber(b, client_id, topic_filter):
    sub = RawClient(b.port)
    sub.connect_ok(client_id, clean_session=False)
    assert sub.subscribe([(topic_filter, 1)]) == [1]
    sub.send(b"\xe0\x00")  # DISCONNECT
    sub.close()


def stream_until_killed(b, topic, kill_after):
    """Publishes QoS 1 messages `m<n>` (a window of 20 in flight) until `kill_after` have
    been acknowledged, keeps sending, then SIGKILLs the broker mid-stream. Returns the set
    of message numbers the broker PUBACKed."""
    pub = RawClient(b.port)
    pub.connect_ok(uid("pub"))
    acked, in_flight, n = set(), {}, 0

    def send_one():
        nonlocal n
        n += 1
        pid = n % 65535 + 1
        in_flight[pid] = n
        pub.send(publish_packet(topic, f"m{n}".encode(), 1, pid=pid))

    def read_acks(timeout):
        while True:
            try:
                p = pub.read_packet(timeout=timeout)
            except TimeoutError:
                return
            if p is None:
                return
            if p.type == PUBACK:
                acked.add(in_flight.pop(p.pid))

    deadline = time.monotonic() + 30
    while len(acked) < kill_after and time.monotonic() < deadline:
        while len(in_flight) < 20:
            send_one()
        read_acks(0.02)
    assert len(acked) >= kill_after, f"only {len(acked)} PUBACKs in 30 s"
    for _ in range(20):
        send_one()
    read_acks(0.001)
    b.proc.kill()
    read_acks(0.5)  # PUBACKs already on the wire before the kill count too
    pub.close()
    return acked


def drain_session(b, client_id):
    """Reconnects the persistent session and returns the message numbers it gets."""
    sub = RawClient(b.port)
    ack = sub.connect(client_id, clean_session=False)
    assert ack.return_code == 0 and ack.session_present, "the persistent session is gone"
    got = set()
    while True:
        try:
            p = sub.read_packet(timeout=2)
        except TimeoutError:
            break
        if p is None:
            break
        if p.type == PUBLISH:
            got.add(int(p.payload[1:]))
            if p.pid:
                sub.send(puback_packet(p.pid))
    sub.close()
    return got


@pytest.mark.parametrize("kill_after", [1, 150, 1500])
def test_every_acknowledged_message_survives_sigkill(broker, kill_after):
    b = broker(**DURABLE)
    client_id = uid("durable-sub")
    offline_persistent_subscriber(b, client_id, "d/#")
    acked = stream_until_killed(b, "d/x", kill_after)
    b.proc.wait(5)
    b._log.close()
    b.start()
    got = drain_session(b, client_id)
    lost = sorted(acked - got)
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged messages lost, e.g. {lost[:10]}"


def test_retained_messages_survive_sigkill(broker):
    b = broker(**DURABLE)
    pub = RawClient(b.port)
    pub.connect_ok(uid("pub"))
    pub.send(publish_packet("r/kept", b"kept", 1, retain=True, pid=1))
    pub.expect(PUBACK)
    pub.send(publish_packet("r/deleted", b"soon gone", 1, retain=True, pid=2))
    pub.expect(PUBACK)
    pub.send(publish_packet("r/deleted", b"", 1, retain=True, pid=3))
    pub.expect(PUBACK)
    kill_and_restart(b)
    sub = RawClient(b.port)
    sub.connect_ok(uid("sub"))
    sub.send(subscribe_packet(1, [("r/kept", 1), ("r/deleted", 1)]))
    packets = []
    while True:
        try:
            p = sub.read_packet(timeout=1)
        except TimeoutError:
            break
        if p is None:
            break
        packets.append(p)
    publishes = [(p.topic, p.payload, p.retain) for p in packets if p.type == PUBLISH]
    assert publishes == [("r/kept", b"kept", True)], publishes


def test_persistent_session_subscriptions_survive_sigkill(broker):
    """The subscription made before the kill still routes messages published after it."""
    b = broker(**DURABLE)
    client_id = uid("sess")
    offline_persistent_subscriber(b, client_id, "s/+")
    kill_and_restart(b)
    pub = RawClient(b.port)
    pub.connect_ok(uid("pub"))
    pub.send(publish_packet("s/after-restart", b"m7", 1, pid=1))
    pub.expect(PUBACK)
    assert drain_session(b, client_id) == {7}


def test_registry_survives_sigkill(broker, tmp_path):
    """A certificate created while the broker runs still connects after a SIGKILL."""
    import json
    import ssl
    import socket

    b = broker(listeners={"mqtts": "127.0.0.1:0"}, **DURABLE)
    cert, key = tmp_path / "d.pem", tmp_path / "d.key"
    out = subprocess.run(
        [BIN, "iot", "create-keys-and-certificate", "--data-dir", str(b.data_dir), "--set-as-active",
         "--certificate-pem-outfile", str(cert), "--private-key-outfile", str(key)],
        capture_output=True, timeout=20, check=True)
    arn = json.loads(out.stdout)["certificateArn"]
    subprocess.run([BIN, "iot", "attach-policy", "--data-dir", str(b.data_dir), "--policy-name",
                    "dev-allow-all", "--target", arn], check=True, timeout=20)
    kill_and_restart(b)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(b.ca_file))
    ctx.load_cert_chain(str(cert), str(key))
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", b.mqtts_port), timeout=5),
                         server_hostname="localhost") as s:
        cid = b"after-kill"
        body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid
        s.sendall(bytes([0x10, len(body)]) + body)
        assert s.recv(4) == b"\x20\x02\x00\x00"


def test_acknowledged_messages_are_fsynced_in_groups(broker, tmp_path):
    """Durable means fsync'd, not in the page cache: under strace, the broker makes
    fsync/fdatasync calls while it acknowledges a QoS 1 stream to an offline persistent
    session, and far fewer of them than messages (group commit)."""
    import shutil

    if shutil.which("strace") is None:
        pytest.skip("strace not installed")
    b = broker(**DURABLE)
    client_id = uid("fsync-sub")
    offline_persistent_subscriber(b, client_id, "f/#")
    pid = b.proc.pid
    trace = tmp_path / "trace.txt"
    tracer = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=fsync,fdatasync", "-o",
                               str(trace), "-p", str(pid)], stderr=subprocess.PIPE)
    time.sleep(1.0)
    if tracer.poll() is not None:
        pytest.skip(f"strace cannot attach here: {tracer.stderr.read().decode(errors='replace')}")
    pub = RawClient(b.port)
    pub.connect_ok(uid("pub"))
    total = 2000
    window, next_id, acked = 50, 1, 0
    while acked < total:
        while next_id <= total and next_id - acked <= window:
            pub.send(publish_packet("f/x", f"m{next_id}".encode(), 1, pid=next_id % 65535 + 1))
            next_id += 1
        if pub.expect(PUBACK).type == PUBACK:
            acked += 1
    pub.close()
    time.sleep(0.5)
    tracer.terminate()
    tracer.wait(5)
    syncs = [line for line in trace.read_text().splitlines() if "fsync(" in line or "fdatasync(" in line]
    assert syncs, "no fsync/fdatasync while acknowledging durable QoS 1 messages"
    assert len(syncs) < total / 4, f"{len(syncs)} syncs for {total} messages: not grouped"
    assert drain_session(b, client_id) == set(range(1, total + 1))


def test_mqtt5_session_and_message_properties_survive_sigkill(broker):
    """An MQTT 5 persistent session (Session Expiry Interval 600) and a QoS 1 message
    queued for it with properties survive SIGKILL: after the restart the session resumes
    (session_present 1) and the message arrives with its user properties in order, its
    content type and correlation data, and a Message Expiry Interval counted down. A 3.1.1
    reconnect would not resume it (IoT Core resumes no session across versions)."""
    import mqtt5raw as m5

    b = broker(**DURABLE)
    client_id = uid("v5-durable")
    sub = m5.Raw5Client(b.port)
    sub.connect_ok(client_id, clean_start=False, props={m5.SESSION_EXPIRY_INTERVAL: 600})
    assert sub.subscribe("v5d/#", qos=1) == [1]
    sub.disconnect()
    sub.close()
    pub = m5.Raw5Client(b.port)
    pub.connect_ok(uid("v5-pub"))
    props = [(m5.USER_PROPERTY, ("b", "2")), (m5.USER_PROPERTY, ("a", "1")),
             (m5.CONTENT_TYPE, "application/json"), (m5.CORRELATION_DATA, b"\x00req-7"),
             (m5.MESSAGE_EXPIRY_INTERVAL, 600)]
    ack = pub.publish("v5d/x", b'{"n": 7}', qos=1, props=props)
    assert ack.reason == 0, ack
    pub.close()
    kill_and_restart(b)
    again = m5.Raw5Client(b.port)
    connack = again.connect_ok(client_id, clean_start=False,
                               props={m5.SESSION_EXPIRY_INTERVAL: 600})
    assert connack.session_present, connack
    message = again.next_publish()
    assert (message.topic, message.payload, message.qos) == ("v5d/x", b'{"n": 7}', 1)
    assert message.props.user_properties == [("b", "2"), ("a", "1")], message
    assert message.props.get(m5.CONTENT_TYPE) == "application/json"
    assert message.props.get(m5.CORRELATION_DATA) == b"\x00req-7"
    assert 0 < message.props.get(m5.MESSAGE_EXPIRY_INTERVAL) <= 600
    again.puback(message.pid)
    again.close()
