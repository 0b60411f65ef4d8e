"""`pubsub demo`: runs to the end, fast, and shows what it says it shows — the six
connection methods chatting, the device shadow (HTTP update of `desired`, the device's
delta and MQTT report, the documents, the HTTP read-back, the policy's 403), the refusal."""

import os
import re
import subprocess

import pytest

from conftest import BIN

# The demo's own waits are bounded (5 s a shadow step, 10 s a connection); it runs in about
# 2 s on the 2-core VM. This is the backstop.
DEMO_TIMEOUT = 40


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    if not os.path.exists(BIN):
        pytest.fail(f"pubsub binary not found: {BIN}")
    cwd = tmp_path_factory.mktemp("demo")
    try:
        r = subprocess.run([BIN, "demo"], cwd=cwd, capture_output=True, timeout=DEMO_TIMEOUT,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:  # run() has killed it
        out = (e.stdout or b"").decode(errors="replace")
        pytest.fail(f"`pubsub demo` still running after {DEMO_TIMEOUT}s; output:\n{out[-3000:]}")
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, (
        f"`pubsub demo` exited {r.returncode}\nstdout:\n{out[-3000:]}\n"
        f"stderr:\n{r.stderr.decode(errors='replace')[-3000:]}")
    return out


def line_index(out: str, pattern: str) -> int:
    """Index of the first output line matching `pattern` (a regex); fails if none."""
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if re.search(pattern, line):
            return i
    pytest.fail(f"no line matching {pattern!r} in the demo's output:\n{out}")


STAMP = r"^\s+\d+\.\d\ds  "
GREEN = re.escape('{"color":"green"}')


def test_six_clients_connect_chat_and_the_demo_ends_fast(demo):
    for name in ["backend", "device", "web-app", "token-app", "token-dev", "monitor"]:
        line_index(demo, STAMP + rf"{re.escape(name)}\s+Connected$")
    line_index(demo, STAMP + r'device\s+→ chat/room\s+"hi, device here".*got it: backend, web-app')
    done = re.search(r"^done in (\d+\.\d) s: .*device shadow", demo, re.M)
    assert done, f"no summary line:\n{demo}"
    assert float(done.group(1)) < 10, f"the demo took {done.group(1)} s:\n{demo}"


def test_shadow_scene_app_over_http_device_over_mqtt(demo):
    """The lines, in causal order, with the versions the shadow service gives: the HTTP
    update makes version 1 and its delta, the device's report version 2, the documents
    message says 1 → 2, the HTTP get finds version 2 with no delta left."""
    steps = [
        STAMP + r"web-app\s+→ HTTP POST /things/device/shadow\s+desired " + GREEN
        + r"\s+200, version 1 \(",
        STAMP + r"device\s+← MQTT …/shadow/update/delta\s+" + GREEN + r"\s+version 1$",
        STAMP + r"device\s+→ MQTT …/shadow/update\s+reported " + GREEN
        + r"\s+accepted, version 2 \(",
        STAMP + r"web-app\s+← MQTT …/shadow/update/documents\s+reported " + GREEN
        + r"\s+version 1 → 2$",
        STAMP + r"web-app\s+→ HTTP GET /things/device/shadow\s+desired = reported " + GREEN
        + r"\s+200, version 2, no delta \(",
        STAMP + r"web-app\s+→ HTTP GET /things/backend/shadow\s+403 ForbiddenException\s",
    ]
    at = [line_index(demo, step) for step in steps]
    assert at == sorted(at) and at[-1] - at[0] == len(steps) - 1, (
        f"shadow lines out of order or interleaved (lines {at}):\n{demo}")
    # The shadow scene comes after the chat and before the refusal.
    assert line_index(demo, r"chat/token-dev\s+\"welcome token-dev") < at[0]
    assert at[-1] < line_index(demo, r"web-app\s+→ admin/x")


def test_policy_printed_names_the_shadow_statements(demo):
    line_index(demo, re.escape("$aws/things/${iot:ClientId}/shadow/*"))
    line_index(demo, r"Get/UpdateThingShadow")
