"""paho-mqtt as an MQTT 5 client, with synchronous, time-bounded operations (the MQTT 5
counterpart of helpers.Paho): CONNACK / PUBACK / SUBACK / UNSUBACK reason codes and
properties are kept, received messages keep their properties."""

from __future__ import annotations

import queue
import threading
import time
import uuid
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from helpers import Inbox, uid

DEFAULT_TIMEOUT = 10.0


def props(packet_type: int, **kw) -> Properties:
    """paho Properties for `packet_type` (PacketTypes.PUBLISH, .CONNECT, .WILLMESSAGE, ...)
    from paho property names: props(PacketTypes.PUBLISH, UserProperty=[("a", "1")])."""
    p = Properties(packet_type)
    for k, v in kw.items():
        setattr(p, k, v)
    return p


def prop(p: Properties | None, name: str, default=None):
    if p is None:
        return default
    return getattr(p, name, default)


@dataclass
class Msg5:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    properties: Properties | None

    def prop(self, name: str, default=None):
        return prop(self.properties, name, default)

    @property
    def user_properties(self) -> list[tuple[str, str]]:
        return list(self.prop("UserProperty", []))

    def __repr__(self) -> str:
        return (f"Msg5(topic={self.topic!r}, payload={self.payload[:40]!r}, qos={self.qos}, "
                f"retain={self.retain}, props={self.properties})")


class Paho5(Inbox):
    """A paho MQTT 5 client run by its own network thread; every call waits (bounded)."""

    def __init__(self, port: int, client_id: str | None = None, host: str = "127.0.0.1",
                 clean_start: bool = True, keepalive: int = 60,
                 connect_properties: Properties | None = None, will: tuple | None = None,
                 tls_context=None, transport: str = "tcp", ws_path: str = "/mqtt",
                 ws_headers: dict | None = None, username: str | None = None,
                 password: str | bytes | None = None):
        """will: (topic, payload, qos, retain[, Properties(PacketTypes.WILLMESSAGE)])."""
        self.port, self.host = port, host
        self.client_id = client_id if client_id is not None else uid("p5")
        self.clean_start = clean_start
        self.keepalive = keepalive
        self.connect_properties = connect_properties
        self.messages: "queue.Queue[Msg5]" = queue.Queue()
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._acks: dict[int, threading.Event] = {}
        self._ack_data: dict[int, tuple] = {}
        self.connack_rc = None
        self.connack_properties: Properties | None = None
        self.session_present = None
        self.disconnects: list[tuple[int, Properties | None]] = []
        self._disconnected = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                        protocol=mqtt.MQTTv5, transport=transport)
        if transport == "websockets":
            c.ws_set_options(path=ws_path, headers=ws_headers)
        if username is not None or password is not None:
            c.username_pw_set(username, password)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_subscribe = self._on_subscribe
        c.on_unsubscribe = self._on_unsubscribe
        c.on_publish = self._on_publish
        c.on_disconnect = self._on_disconnect
        if will is not None:
            c.will_set(*will)
        if tls_context is not None:
            c.tls_set_context(tls_context)
        self.client = c

    # callbacks (network thread)
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.connack_rc = reason_code
        self.connack_properties = properties
        self.session_present = bool(flags.session_present)
        self._connected.set()

    def _on_message(self, client, userdata, m):
        self.messages.put(Msg5(m.topic, bytes(m.payload), m.qos, bool(m.retain), bool(m.dup),
                               getattr(m, "properties", None)))

    def _ack(self, mid, data):
        with self._lock:
            self._ack_data[mid] = data
            ev = self._acks.setdefault(mid, threading.Event())
        ev.set()

    def _on_subscribe(self, client, userdata, mid, reason_code_list, properties):
        self._ack(mid, ([rc.value for rc in reason_code_list], properties))

    def _on_unsubscribe(self, client, userdata, mid, reason_code_list, properties):
        self._ack(mid, ([rc.value for rc in reason_code_list], properties))

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        self._ack(mid, (reason_code.value if reason_code is not None else None, properties))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.disconnects.append((reason_code.value if reason_code is not None else None, properties))
        self._disconnected.set()

    def _wait_ack(self, mid: int, what: str, timeout: float):
        with self._lock:
            ev = self._acks.setdefault(mid, threading.Event())
        assert ev.wait(timeout), f"{self.client_id}: no {what} within {timeout}s"
        return self._ack_data[mid]

    # operations
    def connect_ack(self, timeout: float = DEFAULT_TIMEOUT):
        """Connects and returns the CONNACK reason code (int), whatever it is."""
        self.client.connect(self.host, self.port, keepalive=self.keepalive,
                            clean_start=self.clean_start, properties=self.connect_properties)
        self.client.loop_start()
        assert self._connected.wait(timeout), f"{self.client_id}: no CONNACK within {timeout}s"
        return self.connack_rc.value

    def connect(self, timeout: float = DEFAULT_TIMEOUT) -> "Paho5":
        rc = self.connect_ack(timeout)
        assert rc == 0, f"{self.client_id}: CONNACK {self.connack_rc} ({rc:#x})"
        return self

    def connack_prop(self, name: str, default=None):
        return prop(self.connack_properties, name, default)

    def subscribe_ack(self, topic, qos: int = 1, properties: Properties | None = None,
                      timeout: float = DEFAULT_TIMEOUT, **options) -> tuple[list[int], Properties]:
        """topic: a filter (with `qos` and SubscribeOptions keywords noLocal=...,
        retainAsPublished=..., retainHandling=...) or a list of (filter, SubscribeOptions)."""
        if isinstance(topic, str):
            topic = [(topic, SubscribeOptions(qos=qos, **options))]
        rc, mid = self.client.subscribe(list(topic), properties=properties)
        assert rc == mqtt.MQTT_ERR_SUCCESS, f"subscribe failed locally: {rc}"
        return self._wait_ack(mid, "SUBACK", timeout)

    def subscribe(self, topic, qos: int = 1, properties=None, timeout: float = DEFAULT_TIMEOUT,
                  **options) -> list[int]:
        return self.subscribe_ack(topic, qos, properties, timeout, **options)[0]

    def unsubscribe(self, topic, properties=None, timeout: float = DEFAULT_TIMEOUT) -> list[int]:
        rc, mid = self.client.unsubscribe(topic, properties=properties)
        assert rc == mqtt.MQTT_ERR_SUCCESS, f"unsubscribe failed locally: {rc}"
        return self._wait_ack(mid, "UNSUBACK", timeout)[0]

    def publish_ack(self, topic: str, payload: bytes | str = b"", qos: int = 0, retain: bool = False,
                    properties: Properties | None = None, timeout: float = DEFAULT_TIMEOUT):
        """Publishes; returns (PUBACK reason code, PUBACK properties) for QoS 1, or
        (None, None) once a QoS 0 publish is written."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if qos == 0:
            info.wait_for_publish(timeout)
            assert info.is_published(), f"{self.client_id}: QoS 0 publish not sent in {timeout}s"
            return None, None
        return self._wait_ack(info.mid, "PUBACK", timeout)

    def publish(self, topic: str, payload: bytes | str = b"", qos: int = 0, retain: bool = False,
                properties: Properties | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Publishes; for QoS 1 asserts a success PUBACK (0x00, or 0x10 No matching
        subscribers)."""
        code, _ = self.publish_ack(topic, payload, qos, retain, properties, timeout)
        if qos == 1:
            assert code in (0x00, 0x10), f"{self.client_id}: PUBACK reason {code:#x} for {topic!r}"

    def roundtrip(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        t = f"alive/{uid('t')}"
        assert self.subscribe(t, 1, timeout=timeout) == [1]
        payload = uuid.uuid4().bytes
        self.publish(t, payload, 1, timeout=timeout)
        assert self.expect(timeout, topic=t).payload == payload

    def wait_disconnected(self, timeout: float = DEFAULT_TIMEOUT):
        """(reason code, properties) of the first disconnect paho reported."""
        assert self._disconnected.wait(timeout), f"{self.client_id}: still connected after {timeout}s"
        return self.disconnects[0]

    def disconnect(self, reason: int = 0, properties: Properties | None = None) -> None:
        try:
            from paho.mqtt.reasoncodes import ReasonCode
            self.client.disconnect(ReasonCode(PacketTypes.DISCONNECT, identifier=reason),
                                   properties=properties)
        finally:
            self._disconnected.wait(5)
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
