"""The `pubsub broker` command: start-up contract, configuration errors, shutdown."""

import json
import os
import subprocess
import time

import pytest

from conftest import BIN, render_config
from helpers import uid


def _run(args, cwd, timeout=10):
    if not os.path.exists(BIN):
        pytest.fail(f"broker binary not found: {BIN}")
    try:
        r = subprocess.run([BIN, *args], cwd=cwd, capture_output=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:  # run() has killed it
        out = (e.stdout or b"") + (e.stderr or b"")
        pytest.fail(f"`pubsub {' '.join(args)}` still running after {timeout}s (should have "
                    f"refused to start); output:\n{out.decode(errors='replace')[-3000:]}")
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


def test_listeners_json_and_log_line(broker):
    b = broker()
    data = json.loads((b.data_dir / "listeners.json").read_text())
    assert data == {"mqtt": b.addr}, f"only enabled listeners expected: {data}"
    assert b.addr.startswith("127.0.0.1:") and b.port > 0
    deadline = time.monotonic() + 5
    while f"listening mqtt {b.addr}" not in b.log():
        assert time.monotonic() < deadline, f"no 'listening mqtt {b.addr}' line in the log"
        time.sleep(0.1)


def test_sigterm_exits_zero_within_5s(broker, clients):
    b = broker()
    r = clients.raw(b)
    r.connect_ok(uid("term"))
    p = clients.paho(b)
    p.subscribe("x/#", 1)
    t0 = time.monotonic()
    rc = b.terminate(5)
    assert rc is not None, "broker still running 5 s after SIGTERM"
    assert rc == 0, f"exit code {rc} after SIGTERM"
    assert time.monotonic() - t0 <= 5
    assert r.closed_within(2), "client connection not closed at shutdown"


def test_missing_config_file(tmp_path):
    missing = tmp_path / "no-such-config.toml"
    rc, out, err = _run(["broker", "--config", str(missing)], tmp_path)
    assert rc != 0
    assert "no-such-config.toml" in err + out, f"stderr does not name the file:\n{err}"


def _write_config(tmp_path, extra_top="", extra_limits=""):
    text = render_config(tmp_path / "data", {})
    text = extra_top + text
    text = text.replace("[limits]\n", "[limits]\n" + extra_limits)
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    return cfg


def test_valid_config_written_by_helper_is_accepted(broker):
    """Control for the unknown-key tests: the same config without the bad key starts."""
    broker()


def test_unknown_top_level_key(tmp_path):
    cfg = _write_config(tmp_path, extra_top="bogus = 1\n")
    rc, out, err = _run(["broker", "--config", str(cfg)], tmp_path)
    assert rc != 0
    assert "bogus" in err + out, f"stderr does not name the unknown key:\n{err}"


def test_unknown_limits_key(tmp_path):
    cfg = _write_config(tmp_path, extra_limits="bogus_limit = 1\n")
    rc, out, err = _run(["broker", "--config", str(cfg)], tmp_path)
    assert rc != 0
    assert "bogus_limit" in err + out, f"stderr does not name the unknown key:\n{err}"


def test_data_dir_flag_overrides_config(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(render_config(tmp_path / "from-config", {}))
    other = tmp_path / "from-flag"
    log = open(tmp_path / "broker.log", "wb")
    proc = subprocess.Popen([BIN, "broker", "--config", str(cfg), "--data-dir", str(other)],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            cwd=tmp_path)
    try:
        deadline = time.monotonic() + 10
        while not (other / "listeners.json").exists():
            assert proc.poll() is None, (tmp_path / "broker.log").read_text()
            assert time.monotonic() < deadline, "listeners.json not written in --data-dir"
            time.sleep(0.05)
        assert not (tmp_path / "from-config" / "listeners.json").exists()
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
