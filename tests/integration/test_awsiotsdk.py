"""The official AWS IoT Device SDK v2 for Python (awsiotsdk, AWS CRT) against the broker:
endpoint, port and CA overridden, nothing else changed.

Tests on port 443 (the CRT sets ALPN x-amzn-mqtt-ca only there) bind 127.0.0.1:443, so
they need root and run serially (pytest runs this suite in one process)."""

import json
import socket
import subprocess
import threading

import pytest

from conftest import BIN
from helpers import uid

awscrt = pytest.importorskip("awscrt")
from awscrt import mqtt  # noqa: E402
from awsiot import mqtt_connection_builder  # noqa: E402

TIMEOUT = 10


def port_443_free() -> bool:
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 443))
        return True
    except OSError:
        return False
    finally:
        s.close()


def device_certificate(b, tmp_path):
    """A device certificate made with our CLI, with dev-allow-all attached."""
    cert, key = tmp_path / "device.pem", tmp_path / "device.key"
    out = subprocess.run(
        [BIN, "iot", "create-keys-and-certificate", "--data-dir", str(b.data_dir), "--set-as-active",
         "--certificate-pem-outfile", str(cert), "--private-key-outfile", str(key)],
        capture_output=True, timeout=20, check=True)
    arn = json.loads(out.stdout)["certificateArn"]
    subprocess.run([BIN, "iot", "attach-policy", "--data-dir", str(b.data_dir), "--policy-name",
                    "dev-allow-all", "--target", arn], capture_output=True, timeout=20, check=True)
    return str(cert), str(key)


def round_trip(connection):
    """Connect, subscribe, publish QoS 1, receive it, disconnect."""
    connection.connect().result(TIMEOUT)
    topic = f"crt/{uid('t')}"
    got = threading.Event()
    received = {}

    def on_message(topic, payload, **kwargs):
        received["payload"] = payload
        got.set()

    subscribe, _ = connection.subscribe(topic=topic, qos=mqtt.QoS.AT_LEAST_ONCE, callback=on_message)
    assert subscribe.result(TIMEOUT)["qos"] == mqtt.QoS.AT_LEAST_ONCE
    publish, _ = connection.publish(topic=topic, payload=b"from the CRT", qos=mqtt.QoS.AT_LEAST_ONCE)
    publish.result(TIMEOUT)
    assert got.wait(TIMEOUT), "the CRT client did not receive its own message"
    assert received["payload"] == b"from the CRT"
    connection.disconnect().result(TIMEOUT)


def test_crt_mtls_on_mqtts(broker, tmp_path):
    b = broker(listeners={"mqtts": "127.0.0.1:0"})
    cert, key = device_certificate(b, tmp_path)
    connection = mqtt_connection_builder.mtls_from_path(
        endpoint="localhost", port=b.mqtts_port, cert_filepath=cert, pri_key_filepath=key,
        ca_filepath=str(b.ca_file), client_id=uid("crt-mtls"), clean_session=True, keep_alive_secs=30)
    round_trip(connection)
    b.wait_log("crt-mtls", ["client connected"])


@pytest.mark.skipif(not port_443_free(), reason="127.0.0.1:443 is not free (or not root)")
def test_crt_alpn_on_443(broker, tmp_path):
    b = broker(listeners={"tls": "127.0.0.1:443"})
    cert, key = device_certificate(b, tmp_path)
    connection = mqtt_connection_builder.mtls_from_path(
        endpoint="localhost", port=443, cert_filepath=cert, pri_key_filepath=key,
        ca_filepath=str(b.ca_file), client_id=uid("crt-alpn"), clean_session=True, keep_alive_secs=30)
    round_trip(connection)
    b.wait_log("crt-alpn", ["client connected"])


def test_crt_without_registered_certificate_is_refused(broker, tmp_path):
    b = broker(listeners={"mqtts": "127.0.0.1:0"})
    cert, key = device_certificate(b, tmp_path)
    certificate_id = json.loads(subprocess.run(
        [BIN, "iot", "list-certificates", "--data-dir", str(b.data_dir)],
        capture_output=True, timeout=20, check=True).stdout)["certificates"][0]["certificateId"]
    subprocess.run([BIN, "iot", "update-certificate", "--data-dir", str(b.data_dir), "--certificate-id",
                    certificate_id, "--new-status", "REVOKED"], check=True, timeout=20)
    connection = mqtt_connection_builder.mtls_from_path(
        endpoint="localhost", port=b.mqtts_port, cert_filepath=cert, pri_key_filepath=key,
        ca_filepath=str(b.ca_file), client_id=uid("crt-revoked"), clean_session=True, keep_alive_secs=30)
    with pytest.raises(Exception):
        connection.connect().result(TIMEOUT)
    b.wait_log(certificate_id, ["REVOKED"])
