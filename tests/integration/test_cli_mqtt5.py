"""`pubsub pub --mqtt5` / `pubsub sub --mqtt5 -v` against the broker: MQTT 5 properties
out of the CLI, into it, and through independent MQTT 5 clients (paho-mqtt, mosquitto_sub)."""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading

import pytest

from conftest import BIN
from helpers import uid
from paho5 import Paho5, PacketTypes, props

SUBSCRIBED = "$aws/events/subscriptions/subscribed/"
T = 10


def _need_bin():
    if not os.path.exists(BIN):
        pytest.fail(f"pubsub binary not found: {BIN} (cargo build -p pubsub-cli)")


def pub(b, *args, timeout=T):
    _need_bin()
    r = subprocess.run([BIN, "pub", "--plain", "--endpoint", "127.0.0.1", "--port", str(b.port),
                        "--mqtt5", *args], capture_output=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


class Lines:
    """A subprocess whose stdout lines are read by a thread (readline with a timeout)."""

    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL)
        self.lines: "queue.Queue[str]" = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for raw in self.proc.stdout:
            self.lines.put(raw.decode(errors="replace").rstrip("\n"))

    def line(self, timeout=T) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            err = b""
            if self.proc.poll() is not None:
                err = self.proc.stderr.read()
            raise AssertionError(f"no output line within {timeout}s; stderr: {err!r}") from None

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)


def wait_subscribed(observer: Paho5, client_id: str):
    """The broker's subscription lifecycle event: the client's SUBSCRIBE was processed."""
    m = observer.expect(T, topic=SUBSCRIBED + client_id)
    assert client_id in m.payload.decode()


@pytest.fixture
def observer_for(broker):
    made = []

    def make(b):
        o = Paho5(b.port, uid("obs")).connect()
        o.subscribe(SUBSCRIBED + "#", 1)
        made.append(o)
        return o

    yield make
    for o in made:
        o.close()


def test_cli_sub_prints_mqtt5_properties_from_cli_pub(broker, observer_for):
    b = broker()
    obs = observer_for(b)
    _need_bin()
    cid = uid("cli5sub")
    sub = Lines([BIN, "sub", "--plain", "--endpoint", "127.0.0.1", "--port", str(b.port),
                 "--mqtt5", "--client-id", cid, "-v", "-q", "1", "-C", "2", "-t", "cli5/#"])
    try:
        wait_subscribed(obs, cid)
        rc, _, err = pub(b, "-q", "1", "-t", "cli5/a", "-m", "hello",
                         "--user-property", "b=2", "--user-property", "a=1",
                         "--user-property", "b=3", "--content-type", "text/plain",
                         "--response-topic", "cli5/reply", "--correlation-data", "req-7",
                         "--message-expiry", "60", "--payload-format-utf8")
        assert rc == 0, err
        line = sub.line()
        head, _, properties = line.partition(" | ")
        assert head == "cli5/a hello", line
        fields = properties.split(" ")
        expiry = [f for f in fields if f.startswith("message-expiry=")]
        assert len(expiry) == 1 and 50 <= int(expiry[0].split("=")[1]) <= 60, line
        # A stable order: the named properties alphabetically, then user properties as sent.
        assert [f for f in fields if not f.startswith("message-expiry=")] == [
            "content-type=text/plain", "correlation-data=req-7", "payload-format=utf8",
            "response-topic=cli5/reply",
            "user-property:b=2", "user-property:a=1", "user-property:b=3",
        ], line
        # Without properties: no separator.
        rc, _, err = pub(b, "-t", "cli5/b", "-m", "plain")
        assert rc == 0, err
        assert sub.line() == "cli5/b plain"
        assert sub.proc.wait(T) == 0
    finally:
        sub.close()


def test_cli_pub_properties_reach_paho(broker):
    b = broker()
    p = Paho5(b.port, uid("paho5")).connect()
    try:
        p.subscribe("cli5/paho", 1)
        rc, _, err = pub(b, "-q", "1", "-t", "cli5/paho", "-m", '{"x":1}',
                         "--user-property", "a=1", "--user-property", "k=v=w",
                         "--content-type", "application/json",
                         "--response-topic", "cli5/paho/reply",
                         "--correlation-data", "corr-1", "--message-expiry", "30")
        assert rc == 0, err
        m = p.expect(T, topic="cli5/paho")
        assert json.loads(m.payload) == {"x": 1}
        assert m.user_properties == [("a", "1"), ("k", "v=w")]
        assert m.prop("ContentType") == "application/json"
        assert m.prop("ResponseTopic") == "cli5/paho/reply"
        assert m.prop("CorrelationData") == b"corr-1"
        assert 20 <= m.prop("MessageExpiryInterval") <= 30
    finally:
        p.close()


def test_cli_sub_prints_properties_from_paho(broker, observer_for):
    b = broker()
    obs = observer_for(b)
    _need_bin()
    cid = uid("cli5sub")
    sub = Lines([BIN, "sub", "--plain", "--endpoint", "127.0.0.1", "--port", str(b.port),
                 "--mqtt5", "--client-id", cid, "-v", "-C", "1", "-t", "cli5/from-paho"])
    p = Paho5(b.port, uid("paho5")).connect()
    try:
        wait_subscribed(obs, cid)
        p.publish("cli5/from-paho", b"hi", 1, properties=props(
            PacketTypes.PUBLISH, UserProperty=[("x", "has space"), ("y", "2")],
            CorrelationData=b"\x00\x01", ContentType="a/b"))
        assert sub.line() == ('cli5/from-paho hi | content-type=a/b correlation-data=0x0001 '
                              'user-property:x="has space" user-property:y=2')
    finally:
        p.close()
        sub.close()


def test_cli_pub_properties_reach_mosquitto_sub(broker, observer_for):
    if shutil.which("mosquitto_sub") is None:
        pytest.skip("mosquitto_sub not installed")
    b = broker()
    obs = observer_for(b)
    cid = uid("mosqsub")
    sub = Lines(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(b.port), "-V", "mqttv5",
                 "-i", cid, "-q", "1", "-C", "1", "-W", str(T), "-t", "cli5/mosq",
                 "-F", "%t|%p|%P|%C|%R|%D"])
    try:
        wait_subscribed(obs, cid)
        rc, _, err = pub(b, "-q", "1", "-t", "cli5/mosq", "-m", "m1",
                         "--user-property", "a=1", "--user-property", "b=2",
                         "--content-type", "text/plain", "--response-topic", "cli5/r",
                         "--correlation-data", "c-1")
        assert rc == 0, err
        assert sub.line() == "cli5/mosq|m1|a:1 b:2|text/plain|cli5/r|c-1"
    finally:
        sub.close()


POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"},
        {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
         "Resource": "arn:aws:iot:us-east-1:123456789012:topic/ok/*"},
        {"Effect": "Allow", "Action": "iot:Subscribe",
         "Resource": "arn:aws:iot:us-east-1:123456789012:topicfilter/ok/*"},
    ],
}


def test_cli_mqtt5_refusals_name_the_reason_code(broker):
    b = broker(anonymous=["cli5-test"],
               extra_toml=f"[[policies]]\nname = \"cli5-test\"\ndocument = '''{json.dumps(POLICY)}'''\n")
    rc, _, err = pub(b, "-q", "1", "-t", "ok/x", "-m", "fine")
    assert rc == 0, err
    rc, _, err = pub(b, "-q", "1", "-t", "denied/x", "-m", "nope")
    assert rc == 1
    assert "0x87 Not authorized" in err, err
    _need_bin()
    r = subprocess.run([BIN, "sub", "--plain", "--endpoint", "127.0.0.1", "--port", str(b.port),
                        "--mqtt5", "-t", "denied/#", "-C", "1"], capture_output=True, timeout=T,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 1
    assert "0x87 Not authorized" in r.stderr.decode(), r.stderr


def test_property_flags_need_mqtt5(tmp_path):
    _need_bin()
    r = subprocess.run([BIN, "pub", "--plain", "-t", "x", "-m", "y", "--user-property", "a=1"],
                       capture_output=True, timeout=T, stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert r.returncode != 0
    assert "--mqtt5" in r.stderr.decode(), r.stderr
