"""paho-mqtt wrapper with synchronous, time-bounded operations, and small utilities."""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass

import paho.mqtt.client as mqtt

DEFAULT_TIMEOUT = 10.0


def uid(prefix: str = "c") -> str:
    """A unique client id / topic component."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class Msg:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool

    def json(self):
        return json.loads(self.payload)


class Inbox:
    """Time-bounded reads of a client's received-message queue (`self.messages`), shared
    by the 3.1.1 and the MQTT 5 paho wrappers."""

    messages: "queue.Queue"
    client_id: str

    def expect(self, timeout: float = DEFAULT_TIMEOUT, topic: str | None = None):
        """The next message (if `topic` is given, skips others until that topic arrives)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                m = self.messages.get(timeout=max(0.0, left))
            except queue.Empty:
                raise AssertionError(
                    f"{self.client_id}: no message{' on ' + topic if topic else ''} within {timeout}s"
                ) from None
            if topic is None or m.topic == topic:
                return m

    def collect_until(self, topic: str, timeout: float = DEFAULT_TIMEOUT) -> list:
        """All messages received up to and including the first one on `topic` (a fence)."""
        deadline = time.monotonic() + timeout
        got = []
        while True:
            left = deadline - time.monotonic()
            try:
                m = self.messages.get(timeout=max(0.0, left))
            except queue.Empty:
                raise AssertionError(
                    f"{self.client_id}: fence {topic!r} not received within {timeout}s; got {got}"
                ) from None
            got.append(m)
            if m.topic == topic:
                return got

    def drain(self, seconds: float) -> list:
        """Everything that arrives within `seconds`."""
        deadline = time.monotonic() + seconds
        got = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return got
            try:
                got.append(self.messages.get(timeout=left))
            except queue.Empty:
                return got


class Paho(Inbox):
    """A paho client run by its own network thread; every call waits (bounded) for its ack."""

    def __init__(self, port: int, client_id: str | None = None, clean_session: bool = True,
                 keepalive: int = 60, will: tuple | None = None, host: str = "127.0.0.1",
                 tls_context=None, transport: str = "tcp", ws_path: str = "/mqtt",
                 ws_headers: dict | None = None, username: str | None = None,
                 password: str | bytes | None = None):
        self.port = port
        self.host = host
        self.client_id = client_id or uid("paho")
        self.keepalive = keepalive
        self.messages: "queue.Queue[Msg]" = queue.Queue()
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._acks: dict[int, threading.Event] = {}
        self._ack_codes: dict[int, list] = {}
        self.connect_rc = None
        self.session_present = None
        self.disconnects: list = []
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                        protocol=mqtt.MQTTv311, clean_session=clean_session,
                        transport=transport)
        if transport == "websockets":
            c.ws_set_options(path=ws_path, headers=ws_headers)
        if username is not None or password is not None:
            c.username_pw_set(username, password)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        c.on_unsubscribe = self._on_unsubscribe
        c.on_disconnect = self._on_disconnect
        if will is not None:
            c.will_set(*will)
        if tls_context is not None:
            c.tls_set_context(tls_context)  # hostname checked against `host`
        self.client = c

    # callbacks (network thread)
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.connect_rc = reason_code
        self.session_present = bool(flags.session_present)
        self._connected.set()

    def _on_message(self, client, userdata, m):
        self.messages.put(Msg(m.topic, bytes(m.payload), m.qos, bool(m.retain), bool(m.dup)))

    def _ack(self, mid, codes):
        with self._lock:
            self._ack_codes[mid] = codes
            ev = self._acks.setdefault(mid, threading.Event())
        ev.set()

    def _on_subscribe(self, client, userdata, mid, reason_code_list, properties):
        self._ack(mid, [rc.value for rc in reason_code_list])

    def _on_unsubscribe(self, client, userdata, mid, reason_code_list, properties):
        self._ack(mid, [])

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.disconnects.append(reason_code)

    def _wait_ack(self, mid: int, what: str, timeout: float) -> list:
        with self._lock:
            ev = self._acks.setdefault(mid, threading.Event())
        assert ev.wait(timeout), f"{self.client_id}: no {what} within {timeout}s"
        return self._ack_codes[mid]

    # operations
    def connect(self, timeout: float = DEFAULT_TIMEOUT) -> "Paho":
        self.client.connect(self.host, self.port, keepalive=self.keepalive)
        self.client.loop_start()
        assert self._connected.wait(timeout), f"{self.client_id}: no CONNACK within {timeout}s"
        assert not self.connect_rc.is_failure, f"{self.client_id}: CONNACK {self.connect_rc}"
        return self

    def subscribe(self, topic, qos: int = 0, timeout: float = DEFAULT_TIMEOUT) -> list:
        """topic: a filter string or a list of (filter, qos). Returns the granted codes."""
        if isinstance(topic, str):
            rc, mid = self.client.subscribe(topic, qos)
        else:
            rc, mid = self.client.subscribe(list(topic))
        assert rc == mqtt.MQTT_ERR_SUCCESS, f"subscribe failed locally: {rc}"
        return self._wait_ack(mid, "SUBACK", timeout)

    def unsubscribe(self, topic, timeout: float = DEFAULT_TIMEOUT) -> None:
        rc, mid = self.client.unsubscribe(topic)
        assert rc == mqtt.MQTT_ERR_SUCCESS, f"unsubscribe failed locally: {rc}"
        self._wait_ack(mid, "UNSUBACK", timeout)

    def publish(self, topic: str, payload: bytes | str = b"", qos: int = 0, retain: bool = False,
                timeout: float = DEFAULT_TIMEOUT) -> None:
        """Publishes and waits until sent (QoS 0) or acknowledged (QoS 1)."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(timeout)
        assert info.is_published(), f"{self.client_id}: publish to {topic!r} not completed in {timeout}s"

    def roundtrip(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Proves the connection and the broker work: subscribe, publish QoS 1, receive."""
        t = f"alive/{uid('t')}"
        self.subscribe(t, 1, timeout)
        payload = uuid.uuid4().bytes
        self.publish(t, payload, 1, timeout=timeout)
        m = self.expect(timeout, topic=t)
        assert m.payload == payload

    def disconnect(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()

    def close(self) -> None:
        try:
            self.client.disconnect()
        except Exception:
            pass
        try:
            self.client.loop_stop()
        except Exception:
            pass


def wait_until(pred, timeout: float = DEFAULT_TIMEOUT, interval: float = 0.05, msg: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(msg or f"condition not met within {timeout}s")
        time.sleep(interval)
