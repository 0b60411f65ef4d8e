"""The web console (`/console/` on the `http` listener, docs/CONSOLE.md): it refuses what is
not signed in (plain HTTP, no redirects followed), its API answers what a SigV4-signed
control-plane request answers, and a person in headless Chromium (Selenium) can do what
IoT Core's console does: sign in, subscribe and publish in the MQTT test client with paho
clients on the other side, disconnect a client, and see a denied publish in "Why denied".

The browser part finds every field, button, table and region by its accessible name (a
label's text and its `for`, `aria-label`, a caption, a button's text), never by CSS ids or
classes: that is the markup screen-reader users need, so the test checks it."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import urllib.parse
import uuid
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path

import pytest

from helpers import uid, wait_until
from mqttraw import publish_packet
from tlscerts import client_context
from test_control_plane import (ADMIN_KEY, ADMIN_SECRET, ADMIN_TOML, ARN, DISCONNECTED, T, boto,
                                observer, wait_closed)
from test_metrics import metrics_broker, signed_headers

COOKIE = "pubsub_console"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# The flags without which Chromium, on a machine with no network but loopback, hangs on
# lookups (component updates, sync, QUIC probes) before it loads the page.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--window-size=1400,900"]


# -- plain HTTP --------------------------------------------------------------------------------

@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self):
        return json.loads(self.body)

    def cookie(self) -> str | None:
        """The value of the session cookie this reply sets, if it sets one."""
        for header in self.headers.get_all("Set-Cookie") or []:
            jar = SimpleCookie()
            jar.load(header)
            if COOKIE in jar:
                return jar[COOKIE].value
        return None


def request(b, method: str, path: str, body: bytes | None = None,
            headers: dict | None = None, tls=None) -> Reply:
    """One request on its own connection, to the `http` listener, or with `tls` (an
    SSLContext) to the TLS port; http.client never follows a redirect."""
    if tls is None:
        conn = http.client.HTTPConnection("127.0.0.1", b.http_port, timeout=T)
    else:
        conn = http.client.HTTPSConnection("localhost", b.tls_port, timeout=T, context=tls)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return Reply(r.status, r.headers, r.read())
    finally:
        conn.close()


def sign_in(b, key: str = ADMIN_KEY, secret: str = ADMIN_SECRET, tls=None) -> Reply:
    form = urllib.parse.urlencode({"accessKeyId": key, "secretAccessKey": secret}).encode()
    return request(b, "POST", "/console/sign-in", form,
                   {"Content-Type": "application/x-www-form-urlencoded"}, tls)


def signed_in(b) -> str:
    """A session cookie of the admin."""
    r = sign_in(b)
    assert r.status == 303, f"sign-in with the admin keys: {r.status} {r.body[:300]!r}"
    cookie = r.cookie()
    assert cookie, f"no {COOKIE} cookie in {r.headers.get_all('Set-Cookie')}"
    return cookie


def console(b, cookie: str | None, method: str, path: str, body: bytes | None = None,
            header: bool = True) -> Reply:
    """A request as the page makes it: the session cookie and `X-PubSub-Console: 1`."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if cookie is not None:
        headers["Cookie"] = f"{COOKIE}={cookie}"
    if header:
        headers["X-PubSub-Console"] = "1"
    return request(b, method, path, body, headers)


def signed(b, method: str, path: str, body: bytes | None = None) -> Reply:
    """The same operation as a SigV4-signed control-plane request."""
    headers = signed_headers(b, ADMIN_KEY, ADMIN_SECRET, method, path, body or b"")
    if body is not None:
        headers["Content-Type"] = "application/json"
    return request(b, method, path, body, headers)


def assert_same_answer(via_console: Reply, via_signed: Reply, what: str) -> None:
    assert via_console.status == via_signed.status, \
        f"{what}: console {via_console.status} {via_console.body[:300]!r}, " \
        f"signed {via_signed.status} {via_signed.body[:300]!r}"
    assert via_console.headers.get("x-amzn-ErrorType") == via_signed.headers.get("x-amzn-ErrorType"), what
    assert via_console.json() == via_signed.json(), what


def assert_refused(r: Reply, what: str) -> None:
    assert r.status == 401, f"{what}: {r.status} {r.body[:300]!r}"
    assert r.json().get("message"), f"{what}: a 401 says why: {r.body!r}"


def console_broker(broker):
    """http + mqtt listeners, the [admin] keys; anonymous clients may do anything but
    publish to `m/denied` (test_metrics' policy)."""
    return metrics_broker(broker, ADMIN_TOML)


# -- what is not signed in is refused -----------------------------------------------------------

def test_nothing_works_without_signing_in(broker):
    b = console_broker(broker)
    r = request(b, "GET", "/console")
    assert r.status == 308 and r.headers["Location"] == "/console/", (r.status, r.headers)
    r = request(b, "GET", "/console/")
    assert r.status == 303, f"GET /console/ unsigned: {r.status}"
    assert urllib.parse.urlsplit(r.headers["Location"]).path == "/console/sign-in", r.headers["Location"]
    assert b"<script" not in r.body, "no page before signing in"
    r = request(b, "GET", "/console/assets/console.js")
    assert r.status == 401, f"console.js unsigned: {r.status}"
    # the sign-in page and its style sheet are for anyone
    page = request(b, "GET", "/console/sign-in")
    assert page.status == 200, page.status
    for text in (b"Access key ID", b"Secret access key", b"Sign in", b'role="alert"'):
        assert text in page.body, f"{text!r} not on the sign-in page"
    assert request(b, "GET", "/console/assets/console.css").status == 200

    forged = "0" * 64
    for path in ("/console/api/iot/things", "/console/api/iot/pubsub/clients", "/console/api/mqtt"):
        assert_refused(console(b, None, "GET", path), f"{path} without a cookie")
        assert_refused(console(b, forged, "GET", path), f"{path} with a forged cookie")
    assert request(b, "GET", "/console/", headers={"Cookie": f"{COOKIE}={forged}"}).status == 303
    # a mutating call is refused too, and does nothing
    name = uid("forged")
    assert_refused(console(b, forged, "POST", f"/console/api/iot/things/{name}", b"{}"),
                   "CreateThing with a forged cookie")
    assert signed(b, "GET", f"/things/{name}").status == 404, "the refused call created the thing"

    # the right cookie without the header a cross-site page cannot send: refused
    cookie = signed_in(b)
    assert_refused(console(b, cookie, "GET", "/console/api/iot/things", header=False),
                   "a signed-in cookie without X-PubSub-Console")
    assert console(b, cookie, "GET", "/console/api/iot/things").status == 200


def test_sign_in_and_sign_out(broker):
    b = console_broker(broker)
    for key, secret in ((ADMIN_KEY, ADMIN_SECRET + "x"), ("AKIANOSUCHADMINKEY01", ADMIN_SECRET),
                        (ADMIN_KEY, "")):
        r = sign_in(b, key, secret)
        assert r.status == 401, f"sign-in as {key!r} / {secret!r}: {r.status}"
        assert r.cookie() is None, f"a refused sign-in set a cookie: {r.headers.get_all('Set-Cookie')}"
        assert b'role="alert"' in r.body and b"Access key ID" in r.body, r.body[:500]
        assert ADMIN_SECRET.encode() not in r.body

    r = sign_in(b)
    assert r.status == 303, f"sign-in: {r.status} {r.body[:300]!r}"
    assert r.headers["Location"] in ("/console/", f"http://127.0.0.1:{b.http_port}/console/"), r.headers
    cookie = r.cookie()
    assert cookie, r.headers.get_all("Set-Cookie")
    set_cookie = next(h for h in r.headers.get_all("Set-Cookie") if h.startswith(COOKIE + "="))
    attributes = {a.strip().lower() for a in set_cookie.split(";")[1:]}
    assert "httponly" in attributes, set_cookie
    assert "samesite=strict" in attributes, set_cookie
    assert "path=/console" in attributes, set_cookie
    assert ADMIN_SECRET not in cookie

    page = console(b, cookie, "GET", "/console/", header=False)
    assert page.status == 200 and b"<script" in page.body, page.status
    assert console(b, cookie, "GET", "/console/assets/console.js", header=False).status == 200
    mqtt = console(b, cookie, "GET", "/console/api/mqtt")
    assert mqtt.status == 200, mqtt.body
    url, client_id = mqtt.json()["url"], mqtt.json()["clientId"]
    assert url.startswith(f"ws://127.0.0.1:{b.http_port}/mqtt?"), url
    assert "X-Amz-Signature=" in url and f"X-Amz-Credential={ADMIN_KEY}" in url, url
    assert client_id.startswith("console-"), client_id
    for body in (page.body, mqtt.body):
        assert ADMIN_SECRET.encode() not in body, "the admin secret reached the page"

    # a second sign-in is a second session; signing one out leaves the other
    other = signed_in(b)
    assert other != cookie
    r = console(b, cookie, "POST", "/console/sign-out", header=False)
    assert r.status == 303, r.status
    assert urllib.parse.urlsplit(r.headers["Location"]).path == "/console/sign-in", r.headers["Location"]
    assert console(b, cookie, "GET", "/console/", header=False).status == 303
    assert console(b, cookie, "GET", "/console/assets/console.js", header=False).status == 401
    assert_refused(console(b, cookie, "GET", "/console/api/iot/things"), "after sign-out")
    assert_refused(console(b, cookie, "GET", "/console/api/mqtt"), "after sign-out")
    assert console(b, other, "GET", "/console/api/iot/things").status == 200


def test_the_console_api_answers_what_a_signed_request_answers(broker, clients):
    b = console_broker(broker)
    cookie = signed_in(b)
    iot = boto(b, "iot")
    names = sorted(uid("thing") for _ in range(2))
    for name in names:
        iot.create_thing(thingName=name, attributePayload={"attributes": {"floor": "3"}})

    for path in ("/things", "/things?maxResults=1", f"/things/{names[0]}",
                 f"/things/{uid('nosuch')}", "/policies"):
        assert_same_answer(console(b, cookie, "GET", "/console/api/iot" + path),
                           signed(b, "GET", path), f"GET {path}")
    listed = console(b, cookie, "GET", "/console/api/iot/things").json()
    assert sorted(t["thingName"] for t in listed["things"]) == names, listed
    first_page = console(b, cookie, "GET", "/console/api/iot/things?maxResults=1").json()
    assert len(first_page["things"]) == 1 and first_page.get("nextToken"), \
        f"the query string reaches the operation: {first_page}"
    missing = console(b, cookie, "GET", f"/console/api/iot/things/{uid('nosuch')}")
    assert missing.status == 404 and missing.headers["x-amzn-ErrorType"].startswith(
        "ResourceNotFoundException"), (missing.status, missing.headers)

    # a connected paho client, seen the same way by both
    p = clients.paho(b, uid("seen"))
    p.subscribe("seen/#", 1)
    assert_same_answer(console(b, cookie, "GET", "/console/api/iot/pubsub/clients"),
                       signed(b, "GET", "/pubsub/clients"), "GET /pubsub/clients")
    connected = console(b, cookie, "GET", "/console/api/iot/pubsub/clients").json()["connected"]
    row = next((c for c in connected if c["clientId"] == p.client_id), None)
    assert row and row["subscriptions"] == ["seen/#"] and row["listener"] == "mqtt", connected

    # a denied publish, in the refusals both ask for; the overview names the listeners
    raw = clients.raw(b)
    raw.connect_ok(uid("denied"))
    raw.send(publish_packet("m/denied", b"x", 1, pid=1))
    assert raw.closed_within(T), "a denied PUBLISH closes a 3.1.1 connection"
    assert_same_answer(console(b, cookie, "GET", "/console/api/iot/pubsub/refusals"),
                       signed(b, "GET", "/pubsub/refusals"), "GET /pubsub/refusals")
    overview = console(b, cookie, "GET", "/console/api/iot/pubsub/overview").json()
    assert {"name": "mqtt", "address": b.addr} in overview["listeners"], overview

    # a body reaches the operation: CreatePolicy through the console, read back signed
    document = {"Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}]}
    policy = uid("console-policy")
    created = console(b, cookie, "POST", f"/console/api/iot/policies/{policy}",
                      json.dumps({"policyDocument": json.dumps(document)}).encode())
    assert created.status == 200, created.body
    assert json.loads(iot.get_policy(policyName=policy)["policyDocument"]) == document
    bad = json.dumps({"policyDocument": '{"Version": "2012-10-17", "Statement": [}'}).encode()
    via_console = console(b, cookie, "POST", f"/console/api/iot/policies/{uid('bad')}", bad)
    via_signed = signed(b, "POST", f"/policies/{uid('bad')}", bad)
    assert (via_console.status, via_console.headers.get("x-amzn-ErrorType")) == \
        (via_signed.status, via_signed.headers.get("x-amzn-ErrorType")), (via_console, via_signed)
    assert via_console.status == 400 and "Malformed" in via_console.headers["x-amzn-ErrorType"]


# -- the TLS port's HTTPS branch ----------------------------------------------------------------

def test_the_console_on_the_tls_port_is_https_with_a_secure_cookie_and_wss(broker, clients):
    """The console on the TLS port (HTTP/1.1 over TLS): the sign-in page, a `Secure` cookie,
    the API, and a `wss://` MQTT URL for the host the page was loaded from, which an
    independent WebSocket client (paho over TLS) connects with as the admin."""
    b = broker(listeners={"tls": "127.0.0.1:0"}, extra_toml=ADMIN_TOML,
               anonymous=["dev-allow-all"])
    context = client_context(b.ca_file, alpn=["http/1.1"])

    def https(method: str, path: str, headers: dict | None = None) -> Reply:
        return request(b, method, path, None, headers, tls=context)

    assert https("GET", "/console/sign-in").status == 200
    page = https("GET", "/console/")
    assert page.status == 303 and page.headers["Location"] == "/console/sign-in", page
    r = sign_in(b, tls=context)
    assert r.status == 303, r
    set_cookie = r.headers["Set-Cookie"]
    assert "Secure" in set_cookie and "HttpOnly" in set_cookie, set_cookie
    cookie = {"Cookie": f"{COOKIE}={r.cookie()}", "X-PubSub-Console": "1"}
    things = https("GET", "/console/api/iot/things", headers=cookie)
    assert things.status == 200 and things.json() == {"things": []}, things
    mqtt = https("GET", "/console/api/mqtt", headers=cookie).json()
    assert mqtt["url"].startswith(f"wss://localhost:{b.tls_port}/mqtt?"), mqtt
    assert mqtt["clientId"].startswith("console-")
    path = mqtt["url"][mqtt["url"].index("/mqtt"):]
    admin = clients.paho_tls(b, context, b.tls_port, client_id=mqtt["clientId"],
                             transport="websockets", ws_path=path)
    topic = f"console/{uid('https')}"
    admin.subscribe(topic, 1)
    clients.paho(b, uid("pub")).publish(topic, b"over wss", qos=1)
    assert admin.expect(T, topic=topic).payload == b"over wss"


# -- the browser ------------------------------------------------------------------------------

@pytest.fixture
def screenshots(tmp_path) -> Path:
    d = Path(os.environ.get("PUBSUB_SCREENSHOTS") or tmp_path / "screenshots")
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture
def browser(tmp_path, screenshots):
    """Headless Chromium through /usr/bin/chromedriver, quit at teardown. A missing browser
    fails (scripts/test installs it); PUBSUB_SKIP_BROWSER=1 skips, for developers."""
    if os.environ.get("PUBSUB_SKIP_BROWSER") == "1":
        pytest.skip("PUBSUB_SKIP_BROWSER=1: the console's browser test was not run")
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        pytest.fail(f"{' and '.join(missing)} missing: install Debian's chromium and "
                    "chromium-driver (scripts/test does), or set PUBSUB_SKIP_BROWSER=1")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as error:
        pytest.fail(f"selenium missing ({error}): pip install -r tests/integration/requirements.txt")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # an explicit driver path: Selenium Manager, which would download a driver, is not run
    service = Service(CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(T)
    driver.set_script_timeout(T)
    try:
        yield driver
    finally:
        # what the page said, printed with the report of a failed test
        try:
            driver.save_screenshot(str(tmp_path / "last.png"))
            for entry in driver.get_log("browser"):
                print(f"browser console: {entry.get('level')} {entry.get('message')}")
            print(f"last page: {driver.current_url} (screenshot {tmp_path / 'last.png'})")
        except Exception as error:
            print(f"could not read the browser's state: {error}")
        driver.quit()


def xpath_literal(s: str) -> str:
    if "'" not in s:
        return f"'{s}'"
    if '"' not in s:
        return f'"{s}"'
    return "concat(" + ", \"'\", ".join(f"'{part}'" for part in s.split("'")) + ")"


class Page:
    """Finds what a screen reader would announce, and waits (bounded) for it."""

    def __init__(self, driver):
        from selenium.common.exceptions import StaleElementReferenceException
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        self.d, self.By = driver, By
        self.wait = WebDriverWait(driver, T, poll_frequency=0.1,
                                  ignored_exceptions=(StaleElementReferenceException,))

    def shown(self, xpath: str, scope=None):
        for e in (scope or self.d).find_elements(self.By.XPATH, xpath):
            if e.is_displayed():
                return e
        return None

    def until(self, condition, what: str):
        return self.wait.until(lambda _: condition(), f"{what} (within {T}s)")

    def _labelled_control(self, name: str):
        n = xpath_literal(name)
        for label in self.d.find_elements(
                self.By.XPATH, f"//label[normalize-space(.)={n} or normalize-space(text())={n}]"):
            target = label.get_attribute("for")
            controls = (self.d.find_elements(self.By.ID, target) if target else
                        label.find_elements(self.By.XPATH, ".//input|.//textarea|.//select"))
            for control in controls:
                # a styled checkbox or radio may hide its box and show its label only
                if control.is_displayed() or control.get_attribute("type") in ("checkbox", "radio"):
                    return control
        return self.shown(f"//*[(self::input or self::textarea or self::select) and "
                           f"(@aria-label={n} or @aria-labelledby=//*[normalize-space(.)={n}]/@id)]")

    def field(self, name: str):
        """The input, textarea or select whose label (or aria-label) is `name`."""
        return self.until(lambda: self._labelled_control(name), f"no field labelled {name!r}")

    def button(self, name: str, scope=None):
        n = xpath_literal(name)
        return self.until(lambda: self.shown(
            f".//button[normalize-space(.)={n} or @aria-label={n}]"
            f"|.//input[(@type='submit' or @type='button') and @value={n}]", scope or self.d),
            f"no button named {name!r}")

    def nav(self, name: str):
        n = xpath_literal(name)
        return self.until(lambda: self.shown(
            f"//nav//*[(self::a or self::button) and (normalize-space(.)={n} or @aria-label={n})]"
            f"|//*[@role='tab' and normalize-space(.)={n}]"), f"no navigation entry {name!r}")

    def labelled(self, name: str, tag: str = "*"):
        """The region or table named `name` (aria-label, aria-labelledby or caption)."""
        n = xpath_literal(name)
        return self.until(lambda: self.shown(
            f"//{tag}[@aria-label={n} or @aria-labelledby=//*[normalize-space(.)={n}]/@id"
            f" or caption[normalize-space(.)={n}]]"), f"no {tag} labelled {name!r}")

    def type(self, name: str, text: str) -> None:
        control = self.field(name)
        control.clear()
        control.send_keys(text)

    def check(self, name: str, on: bool = True) -> None:
        box = self.field(name)
        if box.is_selected() != on:
            box.click()
        self.until(lambda: box.is_selected() == on, f"checkbox {name!r} not {'on' if on else 'off'}")

    def choose(self, name: str, value: str) -> None:
        """A choice named `name`: a labelled select, or a radio group (fieldset legend or
        role=radiogroup aria-label) whose radio has this value."""
        from selenium.webdriver.support.ui import Select

        n = xpath_literal(name)

        def control():
            select = self._labelled_control(name)
            if select is not None and select.tag_name == "select":
                return select
            return self.shown(
                f"//fieldset[legend[normalize-space(.)={n}]]"
                f"|//*[@role='radiogroup' and (@aria-label={n} or "
                f"@aria-labelledby=//*[normalize-space(.)={n}]/@id)]")

        found = self.until(control, f"no choice named {name!r}")
        if found.tag_name == "select":
            Select(found).select_by_value(value)
        else:
            radio = found.find_element(
                self.By.XPATH, f".//input[@type='radio' and @value={xpath_literal(value)}]")
            radio.click()
            self.until(radio.is_selected, f"{name!r} {value} not chosen")

    def rows(self, table) -> list[list[str]]:
        """The cells' texts of each body row."""
        return [[c.text for c in r.find_elements(self.By.XPATH, "./td|./th")]
                for r in table.find_elements(self.By.XPATH, ".//tbody/tr|./tr[td]")]

    def accept_confirmation(self) -> None:
        """Accepts a confirm() dialog if the last click opened one (it opens synchronously)."""
        from selenium.webdriver.support import expected_conditions

        dialog = expected_conditions.alert_is_present()(self.d)
        if dialog:
            dialog.accept()

    def shot(self, path: Path) -> None:
        assert self.d.save_screenshot(str(path)), f"screenshot {path} not saved"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path


# About 12 s alone; Chromium's start-up on a busy machine gets the rest (every wait inside
# is bounded by T on its own).
@pytest.mark.timeout(120)
def test_the_console_in_a_browser(broker, clients, browser, screenshots):
    b = console_broker(broker)
    base = f"http://127.0.0.1:{b.http_port}"
    page = Page(browser)
    thing = uid("lamp")
    boto(b, "iot").create_thing(thingName=thing)

    # -- sign in: a wrong secret is said in the alert, the right one opens the console
    browser.get(f"{base}/console/")
    page.until(lambda: urllib.parse.urlsplit(browser.current_url).path == "/console/sign-in",
               f"/console/ did not send the browser to sign in: {browser.current_url}")
    page.type("Access key ID", ADMIN_KEY)
    page.type("Secret access key", "not-the-secret")
    page.button("Sign in").click()
    alert = page.until(lambda: page.shown("//*[@role='alert' and normalize-space(.)!='']"),
                       "a wrong secret shows no error in the role=alert element")
    assert ADMIN_SECRET not in alert.text
    page.type("Access key ID", ADMIN_KEY)
    page.type("Secret access key", ADMIN_SECRET)
    page.button("Sign in").click()
    page.until(lambda: urllib.parse.urlsplit(browser.current_url).path == "/console/",
               f"signing in did not open the console: {browser.current_url}")
    cookies = {c["name"]: c for c in browser.get_cookies()}
    assert cookies[COOKIE]["httpOnly"] and cookies[COOKIE]["sameSite"] == "Strict", cookies

    # -- the MQTT test client: subscribe, and a paho publisher's JSON shows, newest first
    page.nav("MQTT test client").click()
    page.until(lambda: urllib.parse.urlsplit(browser.current_url).fragment == "/test",
               f"not on #/test: {browser.current_url}")
    root = f"console/{uid('t')}"
    page.type("Topic filter", f"{root}/#")
    page.button("Subscribe").click()
    page.button(f"Unsubscribe {root}/#")

    def console_client():
        connected = signed(b, "GET", "/pubsub/clients").json()["connected"]
        return next((c for c in connected if c["clientId"].startswith("console-")
                     and f"{root}/#" in c["subscriptions"]), None)
    me = wait_until(console_client, T, msg="the page's MQTT client never subscribed at the broker")
    assert me["listener"] == "http" and me["principal"] == "admin", me

    publisher = clients.paho(b, uid("publisher"))
    first = {"temperature": 21.5, "unit": "C", "id": uid("m")}
    second = {"temperature": 22, "unit": "C", "id": uid("m")}
    publisher.publish(f"{root}/up/1", json.dumps(first, separators=(",", ":")), qos=1)
    def messages() -> str:
        return page.labelled("Messages").text
    pretty_first = json.dumps(first, indent=2)
    page.until(lambda: pretty_first in messages(),
               "the published JSON is not shown pretty-printed in Messages")
    publisher.publish(f"{root}/up/2", json.dumps(second, separators=(",", ":")), qos=0)
    pretty_second = json.dumps(second, indent=2)
    page.until(lambda: pretty_second in messages(), "the second message is not shown")
    text = messages()
    assert f"{root}/up/1" in text and f"{root}/up/2" in text, text
    assert text.index(pretty_second) < text.index(pretty_first), f"not newest first: {text!r}"

    # -- publish from the page: a paho subscriber gets it, QoS 1, retained for the next one
    subscriber = clients.paho(b, uid("subscriber"))
    subscriber.subscribe(f"{root}/down", 1)
    command = {"light": "on", "id": uid("cmd")}
    page.type("Topic name", f"{root}/down")
    page.type("Message payload", json.dumps(command))
    page.choose("Quality of Service", "1")
    page.check("Retain")
    page.button("Publish").click()
    got = subscriber.expect(T, topic=f"{root}/down")
    assert got.json() == command and got.qos == 1, got
    late = clients.paho(b, uid("late"))
    late.subscribe(f"{root}/down", 1)
    kept = late.expect(T, topic=f"{root}/down")
    assert kept.retain and kept.json() == command, f"the page's Retain was not applied: {kept}"
    page.until(lambda: json.dumps(command, indent=2) in messages(),
               "the page's own publish did not come back to its subscription")
    page.shot(screenshots / "mqtt-test-client.png")

    # what arrives while paused is held, and shown on Resume
    page.button("Pause").click()
    held = {"held": uid("m")}
    publisher.publish(f"{root}/up/3", json.dumps(held), qos=1)
    page.button("Resume").click()
    page.button("Pause")
    page.until(lambda: json.dumps(held, indent=2) in messages(), "a message held by Pause is lost")
    page.button("Clear").click()
    page.until(lambda: f"{root}/up/1" not in messages(), "Clear left the messages")
    page.button(f"Unsubscribe {root}/#").click()
    wait_until(lambda: console_client() is None, T, msg="Unsubscribe did not reach the broker")

    # -- Clients: the paho client's row, disconnected from the page
    victim = clients.paho_new(b, uid("victim"))
    victim.client.reconnect_delay_set(min_delay=60, max_delay=120)  # stays away once closed
    victim.connect()
    events = observer(clients, b, victim.client_id)
    away = clients.paho(b, uid("away"), clean_session=False)
    away.subscribe(f"{root}/away", 1)
    away.disconnect()  # a persistent session, offline
    page.nav("Clients").click()

    def listed(table: str, client_id: str) -> bool:
        """Whether a row's first cell is `client_id` (perhaps followed by a badge: ids made
        by uid() are unique whatever follows them)."""
        return any(cells and cells[0].startswith(client_id)
                   for cells in page.rows(page.labelled(table, "table")))
    page.until(lambda: listed("Connected clients", victim.client_id),
               f"{victim.client_id} not in Connected clients")
    assert listed("Connected clients", me["clientId"]), \
        "the console's own MQTT client is a connected client too"
    page.until(lambda: listed("Offline sessions", away.client_id),
               f"{away.client_id} not in Offline sessions")
    page.shot(screenshots / "clients.png")
    page.button(f"Disconnect {victim.client_id}").click()
    page.accept_confirmation()
    wait_closed(victim, "Disconnect on the Clients page")
    event = events.expect(T, topic=DISCONNECTED + victim.client_id).json()
    assert event["disconnectReason"] == "API_INITIATED_DISCONNECT", event
    page.until(lambda: not listed("Connected clients", victim.client_id),
               f"{victim.client_id} still listed after Disconnect")

    # -- Security: a denied publish in "Why denied"
    denied = clients.raw(b)
    denied_id = uid("denied")
    denied.connect_ok(denied_id)
    denied.send(publish_packet("m/denied", b"x", 1, pid=1))
    assert denied.closed_within(T), "a denied PUBLISH closes a 3.1.1 connection"
    page.nav("Security").click()

    def refusal_row():
        for cells in page.rows(page.labelled("Why denied", "table")):
            if denied_id in cells:
                return " | ".join(cells)
        return None
    row = page.until(refusal_row, f"{denied_id}'s denied publish not in Why denied")
    assert "iot:Publish" in row and f"{ARN}:topic/m/denied" in row, row
    assert "metrics-test" in row, f"the deciding policy is named: {row}"
    page.shot(screenshots / "security.png")

    # ... and the TestAuthorization form, for an identity with test_metrics' policy
    identity = f"us-east-1:{uuid.uuid4()}"
    boto(b, "iot").attach_policy(policyName="metrics-test", target=identity)
    page.type("Principal", identity)
    page.type("Client ID", uid("asker"))
    page.choose("Action", "PUBLISH")
    for resource, decision in ((f"{ARN}:topic/m/denied", "EXPLICIT_DENY"), ("topic/m/fine", "ALLOWED")):
        page.type("Resource", resource)
        page.button("Test authorization").click()

        def answered() -> bool:
            result = page.shown("//*[@aria-labelledby=//h2[normalize-space(.)='Test authorization']/@id]"
                                "//*[@role='status']")
            return result is not None and decision in result.text.split() and "metrics-test" in result.text
        page.until(answered,
                   f"Test authorization of iot:Publish on {resource}: no {decision} by metrics-test")

    # -- Things and Overview show what the broker has
    page.nav("Things and shadows").click()
    page.until(lambda: page.shown(f"//*[normalize-space(.)={xpath_literal(thing)}]"),
               f"thing {thing} not listed")
    page.nav("Overview").click()
    page.until(lambda: page.shown(f"//*[contains(normalize-space(.), {xpath_literal(b.addr)})]"),
               f"the mqtt listener's address {b.addr} not on the Overview")

    # -- Sign out: the console is closed again
    page.button("Sign out").click()
    page.until(lambda: urllib.parse.urlsplit(browser.current_url).path == "/console/sign-in",
               f"Sign out did not go to the sign-in page: {browser.current_url}")
    browser.get(f"{base}/console/")
    page.until(lambda: urllib.parse.urlsplit(browser.current_url).path == "/console/sign-in",
               "after Sign out, /console/ still opens")
    b.assert_running()
