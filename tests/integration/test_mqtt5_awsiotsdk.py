"""The official AWS IoT Device SDK v2 MQTT 5 client (awscrt.mqtt5.Client, built with
awsiot.mqtt5_client_builder) against the broker on every listener: mTLS on mqtts, mTLS with
ALPN x-amzn-mqtt-ca on the tls port, WebSocket with SigV4, custom authorizer direct (ALPN
mqtt) and over WebSocket, plain TCP. Each connects, checks the CONNACK (the
/work/shared/IOT-FACTS-MQTT5-SHADOW.md §2.5 sample, §5 item 1), subscribes, publishes with
MQTT 5 properties, receives them unchanged (item 7), unsubscribes and stops. Then: session
rejoin (item 3), server-sent DISCONNECT 0x8E (item 14), and a refused CONNECT's reason code
(item 11).

Only endpoint, port and CA are changed from what one does against AWS (and the ALPN list
for the non-443 tls port, which the builder sets only on 443). One broker (module scope)
serves the tests except the port-443 one."""

from __future__ import annotations

import json
import queue
import socket
import subprocess
import urllib.parse
import uuid
from concurrent.futures import Future

import pytest

from authfn import AuthorizerFunction, TokenSigner, authorizer_toml, credentials_toml
from conftest import BIN, Broker
from helpers import uid
from paho5 import Paho5, PacketTypes, props

awscrt = pytest.importorskip("awscrt")
import awscrt.auth  # noqa: E402
import awscrt.io  # noqa: E402
from awscrt import mqtt5  # noqa: E402
from awsiot import mqtt5_client_builder  # noqa: E402

T = 10
AKID, SECRET = "AKIAMQTT5SDKTEST0001", "mqtt5SdkSecretKey/abcdefghijklmnopqrstu"
TOKEN_KEY = "mytoken"
USER_PROPS = [("a", "1"), ("b", "2"), ("a", "3")]


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


# -- fixtures --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def signer(tmp_path_factory) -> TokenSigner:
    return TokenSigner(tmp_path_factory.mktemp("mqtt5-authorizer-keys"))


@pytest.fixture(scope="module")
def authfn():
    fn = AuthorizerFunction()
    yield fn
    fn.close()


def device_certificate(b, directory):
    """A device certificate made with our CLI, active, with dev-allow-all attached."""
    cert, key = directory / f"device-{uuid.uuid4().hex[:6]}.pem", directory / "device.key"
    out = subprocess.run(
        [BIN, "iot", "create-keys-and-certificate", "--data-dir", str(b.data_dir), "--set-as-active",
         "--certificate-pem-outfile", str(cert), "--private-key-outfile", str(key)],
        capture_output=True, timeout=20, check=True)
    arn = json.loads(out.stdout)["certificateArn"]
    subprocess.run([BIN, "iot", "attach-policy", "--data-dir", str(b.data_dir), "--policy-name",
                    "dev-allow-all", "--target", arn], capture_output=True, timeout=20, check=True)
    return str(cert), str(key)


@pytest.fixture(scope="module")
def _sdk_broker(tmp_path_factory, authfn, signer):
    d = tmp_path_factory.mktemp("mqtt5-sdk")
    principal = f"us-east-1:{uuid.uuid4()}"
    b = Broker(d, {
        "listeners": {"mqtts": "127.0.0.1:0", "tls": "127.0.0.1:0", "ws": "127.0.0.1:0"},
        "extra_toml": authorizer_toml("Auth", authfn.url, signer.public_path)
        + credentials_toml(AKID, SECRET, principal),
    })
    b.start()
    b.cert, b.key = device_certificate(b, d)
    b.sigv4_principal = principal
    yield b
    b.stop()


@pytest.fixture
def sb(_sdk_broker, request):
    request.node._brokers = [_sdk_broker]
    _sdk_broker.assert_running()
    return _sdk_broker


class Events:
    """The client's callbacks, as futures and queues."""

    def __init__(self):
        self.connected: Future = Future()
        self.failures: "queue.Queue" = queue.Queue()
        self.stopped: Future = Future()
        self.received: "queue.Queue[mqtt5.PublishPacket]" = queue.Queue()
        self.disconnections: "queue.Queue" = queue.Queue()

    def _success(self, d):
        if not self.connected.done():
            self.connected.set_result((d.connack_packet, d.negotiated_settings))

    def _failure(self, d):
        self.failures.put(d)

    def _stopped(self, d):
        if not self.stopped.done():
            self.stopped.set_result(True)

    def _publish(self, d):
        self.received.put(d.publish_packet)

    def _disconnection(self, d):
        self.disconnections.put(d)

    def builder_kw(self) -> dict:
        return dict(on_publish_received=self._publish, on_lifecycle_connection_success=self._success,
                    on_lifecycle_connection_failure=self._failure, on_lifecycle_stopped=self._stopped,
                    on_lifecycle_disconnection=self._disconnection)

    def options_kw(self) -> dict:
        return dict(on_publish_callback_fn=self._publish,
                    on_lifecycle_event_connection_success_fn=self._success,
                    on_lifecycle_event_connection_failure_fn=self._failure,
                    on_lifecycle_event_stopped_fn=self._stopped,
                    on_lifecycle_event_disconnection_fn=self._disconnection)

    def connack(self, timeout: float = T):
        try:
            return self.connected.result(timeout)
        except Exception:
            fails = []
            while not self.failures.empty():
                f = self.failures.get()
                fails.append((f.exception, f.connack_packet))
            raise AssertionError(f"the CRT client did not connect within {timeout}s; failures: {fails}")

    def next_publish(self, timeout: float = T) -> mqtt5.PublishPacket:
        try:
            return self.received.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the CRT client received nothing within {timeout}s") from None


@pytest.fixture
def crt5():
    """Tracks started CRT clients; stops them at teardown."""
    started = []

    def track(client, ev):
        started.append((client, ev))
        client.start()
        return client

    yield track
    for client, ev in started:
        try:
            client.stop()
            ev.stopped.result(5)
        except Exception:
            pass


@pytest.fixture
def pahos():
    cs = []
    yield cs
    for c in cs:
        c.close()


# -- checks ----------------------------------------------------------------------------------

def check_connack(connack, settings, client_id: str, keep_alive: int):
    """Item 1 / §2.5 sample: CONNACK and the settings the CRT negotiated from it."""
    assert connack.reason_code == mqtt5.ConnectReasonCode.SUCCESS, connack
    assert connack.session_present is False, connack
    assert connack.maximum_qos == mqtt5.QoS.AT_LEAST_ONCE, connack
    assert connack.topic_alias_maximum == 8, connack
    assert connack.subscription_identifiers_available is False, connack
    assert connack.retain_available is True, connack
    assert connack.wildcard_subscriptions_available is True, connack
    assert connack.shared_subscription_available is True, connack
    assert connack.receive_maximum == 100, connack
    assert connack.maximum_packet_size == 149504, connack
    assert connack.server_keep_alive_sec in (None, keep_alive), connack
    assert settings.maximum_qos == mqtt5.QoS.AT_LEAST_ONCE, settings
    assert settings.receive_maximum_from_server == 100, settings
    assert settings.maximum_packet_size_to_server == 149504, settings
    assert settings.topic_alias_maximum_to_server == 8, settings
    assert settings.server_keep_alive_sec == keep_alive, settings
    assert settings.subscription_identifiers_available is False, settings
    assert settings.rejoined_session is False, settings
    assert settings.client_id == client_id, settings


def roundtrip(client, ev: Events, topic: str):
    """Subscribe QoS 1, publish QoS 1 with MQTT 5 properties, receive them unchanged
    (item 7), unsubscribe."""
    suback = client.subscribe(mqtt5.SubscribePacket(subscriptions=[
        mqtt5.Subscription(topic_filter=topic, qos=mqtt5.QoS.AT_LEAST_ONCE)])).result(T)
    assert list(suback.reason_codes) == [mqtt5.SubackReasonCode.GRANTED_QOS_1], suback
    payload = json.dumps({"hello": "world", "id": uuid.uuid4().hex}).encode()
    done = client.publish(mqtt5.PublishPacket(
        topic=topic, payload=payload, qos=mqtt5.QoS.AT_LEAST_ONCE,
        payload_format_indicator=mqtt5.PayloadFormatIndicator.AWS_MQTT5_PFI_UTF8,
        content_type="application/json", message_expiry_interval_sec=60,
        response_topic=f"{topic}/reply", correlation_data_bytes=b"req-1\x00\xff",
        user_properties=[mqtt5.UserProperty(name=k, value=v) for k, v in USER_PROPS])).result(T)
    assert done.puback.reason_code == mqtt5.PubackReasonCode.SUCCESS, done.puback
    msg = ev.next_publish()
    assert (msg.topic, msg.payload, msg.qos) == (topic, payload, mqtt5.QoS.AT_LEAST_ONCE), msg
    assert [(p.name, p.value) for p in msg.user_properties or []] == USER_PROPS, msg.user_properties
    assert msg.content_type == "application/json", msg
    assert msg.correlation_data_bytes == b"req-1\x00\xff", msg
    assert msg.response_topic == f"{topic}/reply", msg
    assert msg.payload_format_indicator == mqtt5.PayloadFormatIndicator.AWS_MQTT5_PFI_UTF8, msg
    assert msg.message_expiry_interval_sec is not None and 58 <= msg.message_expiry_interval_sec <= 60, msg
    assert msg.topic_alias is None, msg
    unsuback = client.unsubscribe(mqtt5.UnsubscribePacket(topic_filters=[topic])).result(T)
    assert list(unsuback.reason_codes) == [mqtt5.UnsubackReasonCode.SUCCESS], unsuback


def full_session(client, ev: Events, crt5, b, client_id: str, keep_alive: int = 1200) -> None:
    crt5(client, ev)
    connack, settings = ev.connack()
    check_connack(connack, settings, client_id, keep_alive)
    roundtrip(client, ev, f"crt5/{uid('t')}")
    client.stop()
    ev.stopped.result(T)
    b.wait_log(client_id, ["client connected"])


# ============================================================================================
# One test per listener / builder
# ============================================================================================

def test_crt5_mtls_on_mqtts(sb, crt5):
    """Items 1, 7: mtls_from_path on the mqtts port (no ALPN)."""
    ev, cid = Events(), uid("crt5-mtls")
    client = mqtt5_client_builder.mtls_from_path(
        endpoint="localhost", port=sb.mqtts_port, cert_filepath=sb.cert, pri_key_filepath=sb.key,
        ca_filepath=str(sb.ca_file), client_id=cid, **ev.builder_kw())
    full_session(client, ev, crt5, sb, cid)


def test_crt5_mtls_alpn_on_tls_port(sb, crt5):
    """Items 1, 7: mTLS with ALPN x-amzn-mqtt-ca (what the builder sends on 443) on the tls
    port; the client built by hand (awscrt.mqtt5.Client) because the builder sets ALPN only
    on port 443."""
    ev, cid = Events(), uid("crt5-alpn")
    opts = awscrt.io.TlsContextOptions.create_client_with_mtls_from_path(sb.cert, sb.key)
    opts.override_default_trust_store_from_path(None, str(sb.ca_file))
    opts.alpn_list = ["x-amzn-mqtt-ca"]
    client = mqtt5.Client(mqtt5.ClientOptions(
        host_name="localhost", port=sb.tls_port, tls_ctx=awscrt.io.ClientTlsContext(opts),
        connect_options=mqtt5.ConnectPacket(client_id=cid, keep_alive_interval_sec=1200),
        **ev.options_kw()))
    full_session(client, ev, crt5, sb, cid)


@pytest.mark.skipif(not port_443_free(), reason="127.0.0.1:443 is not free (or not root)")
def test_crt5_mtls_builder_on_443(broker, tmp_path, crt5):
    """Items 1, 7: mtls_from_path on port 443: the builder itself offers ALPN
    x-amzn-mqtt-ca, exactly as against AWS."""
    b = broker(listeners={"tls": "127.0.0.1:443"})
    cert, key = device_certificate(b, tmp_path)
    ev, cid = Events(), uid("crt5-443")
    client = mqtt5_client_builder.mtls_from_path(
        endpoint="localhost", port=443, cert_filepath=cert, pri_key_filepath=key,
        ca_filepath=str(b.ca_file), client_id=cid, **ev.builder_kw())
    full_session(client, ev, crt5, b, cid)


def test_crt5_websockets_sigv4(sb, crt5):
    """Items 1, 7: websockets_with_default_aws_signing (SigV4 presigned upgrade)."""
    ev, cid = Events(), uid("crt5-sigv4")
    client = mqtt5_client_builder.websockets_with_default_aws_signing(
        endpoint="localhost", port=sb.tls_port, region="us-east-1",
        credentials_provider=awscrt.auth.AwsCredentialsProvider.new_static(AKID, SECRET),
        ca_filepath=str(sb.ca_file), client_id=cid, **ev.builder_kw())
    full_session(client, ev, crt5, sb, cid)
    assert sb.sigv4_principal in sb.wait_log(cid, ["client connected"])


def _authorized(authfn, signer):
    token, principal = f"tok{uuid.uuid4().hex[:16]}", f"dev{uuid.uuid4().hex[:12]}"
    authfn.allow(token, principal)
    return token, principal, signer.sign(token)


def test_crt5_direct_with_custom_authorizer(sb, authfn, signer, crt5):
    """Items 1, 7: direct_with_custom_authorizer (TLS, ALPN mqtt, fields in the username)."""
    token, principal, sig = _authorized(authfn, signer)
    ev, cid = Events(), uid("crt5-cad")
    client = mqtt5_client_builder.direct_with_custom_authorizer(
        endpoint="localhost", port=sb.tls_port, ca_filepath=str(sb.ca_file), client_id=cid,
        auth_username="devuser", auth_authorizer_name="Auth", auth_authorizer_signature=sig,
        auth_password="pw-direct", auth_token_key_name=TOKEN_KEY, auth_token_value=token,
        **ev.builder_kw())
    full_session(client, ev, crt5, sb, cid)
    assert principal in sb.wait_log(cid, ["client connected"])
    [event] = authfn.events_for(token)
    assert event["protocolData"]["mqtt"]["clientId"] == cid, event


def test_crt5_websockets_with_custom_authorizer(sb, authfn, signer, crt5):
    """Items 1, 7: websockets_with_custom_authorizer (bare upgrade, fields in the username)."""
    token, principal, sig = _authorized(authfn, signer)
    ev, cid = Events(), uid("crt5-caws")
    client = mqtt5_client_builder.websockets_with_custom_authorizer(
        endpoint="localhost", port=sb.tls_port, ca_filepath=str(sb.ca_file), client_id=cid,
        auth_username="devuser", auth_authorizer_name="Auth", auth_authorizer_signature=sig,
        auth_password="pw-ws", auth_token_key_name=TOKEN_KEY, auth_token_value=token,
        **ev.builder_kw())
    full_session(client, ev, crt5, sb, cid)
    assert principal in sb.wait_log(cid, ["client connected"])


def test_crt5_plain_tcp(sb, crt5):
    """Items 1, 7: awscrt.mqtt5.Client on the plain mqtt port (tls_ctx None)."""
    ev, cid = Events(), uid("crt5-tcp")
    client = mqtt5.Client(mqtt5.ClientOptions(
        host_name="127.0.0.1", port=sb.port,
        connect_options=mqtt5.ConnectPacket(client_id=cid, keep_alive_interval_sec=60),
        **ev.options_kw()))
    full_session(client, ev, crt5, sb, cid, keep_alive=60)


def test_paho5_plain_websocket_custom_authorizer(sb, authfn, signer, pahos):
    """Items 1, 7: paho-mqtt as an MQTT 5 client over the plain `ws` listener, custom
    authorizer fields in the upgrade's query string."""
    token, principal, sig = _authorized(authfn, signer)
    q = "&".join(f"{k}={urllib.parse.quote(v, safe='')}" for k, v in (
        ("x-amz-customauthorizer-name", "Auth"), ("x-amz-customauthorizer-signature", sig),
        (TOKEN_KEY, token)))
    p = Paho5(sb.ws_port, uid("p5-ws"), transport="websockets", ws_path=f"/mqtt?{q}")
    pahos.append(p)
    p.connect()
    assert p.connack_prop("TopicAliasMaximum") == 8, p.connack_properties
    assert p.connack_prop("MaximumQoS") == 1, p.connack_properties
    t = f"ws5/{uid('t')}"
    assert p.subscribe(t, 1) == [1]
    p.publish(t, b"over-ws", 1, properties=props(PacketTypes.PUBLISH, UserProperty=list(USER_PROPS),
                                                 ContentType="text/plain"))
    m = p.expect(T, topic=t)
    assert (m.payload, m.user_properties, m.prop("ContentType")) == (b"over-ws", USER_PROPS, "text/plain"), m
    assert principal in sb.wait_log(p.client_id, ["client connected"])


# ============================================================================================
# Sessions, server DISCONNECT, refusals
# ============================================================================================

def _tcp_client(b, ev, cid, **kw):
    connect = dict(client_id=cid, keep_alive_interval_sec=60)
    connect.update(kw.pop("connect", {}))
    return mqtt5.Client(mqtt5.ClientOptions(
        host_name="127.0.0.1", port=b.port, connect_options=mqtt5.ConnectPacket(**connect),
        **kw, **ev.options_kw()))


def test_crt5_rejoin_session_gets_queued_messages(sb, crt5, pahos):
    """Item 3: with REJOIN_ALWAYS and Session Expiry 300 the CRT rejoins its session:
    session_present 1 (rejoined_session), and a QoS 1 message published while it was away
    arrives without subscribing again."""
    cid = uid("crt5-rejoin")
    t = f"crt5/rejoin/{cid}"
    ev = Events()
    c1 = crt5(_tcp_client(sb, ev, cid, session_behavior=mqtt5.ClientSessionBehaviorType.REJOIN_ALWAYS,
                          connect={"session_expiry_interval_sec": 300}), ev)
    connack, settings = ev.connack()
    assert connack.session_present is False and settings.rejoined_session is False, (connack, settings)
    c1.subscribe(mqtt5.SubscribePacket(subscriptions=[
        mqtt5.Subscription(topic_filter=t, qos=mqtt5.QoS.AT_LEAST_ONCE)])).result(T)
    c1.stop()
    ev.stopped.result(T)

    pub = Paho5(sb.port, uid("p5pub"))
    pahos.append(pub)
    pub.connect()
    pub.publish(t, b"while-away", 1, properties=props(PacketTypes.PUBLISH, UserProperty=[("k", "v")]))

    ev2 = Events()
    crt5(_tcp_client(sb, ev2, cid, session_behavior=mqtt5.ClientSessionBehaviorType.REJOIN_ALWAYS,
                     connect={"session_expiry_interval_sec": 300}), ev2)
    connack, settings = ev2.connack()
    assert connack.session_present is True, connack
    assert settings.rejoined_session is True, settings
    msg = ev2.next_publish()
    assert (msg.topic, msg.payload) == (t, b"while-away"), msg
    assert [(p.name, p.value) for p in msg.user_properties or []] == [("k", "v")], msg


def test_crt5_sees_session_taken_over(sb, crt5, pahos):
    """Item 14: another connection with the same client id → the CRT client's disconnection
    event carries DISCONNECT 0x8E (SESSION_TAKEN_OVER)."""
    cid = uid("crt5-take")
    ev = Events()
    crt5(_tcp_client(sb, ev, cid, min_reconnect_delay_ms=30000, max_reconnect_delay_ms=60000), ev)
    ev.connack()
    other = Paho5(sb.port, cid)
    pahos.append(other)
    other.connect()
    try:
        d = ev.disconnections.get(timeout=T)
    except queue.Empty:
        raise AssertionError("the CRT client saw no disconnection after the takeover") from None
    assert d.disconnect_packet is not None, f"closed without DISCONNECT: {d.exception}"
    assert d.disconnect_packet.reason_code == mqtt5.DisconnectReasonCode.SESSION_TAKEN_OVER, d.disconnect_packet


def test_crt5_custom_authorizer_denied_reason_code(sb, authfn, signer, crt5):
    """Item 11: the authorizer says no → the CRT's connection failure carries CONNACK 0x87
    (Not authorized; 0x86 Bad user name or password accepted)."""
    token = f"deny{uuid.uuid4().hex[:12]}"
    authfn.deny(token)
    ev, cid = Events(), uid("crt5-denied")
    client = mqtt5_client_builder.direct_with_custom_authorizer(
        endpoint="localhost", port=sb.tls_port, ca_filepath=str(sb.ca_file), client_id=cid,
        auth_username="devuser", auth_authorizer_name="Auth",
        auth_authorizer_signature=signer.sign(token), auth_token_key_name=TOKEN_KEY,
        auth_token_value=token, min_reconnect_delay_ms=30000, max_reconnect_delay_ms=60000,
        **ev.builder_kw())
    crt5(client, ev)
    try:
        f = ev.failures.get(timeout=T)
    except queue.Empty:
        raise AssertionError("no connection failure reported for a denied token") from None
    assert not ev.connected.done(), "connected with a denied token"
    assert f.connack_packet is not None, f"no CONNACK, the connection just failed: {f.exception}"
    assert f.connack_packet.reason_code in (mqtt5.ConnectReasonCode.NOT_AUTHORIZED,
                                            mqtt5.ConnectReasonCode.BAD_USERNAME_OR_PASSWORD), f.connack_packet
    sb.wait_log(cid, ["connect refused"])
