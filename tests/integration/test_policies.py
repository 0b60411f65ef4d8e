"""IoT policies enforced on every action, driven by independent clients (paho, raw sockets)."""

import json

from helpers import uid
from mqttraw import Will, pingreq_packet, publish_packet, subscribe_packet

ARN = "arn:aws:iot:us-east-1:123456789012"

# The seed's myIOTPolicy, plus a denied secret topic, a blocked client-id prefix, and
# `alive/*` so the witness client of other tests can prove the broker still serves.
SEED_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "iot:Connect", "Resource": f"{ARN}:client/*"},
        {"Effect": "Deny", "Action": "iot:Connect", "Resource": f"{ARN}:client/blocked-*"},
        {"Sid": "OwnSensorTopics", "Effect": "Allow", "Action": "iot:Publish",
         "Resource": f"{ARN}:topic/sensors/${{iot:ClientId}}/*"},
        {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": f"{ARN}:topicfilter/sensors/*"},
        {"Effect": "Allow", "Action": "iot:Receive", "Resource": f"{ARN}:topic/sensors/*"},
        {"Sid": "NoSecrets", "Effect": "Deny", "Action": "iot:Receive",
         "Resource": f"{ARN}:topic/sensors/*/secret"},
        {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"], "Resource": f"{ARN}:topic/alive/*"},
        {"Effect": "Allow", "Action": "iot:Subscribe", "Resource": f"{ARN}:topicfilter/alive/*"},
    ],
}


def seed_broker(broker, **overrides):
    document = json.dumps(SEED_POLICY)
    return broker(
        anonymous=["myIOTPolicy"],
        extra_toml=f"[[policies]]\nname = \"myIOTPolicy\"\ndocument = '''{document}'''\n",
        **overrides,
    )


def test_client_can_publish_own_topics_and_subscribe_sensors(broker, clients):
    b = seed_broker(broker)
    monitor = clients.paho(b, uid("mon"))
    assert monitor.subscribe("sensors/#", 1) == [1]
    device_id = uid("dev")
    device = clients.paho(b, device_id)
    device.publish(f"sensors/{device_id}/temp", b"21.5", 1)
    m = monitor.expect(topic=f"sensors/{device_id}/temp")
    assert m.payload == b"21.5"


def test_publish_to_another_clients_topic_closes_the_connection(broker, clients):
    b = seed_broker(broker)
    witness = clients.witness(b)
    device_id = uid("dev")
    raw = clients.raw(b)
    raw.connect_ok(device_id)
    raw.send(publish_packet("sensors/someone-else/temp", b"x", 1, pid=1))
    assert raw.closed_within(5), "a denied PUBLISH must close the connection"
    line = b.wait_log(device_id, ["publish denied"])
    assert "no statement allowed iot:Publish" in line, line
    assert "FORBIDDEN_ACCESS" in line, line
    witness.roundtrip()


def test_denied_receive_is_not_delivered_while_others_are(broker, clients):
    b = seed_broker(broker)
    monitor_id = uid("mon")
    monitor = clients.paho(b, monitor_id)
    monitor.subscribe("sensors/#", 1)
    device_id = uid("dev")
    device = clients.paho(b, device_id)
    device.publish(f"sensors/{device_id}/secret", b"hidden", 1)
    device.publish(f"sensors/{device_id}/temp", b"visible", 1)
    got = monitor.collect_until(f"sensors/{device_id}/temp")
    assert [m.payload for m in got] == [b"visible"], got
    line = b.wait_log(monitor_id, ["iot:Receive denied"])
    assert "NoSecrets" in line, line
    monitor.roundtrip()  # the subscriber stays connected


def test_denied_connect_gets_connack_5_with_reason_logged(broker, clients):
    b = seed_broker(broker)
    client_id = uid("blocked")
    raw = clients.raw(b)
    assert raw.connect(client_id).return_code == 5
    line = b.wait_log(client_id, ["connect refused"])
    assert "explicitly denied by policy" in line, line


def test_denied_subscribe_closes_the_connection(broker, clients):
    b = seed_broker(broker)
    client_id = uid("dev")
    raw = clients.raw(b)
    raw.connect_ok(client_id)
    raw.send(subscribe_packet(1, [("other/#", 0)]))
    assert raw.closed_within(5), "IoT Core closes the connection on a denied SUBSCRIBE"
    line = b.wait_log(client_id, ["subscribe denied"])
    assert "topicfilter/other/#" in line, line


def test_denied_subscribe_gets_suback_failure_when_configured(broker, clients):
    b = seed_broker(broker, subscribe_denied="suback")
    raw = clients.raw(b)
    raw.connect_ok(uid("dev"))
    assert raw.subscribe([("other/#", 0), ("sensors/+/temp", 1)]) == [0x80, 1]
    raw.send(pingreq_packet())
    assert raw.read_packet().name == "PINGRESP"


def test_will_on_a_topic_the_client_may_not_publish_is_refused(broker, clients):
    b = seed_broker(broker)
    client_id = uid("dev")
    raw = clients.raw(b)
    ack = raw.connect(client_id, will=Will("sensors/not-mine/status", b"gone"))
    assert ack.return_code == 5
    b.wait_log(client_id, ["connect refused"])
    allowed = clients.raw(b)
    assert allowed.connect(client_id, will=Will(f"sensors/{client_id}/status", b"gone")).return_code == 0


def test_no_policy_attached_is_a_default_deny(broker, clients):
    b = broker(anonymous=[])
    client_id = uid("c")
    raw = clients.raw(b)
    assert raw.connect(client_id).return_code == 5
    line = b.wait_log(client_id, ["connect refused"])
    assert "0 policies checked" in line, line


def test_unknown_policy_reference_stops_start_up(tmp_path):
    import subprocess

    from conftest import BIN, render_config

    config = tmp_path / "pubsub.toml"
    config.write_text(render_config(tmp_path / "data", {"anonymous": ["nope"]}))
    result = subprocess.run([BIN, "broker", "--config", str(config)], capture_output=True, timeout=10)
    assert result.returncode != 0
    assert b"nope" in result.stderr


def test_test_authorization_explains_the_decision(tmp_path):
    import subprocess

    from conftest import BIN, render_config

    config = tmp_path / "pubsub.toml"
    document = json.dumps(SEED_POLICY)
    config.write_text(render_config(tmp_path / "data", {
        "anonymous": ["myIOTPolicy"],
        "extra_toml": f"[[policies]]\nname = \"myIOTPolicy\"\ndocument = '''{document}'''\n",
    }))

    def ask(*args):
        result = subprocess.run(
            [BIN, "iot", "test-authorization", "--config", str(config), "--principal", "anonymous",
             "--client-id", "dev1", *args], capture_output=True, timeout=10)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)["authResults"][0]

    allowed = ask("--action", "iot:Publish", "--resource", f"{ARN}:topic/sensors/dev1/temp")
    assert allowed["authDecision"] == "ALLOWED"
    assert "OwnSensorTopics" in allowed["reason"]
    implicit = ask("--auth-infos", f"actionType=PUBLISH,resources={ARN}:topic/sensors/dev2/temp")
    assert implicit["authDecision"] == "IMPLICIT_DENY"
    assert "no statement allowed" in implicit["reason"]
    explicit = ask("--action", "iot:Receive", "--resource", f"{ARN}:topic/sensors/dev1/secret")
    assert explicit["authDecision"] == "EXPLICIT_DENY"
    assert explicit["denied"]["explicitDeny"]["policies"][0]["policyName"] == "myIOTPolicy"
    assert "NoSecrets" in explicit["reason"]
