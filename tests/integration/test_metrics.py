"""`GET /metrics` on the `http` listener: Prometheus text, parsed with the Prometheus
project's own Python parser, moving by exactly what a scripted workload did (paho
publishes and deliveries, a refused certificate, a denied publish, connections opening and
closing); `[admin] metrics_auth = true` asks for the admin's SigV4 signature; the Grafana
dashboard in docs/ uses only metric and label names a scrape shows."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from helpers import uid, wait_until
from mqttraw import publish_packet
from tlscerts import attempt_connect, certificate_toml, client_context, make_leaf

parser = pytest.importorskip(
    "prometheus_client.parser", reason="prometheus-client is in tests/integration/requirements.txt")

ARN = "arn:aws:iot:us-east-1:123456789012"
ADMIN_KEY, ADMIN_SECRET = "AKIAMETRICSADMIN", "metricsAdminSecret"
T = 5

# Anonymous clients may do anything but publish to `m/denied`.
POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "iot:*", "Resource": "*"},
    {"Effect": "Deny", "Action": "iot:Publish", "Resource": f"{ARN}:topic/m/denied"},
]}
POLICY_TOML = f"\n[[policies]]\nname = \"metrics-test\"\ndocument = '''{json.dumps(POLICY)}'''\n"


def get(b, headers: dict | None = None) -> tuple[int, str, str]:
    """(status, content type, body) of GET /metrics."""
    url = f"http://127.0.0.1:{b.http_port}/metrics"
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=T) as response:
            return response.status, response.headers["content-type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("content-type", ""), error.read().decode()


def scrape(b) -> dict:
    """Every sample: {(sample name, frozenset of labels): value}."""
    status, content_type, text = get(b)
    assert status == 200, f"GET /metrics: {status} {text}"
    assert content_type.startswith("text/plain; version=0.0.4"), content_type
    samples = {}
    for family in parser.text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def signed_headers(b, key: str, secret: str, method: str = "GET", path: str = "/metrics",
                   body: bytes = b"") -> dict:
    """The SigV4 headers (service `iot`) of a request to the `http` listener."""
    request = AWSRequest(method=method, url=f"http://127.0.0.1:{b.http_port}{path}", data=body)
    SigV4Auth(Credentials(key, secret), "iot", "us-east-1").add_auth(request)
    return dict(request.headers.items())


def metrics_broker(broker, extra_toml: str = "", listeners: dict | None = None):
    return broker(listeners={"http": "127.0.0.1:0", **(listeners or {})},
                  anonymous=["metrics-test"], extra_toml=POLICY_TOML + extra_toml)


def test_counters_move_by_exactly_what_the_workload_did(broker, clients):
    b = metrics_broker(broker)
    before = scrape(b)
    plain = dict(listener="mqtt", protocol="3.1.1")
    assert value(before, "pubsub_connections", **plain) == 0
    subscriber = clients.paho(b, uid("sub"))
    subscriber.subscribe("m/#", 1)
    publisher = clients.paho(b, uid("pub"))
    opened = scrape(b)
    assert value(opened, "pubsub_connections", **plain) == 2
    assert value(opened, "pubsub_sessions", state="online") == 2

    n = 25
    for i in range(n):
        publisher.publish("m/x", f"m{i}", qos=1)
    for _ in range(n):
        subscriber.expect(T, topic="m/x")
    after = scrape(b)
    delta = lambda name, **labels: value(after, name, **labels) - value(before, name, **labels)  # noqa: E731
    assert delta("pubsub_messages_in_total") == n
    assert delta("pubsub_messages_out_total") == n
    assert delta("pubsub_bytes_in_total") > n * len("m/x")
    assert delta("pubsub_bytes_out_total") > n * len("m/x")
    assert delta("pubsub_connect_seconds_count") == 2
    assert delta("pubsub_policy_denials_total", action="iot:Publish") == 0

    # A denied publish (MQTT 3.1.1: the connection is closed): one denial, of iot:Publish.
    raw = clients.raw(b)
    raw.connect_ok(uid("denied"))
    raw.send(publish_packet("m/denied", b"x", 1, pid=1))
    assert raw.closed_within(T), "a denied PUBLISH closes a 3.1.1 connection"
    denied = scrape(b)
    assert value(denied, "pubsub_policy_denials_total", action="iot:Publish") \
        - value(after, "pubsub_policy_denials_total", action="iot:Publish") == 1
    assert value(denied, "pubsub_messages_in_total") - value(after, "pubsub_messages_in_total") == 1

    # Connections close: the gauge comes back down.
    publisher.disconnect()
    subscriber.disconnect()
    wait_until(lambda: value(scrape(b), "pubsub_connections", **plain) == 0, T,
               msg="pubsub_connections did not come back to 0")
    b.assert_running()


def test_a_refused_certificate_is_counted_with_its_method_and_reason(broker, tmp_path):
    revoked = make_leaf(f"revoked-{uid('c')}").write(tmp_path, "revoked")
    unknown = make_leaf(f"unknown-{uid('c')}").write(tmp_path, "unknown")
    b = metrics_broker(broker, certificate_toml(revoked, status="REVOKED"),
                       listeners={"mqtts": "127.0.0.1:0"})
    labels = lambda reason: dict(method="certificate", reason=reason)  # noqa: E731
    before = scrape(b)
    outcome = attempt_connect(b.mqtts_port, client_context(b.ca_file, revoked), uid("r"))
    assert outcome.refused, outcome
    after = scrape(b)
    assert value(after, "pubsub_auth_refusals_total", **labels("revoked")) \
        - value(before, "pubsub_auth_refusals_total", **labels("revoked")) == 1
    assert value(after, "pubsub_auth_refusals_total", **labels("unknown")) == 0
    outcome = attempt_connect(b.mqtts_port, client_context(b.ca_file, unknown), uid("u"))
    assert outcome.refused, outcome
    last = scrape(b)
    assert value(last, "pubsub_auth_refusals_total", **labels("unknown")) == 1
    assert value(last, "pubsub_auth_refusals_total", **labels("revoked")) == 1
    assert value(last, "pubsub_connections", listener="mqtts", protocol="3.1.1") == 0


def test_metrics_auth_requires_the_admin_signature(broker):
    admin = (f'\n[admin]\naccess_key_id = "{ADMIN_KEY}"\nsecret_access_key = "{ADMIN_SECRET}"\n'
             "metrics_auth = true\n")
    b = metrics_broker(broker, admin)
    status, _, body = get(b)
    assert status == 403, f"unsigned scrape with metrics_auth = true: {status} {body}"
    status, _, body = get(b, signed_headers(b, ADMIN_KEY, "not-the-secret"))
    assert status == 403, f"wrongly signed scrape: {status} {body}"
    status, content_type, body = get(b, signed_headers(b, ADMIN_KEY, ADMIN_SECRET))
    assert status == 200, f"signed scrape: {status} {body}"
    names = {family.name for family in parser.text_string_to_metric_families(body)}
    assert {"pubsub_messages_in", "pubsub_connections", "pubsub_store_commit_seconds"} <= names, names


# -- the Grafana dashboard (docs/grafana-dashboard.json) ------------------------------------

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
# Labels Prometheus attaches to every scraped series itself (the broker never writes them).
TARGET_LABELS = {"instance", "job"}


def dashboard_queries(dashboard: dict) -> list[tuple[str, str, str]]:
    """(where, PromQL expression, legend format) of every panel target and template query."""
    found = []

    def panels(items):
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))  # panels folded into a row

    for panel in panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            found.append((f"panel {panel['title']!r} {target['refId']}", target["expr"],
                          target.get("legendFormat", "")))
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        query = query.get("query", "") if isinstance(query, dict) else query or ""
        found.append((f"variable {variable['name']!r}", query, ""))
    return found


def query_labels(expr: str, legend: str) -> set[str]:
    """The label names an expression groups by, matches on, or its legend prints."""
    labels = set()
    for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        labels |= {name.strip() for name in group.split(",") if name.strip()}
    for selector in re.findall(r"\{([^}]*)\}", expr):
        labels |= set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", selector))
    labels |= set(re.findall(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", legend))
    # label_values(metric, label) in a template variable
    labels |= set(re.findall(r"label_values\([^,]+,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)", expr))
    return labels - TARGET_LABELS


def test_the_grafana_dashboard_uses_only_what_the_broker_exports(broker):
    dashboard = json.loads(DASHBOARD.read_text())
    # importable: the datasource is an input chosen at import, used by every panel
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"], dashboard["__inputs"]
    assert dashboard["schemaVersion"] >= 36, "Grafana 10's JSON model"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), f"panel ids repeat: {ids}"
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert all(t["datasource"]["uid"] == "${DS_PROMETHEUS}" for t in panel["targets"]), panel["title"]

    b = metrics_broker(broker)
    labels_of: dict[str, set[str]] = {}
    for (name, labels), _ in scrape(b).items():
        labels_of.setdefault(name, set()).update(k for k, _ in labels)
    used = set()
    for where, expr, legend in dashboard_queries(dashboard):
        names = set(re.findall(r"\bpubsub_[a-z0-9_]+\b", expr))
        assert names, f"{where}: no pubsub_* metric in {expr!r}"
        for name in names:
            assert name in labels_of, \
                f"{where}: {name} is not in the broker's /metrics ({sorted(labels_of)})"
            missing = query_labels(expr, legend) - labels_of[name]
            assert not missing, f"{where}: {name} has no label {missing} ({expr!r})"
        used |= names
    # and the dashboard shows every metric the issue lists
    families = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in used}
    assert {"pubsub_connections", "pubsub_sessions", "pubsub_messages_in", "pubsub_messages_out",
            "pubsub_bytes_in", "pubsub_bytes_out", "pubsub_messages_dropped",
            "pubsub_auth_refusals", "pubsub_policy_denials", "pubsub_queued_messages",
            "pubsub_retained_messages", "pubsub_store_commit_seconds",
            "pubsub_connect_seconds"} <= families, families
