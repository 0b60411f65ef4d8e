"""Malformed or out-of-order input: the broker closes that connection, keeps serving others,
and never crashes."""

import struct

import pytest

from helpers import uid
from mqttraw import (CONNACK, RawClient, connect_packet, packet, pingreq_packet,
                     publish_packet, subscribe_packet)

# name: (send a valid CONNECT first?, bad bytes, CONNACK return codes tolerated in answer)
CASES = {
    "garbage_first_bytes": (False, b"\xff\xff\xff\xff\xff", ()),
    "bad_remaining_length_first": (False, b"\x10\xff\xff\xff\xff\x7f", ()),
    "bad_remaining_length_after_connect": (True, b"\x30\xff\xff\xff\xff\x7f", ()),
    "publish_to_plus_wildcard": (True, publish_packet("a/+", b"x"), ()),
    "publish_to_hash_wildcard": (True, publish_packet("a/#", b"x", qos=1, pid=5), ()),
    "publish_empty_topic": (True, publish_packet("", b"x"), ()),
    "publish_invalid_utf8_topic": (True, publish_packet(b"a/\xff\xfe", b"x"), ()),
    "publish_qos3": (True, b"\x36" + publish_packet("a/b", b"x", qos=1, pid=5)[1:], ()),
    "publish_qos1_packet_id_0": (True, publish_packet("a/b", b"x", qos=1, pid=0), ()),
    "second_connect": (True, connect_packet("second-connect"), ()),
    "pingreq_before_connect": (False, pingreq_packet(), ()),
    "subscribe_before_connect": (False, subscribe_packet(1, [("a/b", 0)]), ()),
    "subscribe_wrong_fixed_header_flags": (True, subscribe_packet(1, [("a/b", 0)], 0x80), ()),
    "subscribe_without_filters": (True, packet(0x82, struct.pack("!H", 1)), ()),
    "reserved_packet_type_15": (True, b"\xf0\x00", ()),
    "connect_reserved_flag_set": (False, connect_packet("rsv", reserved_flag=True), (1, 2)),
    # A 3.1.1-shaped CONNECT claiming level 5 lacks MQTT 5's property length: a malformed
    # MQTT 5 CONNECT, answered in MQTT 5's form (CONNACK 0x81 Malformed Packet).
    "connect_protocol_level_5_without_properties": (False, connect_packet("v5", protocol_level=5), (0x81,)),
    "connect_protocol_level_6": (False, connect_packet("v6", protocol_level=6), (1,)),
    "connect_protocol_name_MQTX": (False, connect_packet("mqtx", protocol_name=b"MQTX"), ()),
}


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_input_closes_connection(broker, clients, name):
    connect_first, bad, tolerated_rcs = CASES[name]
    b = broker()
    w = clients.witness(b)
    r = clients.raw(b)
    if connect_first:
        r.connect_ok(uid(name.replace("_", "-")))
        r.ping()
    before = len(r.received)
    r.send(bad)
    assert r.closed_within(5), f"{name}: connection still open after the bad input"
    answers = r.received[before:]
    for p in answers:
        assert p.type == CONNACK and p.return_code in tolerated_rcs, \
            f"{name}: broker answered {p!r} before closing"
    w.roundtrip()
    b.assert_running()
    # and new connections are still accepted
    r2 = clients.raw(b)
    r2.connect_ok(uid("after"))
    r2.ping()


@pytest.mark.parametrize("where", ["connect", "publish"])
def test_truncated_packet_then_close(broker, clients, where):
    b = broker()
    w = clients.witness(b)
    r = clients.raw(b)
    if where == "connect":
        r.send(connect_packet(uid("trunc"), will=None)[:9])
    else:
        r.connect_ok(uid("trunc"))
        full = publish_packet("a/b", b"x" * 100, qos=1, pid=3)
        r.send(full[:20])
    r.close()
    w.roundtrip()
    b.assert_running()
    r2 = clients.raw(b)
    r2.connect_ok(uid("after"))
    r2.ping()


def test_many_bad_connections_do_not_hurt(broker, clients):
    """A burst of garbage connections, then normal service."""
    b = broker()
    w = clients.witness(b)
    for i in range(20):
        with RawClient(b.port, b.host) as r:
            r.send(bytes([0x10 + i % 3]) + b"\xff" * (i % 7) + b"\x00" * i)
    w.roundtrip()
    b.assert_running()
