"""iot-data over HTTPS with a client certificate: the `tls` port (IoT Core's 443) with ALPN
`x-amzn-http-ca`, as a device publishes and reads its shadow without SigV4. Python's
`http.client` over an `ssl` context offering that ALPN and presenting the device's
certificate (made with `cryptography`, tlscerts.py); the publish seen by an independent
paho subscriber.

Facts: shared/IOT-FACTS-MQTT5-SHADOW.md §3.7 (mTLS on 8443, or 443 with ALPN
`x-amzn-http-ca`), shared/IOT-FACTS.md (ports and ALPN; 8883 is MQTT). Every wait is
bounded (≤ 10 s); every broker is per test."""

from __future__ import annotations

import http.client
import json
import ssl
import time
import uuid

from helpers import uid
from tlscerts import (
    ALPN_MQTT_CA, TlsRawClient, attempt_connect, certificate_toml, client_context, make_leaf,
    policy_toml,
)
from test_control_plane import ADMIN_TOML, ARN
from test_tls import REASONS, wait_new_log

T = 10
ALPN_HTTP_CA = "x-amzn-http-ca"
LISTENERS = {"mqtts": "127.0.0.1:0", "tls": "127.0.0.1:0"}


def device(tmp_path, name: str):
    cn = f"{name}-{uuid.uuid4().hex[:6]}"
    return make_leaf(cn).write(tmp_path / "certs", name), cn


def device_policy(cn: str, thing: str, shadow_actions: list[str]) -> dict:
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "iot:Publish", "Resource": f"{ARN}:topic/dev/{cn}/*"},
        {"Effect": "Allow", "Action": shadow_actions, "Resource": f"{ARN}:thing/{thing}"},
    ]}


def https(b, ctx: ssl.SSLContext, method: str, path: str, body: bytes | None = None,
          port: int | None = None) -> tuple[int, bytes, str | None]:
    """One request on a new connection: (status, body, negotiated ALPN)."""
    conn = http.client.HTTPSConnection("localhost", port or b.tls_port, context=ctx, timeout=T)
    try:
        conn.connect()
        alpn = conn.sock.selected_alpn_protocol()
        conn.request(method, path, body=body)
        response = conn.getresponse()
        return response.status, response.read(), alpn
    finally:
        conn.close()


def refused(b, ctx: ssl.SSLContext) -> str:
    """The TLS handshake is refused (with TLS 1.3 the client learns it from the alert on
    its first read): no HTTP answer at all."""
    try:
        status, body, _ = https(b, ctx, "GET", "/things/x/shadow")
    except TimeoutError as e:
        raise AssertionError(f"no refusal within {T}s: {e!r}") from None
    except (ssl.SSLError, ConnectionError, http.client.HTTPException, OSError) as e:
        return repr(e)
    raise AssertionError(f"expected the handshake refused, got HTTP {status}: {body!r}")


def http_ca(b, cert=None) -> ssl.SSLContext:
    return client_context(b.ca_file, cert, alpn=[ALPN_HTTP_CA])


def test_publish_and_shadow_by_the_certificates_policy(broker, clients, tmp_path):
    writer, writer_cn = device(tmp_path, "writer")
    reader, reader_cn = device(tmp_path, "reader")
    thing = uid("lamp")
    b = broker(listeners=LISTENERS, extra_toml=(
        policy_toml("writer", device_policy(writer_cn, thing,
                                            ["iot:UpdateThingShadow", "iot:GetThingShadow"]))
        + policy_toml("reader", device_policy(reader_cn, thing, ["iot:GetThingShadow"]))
        + certificate_toml(writer, policies=["writer"])
        + certificate_toml(reader, policies=["reader"])))
    ctx = http_ca(b, writer)

    # Publish over HTTPS reaches an MQTT subscriber.
    topic = f"dev/{writer_cn}/temp"
    sub = clients.paho(b, uid("sub"))
    assert sub.subscribe(topic, 1) == [1]
    status, body, alpn = https(b, ctx, "POST", f"/topics/{topic}?qos=1", b'{"t": 21}')
    assert alpn == ALPN_HTTP_CA, alpn
    assert status == 200, body
    assert sub.expect(T, topic=topic).payload == b'{"t": 21}'
    # Outside its policy's topics: 403, nothing delivered.
    other = f"dev/{reader_cn}/temp"
    assert sub.subscribe(other, 1) == [1]
    status, body, _ = https(b, ctx, "POST", f"/topics/{other}", b"x")
    assert status == 403 and json.loads(body)["message"] == "Forbidden", body
    lines = b.log_lines_with("refused", writer.id, "iot:Publish", f"topic/{other}")
    assert lines, "no log line naming the certificate, the action and the topic"

    # The shadow API: update then get, allowed by the certificate's policy.
    update = json.dumps({"state": {"reported": {"on": True}}, "clientToken": "d1"}).encode()
    status, body, _ = https(b, ctx, "POST", f"/things/{thing}/shadow", update)
    assert status == 200, body
    accepted = json.loads(body)
    assert accepted["state"] == {"reported": {"on": True}} and accepted["version"] == 1, accepted
    assert accepted["clientToken"] == "d1", accepted
    status, body, _ = https(b, ctx, "GET", f"/things/{thing}/shadow")
    assert status == 200 and json.loads(body)["state"] == {"reported": {"on": True}}, body

    # The reader may get but not update; neither may touch another thing.
    reading = http_ca(b, reader)
    status, body, _ = https(b, reading, "GET", f"/things/{thing}/shadow")
    assert status == 200 and json.loads(body)["version"] == 1, body
    status, body, _ = https(b, reading, "POST", f"/things/{thing}/shadow", update)
    assert status == 403 and json.loads(body)["message"] == "Forbidden", body
    assert b.log_lines_with("refused", reader.id, "iot:UpdateThingShadow", f"thing/{thing}")
    status, body, _ = https(b, ctx, "GET", f"/things/{uid('other')}/shadow")
    assert status == 403, body
    # The refused update changed nothing.
    status, body, _ = https(b, reading, "GET", f"/things/{thing}/shadow")
    assert json.loads(body)["version"] == 1, body
    assert [m.topic for m in sub.drain(0.3)] == [], "a refused publish was delivered"


def test_control_plane_stays_the_admins_and_the_certificate_counts_only_on_its_alpn(broker, tmp_path):
    cert, cn = device(tmp_path, "dev")
    b = broker(listeners={**LISTENERS, "http": "127.0.0.1:0"}, extra_toml=(
        ADMIN_TOML + policy_toml("all", {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "iot:*", "Resource": "*"}]})
        + certificate_toml(cert, policies=["all"])))
    ctx = http_ca(b, cert)
    # Even a certificate allowed iot:* reaches iot-data only.
    for method, path in [("GET", "/policies"), ("GET", f"/certificates/{cert.id}"),
                         ("GET", "/things"), ("GET", "/retainedMessage")]:
        status, body, _ = https(b, ctx, method, path)
        answer = json.loads(body)
        assert status == 403 and answer["__type"] == "UnauthorizedException", (path, body)
        assert cert.id in answer["message"], answer
    # The same certificate offered on ALPN http/1.1 is not asked for: that branch wants
    # SigV4, and an unsigned shadow request there is not the shadow API's.
    plain = client_context(b.ca_file, cert, alpn=["http/1.1"])
    status, body, alpn = https(b, plain, "GET", f"/things/{cn}/shadow")
    assert alpn == "http/1.1" and status == 404, (alpn, status, body)


def test_no_unknown_or_inactive_certificate_is_refused_with_a_log_line(broker, tmp_path):
    registered, _ = device(tmp_path, "ok")
    inactive, _ = device(tmp_path, "off")
    unknown, _ = device(tmp_path, "stranger")
    b = broker(listeners=LISTENERS, extra_toml=(
        certificate_toml(registered) + certificate_toml(inactive, status="INACTIVE")))
    # Control: the registered one is served (no shadow yet: 404 from the shadow API).
    status, body, _ = https(b, http_ca(b, registered), "GET", "/things/nothing/shadow")
    assert status == 404 and json.loads(body)["code"] == 404, body

    refused(b, http_ca(b))  # no client certificate at all
    for cert, reason in [(unknown, REASONS["unknown"]), (inactive, REASONS["inactive"])]:
        since = len(b.log())
        refused(b, http_ca(b, cert))
        line = wait_new_log(b, since, ["client certificate refused"])
        assert cert.id in line, line
        assert any(word in line.lower() for word in reason), line
    b.assert_running()


def test_mqtts_is_mqtt_only(broker, tmp_path):
    """Port 8883 (`mqtts`) negotiates no ALPN and speaks MQTT only: an HTTP request there,
    from a registered certificate offering `x-amzn-http-ca`, gets no HTTP answer."""
    cert, _ = device(tmp_path, "dev")
    b = broker(listeners=LISTENERS, extra_toml=certificate_toml(cert))
    c = TlsRawClient(b.mqtts_port, client_context(b.ca_file, cert,
                                                  alpn=[ALPN_HTTP_CA, ALPN_MQTT_CA]))
    try:
        assert c.sock.selected_alpn_protocol() is None
        # Longer than the 71 bytes an MQTT decoder reading "GE" as a fixed header wants.
        request = (b"GET /things/x/shadow HTTP/1.1\r\nHost: localhost\r\n"
                   b"User-Agent: test-http-mtls\r\nAccept: application/json\r\n\r\n")
        assert len(request) > 71
        c.send(request)
        deadline = time.monotonic() + T
        while not c.eof:
            c._fill(deadline)
        assert not bytes(c.buf).startswith(b"HTTP/"), bytes(c.buf)[:100]
    finally:
        c.close()
    # The same certificate does MQTT there.
    o = attempt_connect(b.mqtts_port, client_context(b.ca_file, cert), uid("mq"))
    assert o.accepted, o
