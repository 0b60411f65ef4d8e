// PubSub console: the script of the single page `console.html` (contract: docs/CONSOLE.md).
// Hand-written, no library, no build step. Every value from the broker goes into the page
// through textContent / createElement, never as HTML.
//
// Sections: 1. helpers  2. the API  3. pages and routing  4. MqttClient (MQTT 3.1.1 over
// WebSocket)  5. MQTT test client  6. Clients  7. Security  8. Things and shadows  9. Overview.
'use strict';

// ===================================================================== 1. helpers

const $ = (id) => document.getElementById(id);

/** Builds an element: `h('td', {class: 'num'}, 'text', child)`. Strings become text nodes. */
function h(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value == null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child != null) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** A button whose accessible name (`Disconnect c1`) is longer than its visible text. */
function actionButton(visible, subject, onClick, extra) {
  return h('button', { type: 'button', 'aria-label': `${visible} ${subject}`, onclick: onClick, ...extra },
    visible, h('span', { class: 'visually-hidden' }, ` ${subject}`));
}

/** An ARN or topic with line-break chances after each ":" and "/" (rather than at its "-"). */
function breakable(text) {
  if (text == null) return '—';
  return String(text).split(/(?<=[:/])/).flatMap((part, i) => (i ? [h('wbr'), part] : [part]));
}

/** Puts `text` in an alert or status element (empty hides it, see console.css). */
function say(element, text) {
  element.textContent = text || '';
}

const pad = (n, width = 2) => String(n).padStart(width, '0');

/** 14:03:27.512 (local time), for message arrival. */
function clockTime(date) {
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

/** Unix milliseconds (or seconds, or an ISO text) as `2026-12-01 14:03:27` local time. */
function dateTime(value) {
  if (value == null || value === '') return '—';
  let date;
  if (typeof value === 'number') date = new Date(value < 1e11 ? value * 1000 : value);
  else date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
}

/** 90 → "1 min 30 s", 7300 → "2 h 1 min". */
function duration(seconds) {
  seconds = Math.max(0, Math.round(seconds));
  const d = Math.floor(seconds / 86400), hr = Math.floor(seconds / 3600) % 24;
  const min = Math.floor(seconds / 60) % 60, s = seconds % 60;
  if (d) return `${d} d ${hr} h`;
  if (hr) return `${hr} h ${min} min`;
  if (min) return `${min} min ${s} s`;
  return `${s} s`;
}

/** "3 min ago" / "in 2 h" for a Unix-milliseconds instant. */
function relative(ms) {
  const delta = (ms - Date.now()) / 1000;
  const text = duration(Math.abs(delta)).replace(/ \d+ (s|min|h)$/, '');
  return delta < 0 ? `${text} ago` : `in ${text}`;
}

/**
 * Re-indents a JSON text that JSON.parse accepted, keeping every token as written: going
 * through JSON.parse + stringify would round big integers (a 64-bit id) and reorder nothing
 * but still show a different number than the device sent.
 */
function prettyJson(text) {
  let out = '', depth = 0, inString = false;
  const newline = () => '\n' + '  '.repeat(depth);
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      out += c;
      if (c === '\\') out += text[++i];
      else if (c === '"') inString = false;
      continue;
    }
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r') continue;
    if (c === '"') { inString = true; out += c; continue; }
    if (c === '{' || c === '[') {
      // An empty object or array stays on one line.
      let j = i + 1;
      while (' \t\n\r'.includes(text[j])) j++;
      if (text[j] === (c === '{' ? '}' : ']')) { out += c + text[j]; i = j; continue; }
      depth++;
      out += c + newline();
    } else if (c === '}' || c === ']') {
      depth--;
      out += newline() + c;
    } else if (c === ',') out += ',' + newline();
    else if (c === ':') out += ': ';
    else out += c;
  }
  return out;
}

/** `text` pretty-printed when it is JSON, else as it is. */
function maybePrettyJson(text) {
  try { JSON.parse(text); } catch { return text; }
  return prettyJson(text);
}

const MAX_SHOWN_BYTES = 64 * 1024;

/**
 * How a payload is shown: JSON pretty-printed, else UTF-8 text (control characters
 * escaped so they are visible), else hex for bytes that are not UTF-8.
 */
function describePayload(bytes) {
  const size = `${bytes.length} byte${bytes.length === 1 ? '' : 's'}`;
  let text;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(0, MAX_SHOWN_BYTES));
  } catch {
    const shown = bytes.subarray(0, 4096);
    let hex = '';
    for (let i = 0; i < shown.length; i++) {
      hex += shown[i].toString(16).padStart(2, '0') + (i % 16 === 15 ? '\n' : ' ');
    }
    if (bytes.length > shown.length) hex += `… ${bytes.length - shown.length} more bytes`;
    return { kind: 'binary, hex', size, text: hex.trimEnd() };
  }
  const cut = bytes.length > MAX_SHOWN_BYTES ? `\n… ${bytes.length - MAX_SHOWN_BYTES} more bytes` : '';
  if (text.trim() !== '' && !cut) {
    try {
      JSON.parse(text);
      return { kind: 'JSON', size, text: prettyJson(text) };
    } catch { /* not JSON: shown as text */ }
  }
  const escaped = text.replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/g,
    (c) => '\\x' + c.charCodeAt(0).toString(16).padStart(2, '0'));
  return { kind: 'text', size, text: (escaped === '' ? '(empty)' : escaped) + cut };
}

/** An element showing how long ago (or ahead) `ms` is; refreshRelative() keeps it current. */
function since(ms) {
  return h('div', { class: 'muted', 'data-since': ms }, relative(ms));
}

function refreshRelative(root) {
  for (const node of root.querySelectorAll('[data-since]')) node.textContent = relative(Number(node.dataset.since));
}

/** Rebuilds `tbody` only when `data` differs from last time, so that a periodic refresh does
 *  not replace the rows (and the button a user is about to press) for nothing. */
function renderRows(tbody, data, build, emptyText, columns) {
  const key = JSON.stringify(data);
  if (tbody.dataset.key === key) return;
  tbody.dataset.key = key;
  const rows = data.length ? data.map(build) : [h('tr', { class: 'empty' }, h('td', { colspan: columns }, emptyText))];
  tbody.replaceChildren(...rows);
}

// ===================================================================== 2. the API

class ApiError extends Error {
  constructor(status, type, message) {
    super(message);
    this.status = status;
    this.type = type;
  }
}

/**
 * Calls the console API: `path` under `/console/api/iot` (the control plane, answered as the
 * admin) unless it starts with `/console/`. `body`: an object (sent as JSON) or a JSON text.
 * Answers the parsed JSON; throws ApiError with the answer's `message`. A 401 means the
 * session is over: back to the sign-in page.
 */
async function api(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: { 'X-PubSub-Console': '1' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path.startsWith('/console/') ? path : '/console/api/iot' + path, init);
  } catch (error) {
    throw new ApiError(0, 'NetworkError', `the broker did not answer (${error.message})`);
  }
  if (response.status === 401) {
    location.assign('/console/sign-in');
    throw new ApiError(401, 'Unauthorized', 'signed out: sign in again');
  }
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : {}; } catch { data = null; }
  if (!response.ok) {
    const type = (response.headers.get('x-amzn-ErrorType') || (data && data.__type) || '').split(':')[0];
    const message = (data && (data.message || data.Message)) || text || `HTTP ${response.status}`;
    throw new ApiError(response.status, type, message);
  }
  if (data === null) throw new ApiError(response.status, '', 'the answer is not JSON');
  return data;
}

/** An error as a line for an alert: the API's message, with its exception name. */
function errorText(error) {
  if (error instanceof ApiError && error.type) return `${error.message} (${error.type})`;
  return error.message || String(error);
}

// ===================================================================== 3. pages and routing

/** Each page: its section, what to do when shown / hidden. Filled in by the sections below. */
const pages = {};

/** Runs `task` (async) every `ms` while `isActive()`; the next run starts after the last ends. */
function poll(task, ms, isActive) {
  let timer = null, running = false;
  const run = async () => {
    timer = null;
    if (running || !isActive()) return;
    running = true;
    try { await task(); } finally {
      running = false;
      if (isActive() && timer === null) timer = setTimeout(run, ms);
    }
  };
  return {
    /** Runs now (unless a run is under way) and then every `ms`. */
    start() { clearTimeout(timer); timer = null; run(); },
    stop() { clearTimeout(timer); timer = null; },
  };
}

let currentPage = null;

function route(moveFocus) {
  // Routes are `#/name`; another fragment (the skip link's `#main`) keeps the page shown.
  const wanted = /^#\/([a-z]+)$/.exec(location.hash);
  const name = wanted && pages[wanted[1]] ? wanted[1] : (currentPage || 'test');
  if (name === currentPage) return;
  if (currentPage) {
    pages[currentPage].section.hidden = true;
    pages[currentPage].hide?.();
  }
  currentPage = name;
  const page = pages[name];
  page.section.hidden = false;
  for (const link of document.querySelectorAll('nav a[data-page]')) {
    if (link.dataset.page === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  document.title = `${page.title} · PubSub console`;
  page.show?.();
  // After a click in the navigation, a screen reader continues at the new page's heading.
  if (moveFocus) page.section.querySelector('h1').focus();
}

const isShown = (name) => () => currentPage === name && !document.hidden;

// ===================================================================== 4. MqttClient

// MQTT 3.1.1 (OASIS standard) over a WebSocket, as much as the test client needs: CONNECT
// with a clean session, SUBSCRIBE / UNSUBSCRIBE, PUBLISH at QoS 0 and 1 both ways, PINGREQ.
// Packets: a fixed header (type << 4 | flags, then the remaining length as a base-128
// varint of 1–4 bytes), then the packet's own bytes. A WebSocket message may hold several
// packets or a part of one, so received bytes are buffered and cut into packets.

const CONNECT = 1, CONNACK = 2, PUBLISH = 3, PUBACK = 4, SUBSCRIBE = 8, SUBACK = 9,
  UNSUBSCRIBE = 10, UNSUBACK = 11, PINGREQ = 12, PINGRESP = 13, DISCONNECT = 14;

const KEEP_ALIVE_SECONDS = 60;
const PING_EVERY_MS = 30_000;
const ANSWER_TIMEOUT_MS = 10_000;

/** CONNACK return codes of MQTT 3.1.1 (§3.2.2.3). */
const CONNACK_REFUSALS = {
  1: 'unacceptable protocol version',
  2: 'client identifier rejected',
  3: 'server unavailable',
  4: 'bad user name or password',
  5: 'not authorized',
};

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

/** The remaining-length varint of `length`. */
function encodeLength(length) {
  const bytes = [];
  do {
    let byte = length % 128;
    length = Math.floor(length / 128);
    if (length > 0) byte |= 0x80;
    bytes.push(byte);
  } while (length > 0);
  return bytes;
}

/** A packet: fixed header byte, remaining length, then `parts` (byte arrays) one after another. */
function packet(firstByte, ...parts) {
  const length = parts.reduce((sum, part) => sum + part.length, 0);
  const header = [firstByte, ...encodeLength(length)];
  const out = new Uint8Array(header.length + length);
  out.set(header, 0);
  let at = header.length;
  for (const part of parts) { out.set(part, at); at += part.length; }
  return out;
}

const u16 = (n) => [n >> 8, n & 0xff];

/** An MQTT UTF-8 string: two length bytes, then the bytes. */
function mqttString(text) {
  const bytes = utf8.encode(text);
  const out = new Uint8Array(2 + bytes.length);
  out.set(u16(bytes.length), 0);
  out.set(bytes, 2);
  return out;
}

class MqttClient {
  /**
   * `events`: onConnected(), onClosed(reason), onMessage({topic, payload, qos, retain, dup}).
   */
  constructor(events) {
    this.events = events;
    this.socket = null;
    this.connected = false;
    this.buffer = new Uint8Array(0);
    this.nextPacketId = 1;
    this.waiting = new Map(); // packet id → {resolve, reject, timer}: PUBACK, SUBACK, UNSUBACK
    this.pingTimer = null;
    this.pingOutstanding = false;
    this.closeReason = null;
  }

  /** Opens the WebSocket at `url` (presigned) and sends CONNECT as `clientId`. */
  open(url, clientId) {
    this.close('replaced by a new connection');
    const socket = new WebSocket(url, ['mqtt']);
    socket.binaryType = 'arraybuffer';
    this.socket = socket;
    this.buffer = new Uint8Array(0);
    this.closeReason = null;
    // A stale socket's late events must not touch the current connection's state.
    const current = () => this.socket === socket;
    socket.onopen = () => {
      if (!current()) return;
      // Protocol name "MQTT", level 4 (3.1.1), flags: clean session only, keep-alive.
      const variableHeader = new Uint8Array([0, 4, 77, 81, 84, 84, 4, 0x02, ...u16(KEEP_ALIVE_SECONDS)]);
      socket.send(packet(CONNECT << 4, variableHeader, mqttString(clientId)));
      this.connackTimer = setTimeout(() => this.fail('no CONNACK within 10 s'), ANSWER_TIMEOUT_MS);
    };
    socket.onmessage = (event) => {
      if (!current()) return;
      if (!(event.data instanceof ArrayBuffer)) return this.fail('the broker sent a text frame');
      this.receive(new Uint8Array(event.data));
    };
    socket.onerror = () => {
      if (current() && !this.closeReason) this.closeReason = 'the WebSocket failed';
    };
    socket.onclose = (event) => {
      if (!current()) return;
      this.socket = null;
      let reason = this.closeReason;
      if (!reason) {
        // 1006: no closing handshake (refused upgrade, lost network); 1005: a close without a code.
        if (event.code === 1006) reason = 'the connection was refused or lost (WebSocket 1006)';
        else if (event.reason) reason = `the broker closed the connection: ${event.reason} (WebSocket ${event.code})`;
        else reason = `the broker closed the connection (WebSocket ${event.code}${event.code === 1005 ? ', no reason given' : ''})`;
      }
      this.ended(reason);
    };
  }

  /** Sends DISCONNECT and closes (a deliberate close reports no reason to onClosed). */
  close(reason) {
    const socket = this.socket;
    if (!socket) return;
    this.socket = null;
    if (socket.readyState === WebSocket.OPEN && this.connected) socket.send(packet(DISCONNECT << 4));
    socket.close(1000);
    this.ended(reason, true);
  }

  /** Closes because of a protocol problem (or a silent broker): onClosed(reason). */
  fail(reason) {
    const socket = this.socket;
    if (!socket) return;
    this.socket = null;
    socket.close(1000);
    this.ended(reason, false);
  }

  /** What is left to do once the connection is gone, whoever closed it. */
  ended(reason, deliberate) {
    this.connected = false;
    clearTimeout(this.connackTimer);
    clearInterval(this.pingTimer);
    for (const { reject, timer } of this.waiting.values()) {
      clearTimeout(timer);
      const error = new Error(`connection closed: ${reason}`);
      error.connectionClosed = true;
      reject(error);
    }
    this.waiting.clear();
    if (!deliberate) this.events.onClosed(reason);
  }

  send(bytes) {
    if (!this.socket || !this.connected) throw new Error('not connected to the broker');
    this.socket.send(bytes);
  }

  /** A free packet identifier (1–65535). */
  packetId() {
    for (;;) {
      const id = this.nextPacketId;
      this.nextPacketId = id === 65535 ? 1 : id + 1;
      if (!this.waiting.has(id)) return id;
    }
  }

  /** Sends `bytes` and waits for the answer carrying `id`. */
  request(id, bytes, what) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`no ${what} from the broker within 10 s`));
      }, ANSWER_TIMEOUT_MS);
      this.waiting.set(id, { resolve, reject, timer });
      try { this.send(bytes); } catch (error) {
        clearTimeout(timer);
        this.waiting.delete(id);
        reject(error);
      }
    });
  }

  /** Subscribes at QoS 1; answers the SUBACK return code (0x80: refused). */
  async subscribe(filter) {
    const id = this.packetId();
    const codes = await this.request(id,
      packet(SUBSCRIBE << 4 | 0x02, u16(id), mqttString(filter), [1]), 'SUBACK');
    return codes[0];
  }

  async unsubscribe(filter) {
    const id = this.packetId();
    await this.request(id, packet(UNSUBSCRIBE << 4 | 0x02, u16(id), mqttString(filter)), 'UNSUBACK');
  }

  /** Publishes; at QoS 1 resolves when the PUBACK arrives. */
  async publish(topic, payload, qos, retain) {
    const first = PUBLISH << 4 | qos << 1 | (retain ? 1 : 0);
    if (qos === 0) {
      this.send(packet(first, mqttString(topic), payload));
      return;
    }
    const id = this.packetId();
    await this.request(id, packet(first, mqttString(topic), u16(id), payload), 'PUBACK');
  }

  /** Appends received bytes and handles every complete packet in them. */
  receive(bytes) {
    const joined = new Uint8Array(this.buffer.length + bytes.length);
    joined.set(this.buffer, 0);
    joined.set(bytes, this.buffer.length);
    let buffer = joined;
    while (buffer.length >= 2) {
      let length = 0, multiplier = 1, at = 1, byte;
      do {
        if (at >= buffer.length) { this.buffer = buffer; return; } // the length is not all here yet
        if (at > 4) return this.fail('malformed remaining length');
        byte = buffer[at++];
        length += (byte & 0x7f) * multiplier;
        multiplier *= 128;
      } while (byte & 0x80);
      if (buffer.length < at + length) break; // the rest of this packet comes later
      const body = buffer.subarray(at, at + length);
      this.handle(buffer[0] >> 4, buffer[0] & 0x0f, body);
      if (!this.socket) return; // handle() closed the connection
      buffer = buffer.subarray(at + length);
    }
    this.buffer = buffer;
  }

  handle(type, flags, body) {
    const idOf = (at) => (body[at] << 8) | body[at + 1];
    switch (type) {
      case CONNACK: {
        clearTimeout(this.connackTimer);
        const code = body.length === 2 ? body[1] : -1;
        if (code !== 0) return this.fail(`the broker refused the connection: ${CONNACK_REFUSALS[code] || 'CONNACK code ' + code}`);
        this.connected = true;
        this.pingOutstanding = false;
        this.pingTimer = setInterval(() => this.ping(), PING_EVERY_MS);
        this.events.onConnected();
        return;
      }
      case PUBLISH: {
        const qos = (flags >> 1) & 0x03;
        const topicLength = idOf(0);
        const topic = fromUtf8.decode(body.subarray(2, 2 + topicLength));
        let at = 2 + topicLength;
        let id = null;
        if (qos > 0) { id = idOf(at); at += 2; }
        // Acknowledge first: showing the message cannot then delay or lose the PUBACK.
        if (qos === 1) this.socket.send(packet(PUBACK << 4, u16(id)));
        if (qos === 2) return this.fail('the broker sent a QoS 2 message; this client subscribes at QoS 1');
        this.events.onMessage({ topic, payload: body.slice(at), qos, retain: (flags & 1) === 1, dup: (flags & 8) === 8 });
        return;
      }
      case PUBACK: case UNSUBACK: case SUBACK: {
        const id = idOf(0);
        const waiter = this.waiting.get(id);
        if (!waiter) return;
        this.waiting.delete(id);
        clearTimeout(waiter.timer);
        waiter.resolve(type === SUBACK ? Array.from(body.subarray(2)) : undefined);
        return;
      }
      case PINGRESP:
        this.pingOutstanding = false;
        return;
      default:
        this.fail(`unexpected MQTT packet type ${type}`);
    }
  }

  /** Keeps the connection alive; a PINGREQ left unanswered for 30 s means it is gone. */
  ping() {
    if (this.pingOutstanding) return this.fail('the broker did not answer PINGREQ');
    this.pingOutstanding = true;
    try { this.send(packet(PINGREQ << 4)); } catch { /* closing already */ }
  }
}

// ===================================================================== 5. MQTT test client

const testClient = (() => {
  const status = $('mqtt-status');
  const alert = $('test-error');
  const list = $('message-list');
  const count = $('message-count');
  const pauseButton = $('pause-button');
  const subscriptionList = $('subscriptions');
  /** filter → 'pending' (asked, or to ask once connected) | 'active' */
  const subscriptions = new Map();
  const MAX_MESSAGES = 500;
  let shown = 0, paused = false, held = [], clientId = null, retryMs = 3000, retryTimer = null;
  /** {topic, at}: a QoS 0 publish has no answer, so a close just after it is the only sign of a refusal. */
  let lastQos0Publish = null;

  const client = new MqttClient({
    onConnected() {
      retryMs = 3000;
      setStatus('connected', `Connected as ${clientId}`);
      for (const filter of subscriptions.keys()) subscribe(filter, true);
    },
    onClosed(reason) {
      if (lastQos0Publish && Date.now() - lastQos0Publish.at < 2000) {
        say(alert, `The connection closed right after publishing to ${lastQos0Publish.topic}: IoT Core closes an ` +
          'MQTT 3.1.1 connection whose PUBLISH it refuses (see Security, "Why denied").');
      }
      lastQos0Publish = null;
      for (const filter of subscriptions.keys()) subscriptions.set(filter, 'pending');
      renderSubscriptions();
      reconnectLater(reason);
    },
    onMessage(message) {
      message.time = new Date();
      if (!paused) {
        showMessage(message);
      } else {
        held.push(message);
        if (held.length > MAX_MESSAGES) held.shift(); // only the latest would be shown anyway
      }
      updateCount();
    },
  });

  function setStatus(state, text) {
    status.dataset.state = state;
    status.textContent = text;
  }

  function reconnectLater(reason) {
    const seconds = Math.round(retryMs / 1000);
    setStatus('disconnected', `Disconnected: ${reason}. Reconnecting in ${seconds} s.`);
    clearTimeout(retryTimer);
    retryTimer = setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 30_000);
  }

  /** Asks for a fresh presigned URL (each is valid for 300 s) and connects with it. */
  async function connect() {
    setStatus('connecting', 'Connecting…');
    let info;
    try {
      info = await api('GET', '/console/api/mqtt');
    } catch (error) {
      if (error.status !== 401) reconnectLater(`no connection URL (${errorText(error)})`);
      return;
    }
    clientId = info.clientId;
    try {
      client.open(info.url, info.clientId);
    } catch (error) { // a URL the WebSocket constructor refuses
      reconnectLater(`the WebSocket could not be opened (${error.message})`);
    }
  }

  /** A topic filter's shape (MQTT §4.7): `#` only last and alone in its level, `+` alone. */
  function filterProblem(filter) {
    if (filter === '') return 'Enter a topic filter.';
    const levels = filter.split('/');
    for (let i = 0; i < levels.length; i++) {
      if (levels[i].includes('#') && (levels[i] !== '#' || i !== levels.length - 1)) {
        return '"#" must be the whole last level of a topic filter.';
      }
      if (levels[i].includes('+') && levels[i] !== '+') return '"+" must be a whole level of a topic filter.';
    }
    return null;
  }

  async function subscribe(filter, again) {
    subscriptions.set(filter, 'pending');
    renderSubscriptions();
    if (!client.connected) return;
    let code;
    try {
      code = await client.subscribe(filter);
    } catch (error) {
      if (error.connectionClosed && !again) {
        // IoT Core closes the connection on a SUBSCRIBE it refuses (a filter beyond its
        // limits): subscribing again after reconnecting would close it again, so it goes.
        subscriptions.delete(filter);
        renderSubscriptions();
        say(alert, `The broker closed the connection when asked to subscribe to ${filter}, as IoT Core does ` +
          'for a topic filter it refuses (too long, too many levels, or not allowed); the broker\'s log says why. ' +
          'The filter is dropped.');
      } else if (!error.connectionClosed) {
        say(alert, `Subscribing to ${filter} failed: ${error.message}`);
      }
      return;
    }
    if (!subscriptions.has(filter)) return; // unsubscribed meanwhile
    if (code === 0x80) {
      subscriptions.delete(filter);
      say(alert, `The broker refused the subscription to ${filter} (SUBACK 0x80): no policy allows iot:Subscribe on it.`);
    } else {
      subscriptions.set(filter, 'active');
      if (!again) say(alert, '');
    }
    renderSubscriptions();
  }

  async function unsubscribe(filter) {
    const wasActive = subscriptions.get(filter) === 'active';
    subscriptions.delete(filter);
    renderSubscriptions();
    if (!wasActive || !client.connected) return;
    try {
      await client.unsubscribe(filter);
    } catch (error) {
      say(alert, `Unsubscribing from ${filter} failed: ${error.message}`);
    }
  }

  function renderSubscriptions() {
    const items = [...subscriptions].map(([filter, state]) => h('li', { class: `subscription ${state}` },
      h('code', {}, filter),
      h('span', { class: 'muted' }, state === 'active' ? 'subscribed' : 'subscribing…'),
      actionButton('Unsubscribe', filter, () => unsubscribe(filter), { class: 'small' })));
    subscriptionList.replaceChildren(...items);
    $('no-subscriptions').hidden = items.length > 0;
  }

  function showMessage({ topic, payload, qos, retain, dup, time }) {
    const shownPayload = describePayload(payload);
    const item = h('li', { class: 'message' },
      h('div', { class: 'message-meta' },
        h('span', { class: 'topic' }, topic),
        h('time', { datetime: time.toISOString() }, clockTime(time)),
        h('span', { class: 'badge' }, `QoS ${qos}`),
        h('span', { class: retain ? 'badge retained' : 'badge quiet' }, retain ? 'Retained' : 'Not retained'),
        dup ? h('span', { class: 'badge' }, 'Duplicate') : null,
        h('span', { class: 'muted' }, `${shownPayload.kind}, ${shownPayload.size}`)),
      h('pre', { class: 'payload', tabindex: '0', 'aria-label': `Payload of the message on ${topic}` }, shownPayload.text));
    list.prepend(item);
    shown++;
    while (shown > MAX_MESSAGES) { list.lastElementChild.remove(); shown--; }
  }

  function updateCount() {
    let text = shown === 0 ? (paused ? 'No messages shown' : 'No messages yet.') : `${shown} message${shown === 1 ? '' : 's'}${shown >= MAX_MESSAGES ? ' (the latest)' : ''}`;
    if (paused) text += `; paused, ${held.length} held`;
    count.textContent = text;
  }

  $('subscribe-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const input = $('topic-filter');
    const filter = input.value.trim();
    const problem = filterProblem(filter);
    if (problem) { say(alert, problem); input.focus(); return; }
    if (subscriptions.has(filter)) { say(alert, `Already subscribed to ${filter}.`); return; }
    say(alert, '');
    subscribe(filter, false);
  });

  $('publish-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const publishStatus = $('publish-status');
    const topic = $('topic-name').value.trim();
    const qos = Number($('publish-qos').value);
    const retain = $('publish-retain').checked;
    say(publishStatus, '');
    if (topic === '') { say(alert, 'Enter a topic name.'); $('topic-name').focus(); return; }
    if (/[#+]/.test(topic)) { say(alert, 'A topic name cannot hold the wildcards "+" or "#".'); return; }
    say(alert, '');
    try {
      await client.publish(topic, utf8.encode($('message-payload').value), qos, retain);
      if (qos === 0) lastQos0Publish = { topic, at: Date.now() };
      say(publishStatus, qos === 1 ? `Published to ${topic} (QoS 1, acknowledged by the broker).` : `Published to ${topic} (QoS 0).`);
    } catch (error) {
      say(alert, error.connectionClosed
        ? `Publishing to ${topic} failed: the broker closed the connection, as IoT Core does for an MQTT 3.1.1 ` +
          'PUBLISH it refuses (see Security, "Why denied").'
        : `Publishing to ${topic} failed: ${error.message}`);
    }
  });

  pauseButton.addEventListener('click', () => {
    paused = !paused;
    pauseButton.textContent = paused ? 'Resume' : 'Pause';
    if (!paused) {
      for (const message of held) showMessage(message);
      held = [];
    }
    updateCount();
  });

  $('clear-button').addEventListener('click', () => {
    list.replaceChildren();
    shown = 0;
    held = [];
    updateCount();
  });

  renderSubscriptions();
  return { connect };
})();

pages.test = { section: $('page-test'), title: 'MQTT test client' };

// ===================================================================== 6. Clients

(() => {
  const alert = $('clients-error');
  const statusLine = $('clients-status');
  const connectedBody = $('connected-table').tBodies[0];
  const offlineBody = $('offline-table').tBodies[0];

  /** Subscriptions as a short list (the first few, then how many more). */
  function filters(list) {
    if (!list || list.length === 0) return h('span', { class: 'muted' }, 'none');
    const shown = list.slice(0, 4).map((filter) => h('code', { class: 'chip' }, filter));
    if (list.length > 4) shown.push(h('span', { class: 'muted' }, ` +${list.length - 4} more`));
    return h('div', { class: 'chips' }, shown);
  }

  async function disconnect(clientId) {
    say(statusLine, '');
    try {
      await api('DELETE', `/connections/${encodeURIComponent(clientId)}`);
      say(alert, '');
      say(statusLine, `Disconnected ${clientId}.`);
    } catch (error) {
      say(alert, `Disconnecting ${clientId} failed: ${errorText(error)}`);
    }
    await refresh();
  }

  let listFailed = false;

  async function refresh() {
    let answer;
    try {
      answer = await api('GET', '/pubsub/clients');
    } catch (error) {
      say(alert, `The client list could not be read: ${errorText(error)}`);
      listFailed = true;
      return;
    }
    // Clears only its own error: a failed Disconnect stays shown.
    if (listFailed) { say(alert, ''); listFailed = false; }
    $('clients-updated').textContent = `Updated ${clockTime(new Date()).slice(0, 8)}`;
    renderRows(connectedBody, answer.connected || [], (c) => h('tr', {},
      h('td', { class: 'mono' }, c.clientId,
        c.clientId.startsWith('console-') ? h('span', { class: 'badge quiet' }, 'console') : null),
      h('td', { class: 'mono wrap' }, c.principal ?? '—'),
      h('td', {}, c.listener ?? '—', c.peer ? h('div', { class: 'muted mono' }, c.peer) : null),
      h('td', {}, c.protocol ? `MQTT ${c.protocol}` : '—'),
      h('td', {}, dateTime(c.connectedAt), c.connectedAt ? since(c.connectedAt) : null),
      h('td', {}, filters(c.subscriptions)),
      h('td', { class: 'num' }, String(c.queued ?? 0)),
      h('td', {}, actionButton('Disconnect', c.clientId, () => disconnect(c.clientId), { class: 'small danger' }))),
    'No client is connected.', 8);
    renderRows(offlineBody, answer.offline || [], (s) => h('tr', {},
      h('td', { class: 'mono' }, s.clientId),
      h('td', {}, filters(s.subscriptions)),
      h('td', { class: 'num' }, String(s.queued ?? 0)),
      h('td', {}, s.expiresAt ? [dateTime(s.expiresAt), since(s.expiresAt)] : 'never')),
    'No persistent session is offline.', 4);
    // Rows stay when the data does not change; their "3 min ago" must move on anyway.
    refreshRelative($('page-clients'));
  }

  const poller = poll(refresh, 3000, isShown('clients'));
  $('clients-refresh').addEventListener('click', refresh);
  pages.clients = {
    section: $('page-clients'), title: 'Clients', poller,
    show: () => poller.start(), hide: () => poller.stop(),
  };
})();

// ===================================================================== 7. Security

(() => {
  const alert = $('security-error');
  /** `arn:aws:iot:REGION:ACCOUNT:` of this broker, learnt from a policy ARN it lists. */
  let arnPrefix = null;

  // ---- certificates

  const certificatesAlert = $('certificates-error');
  const certificatesStatus = $('certificates-status');

  async function setStatus(certificate, newStatus) {
    if (newStatus === 'REVOKED' &&
        !confirm(`Revoke certificate ${certificate.certificateId}? A revoked certificate cannot be activated again.`)) return;
    say(certificatesStatus, '');
    try {
      await api('PUT', `/certificates/${encodeURIComponent(certificate.certificateId)}?newStatus=${newStatus}`);
      say(certificatesAlert, '');
      say(certificatesStatus, `Certificate ${certificate.certificateId} is now ${newStatus}.`);
    } catch (error) {
      say(certificatesAlert, `Updating certificate ${certificate.certificateId} failed: ${errorText(error)}`);
    }
    await loadCertificates();
  }

  async function loadCertificates() {
    let certificates;
    try {
      certificates = (await api('GET', '/certificates')).certificates || [];
      // ListAttachedPolicies per certificate (target: its ARN).
      await Promise.all(certificates.map(async (certificate) => {
        const answer = await api('POST', `/attached-policies/${encodeURIComponent(certificate.certificateArn)}`);
        certificate.policies = (answer.policies || []).map((p) => p.policyName);
      }));
    } catch (error) {
      say(certificatesAlert, `The certificates could not be read: ${errorText(error)}`);
      return;
    }
    const principals = $('known-principals');
    principals.replaceChildren(...certificates.map((c) => h('option', { value: c.certificateId })));
    renderRows($('certificates-table').tBodies[0], certificates, (c) => h('tr', {},
      h('td', { class: 'mono wrap' }, c.certificateId),
      h('td', {}, h('span', { class: `badge status-${String(c.status).toLowerCase()}` }, c.status)),
      h('td', {}, dateTime(c.creationDate)),
      h('td', {}, c.policies.length ? h('div', { class: 'chips' }, c.policies.map((p) => h('code', { class: 'chip' }, p)))
        : h('span', { class: 'muted' }, 'none')),
      h('td', { class: 'buttons nowrap' },
        actionButton('Activate', `certificate ${c.certificateId}`, () => setStatus(c, 'ACTIVE'),
          { class: 'small', disabled: c.status === 'ACTIVE' || c.status === 'REVOKED' }),
        actionButton('Deactivate', `certificate ${c.certificateId}`, () => setStatus(c, 'INACTIVE'),
          { class: 'small', disabled: c.status !== 'ACTIVE' }),
        actionButton('Revoke', `certificate ${c.certificateId}`, () => setStatus(c, 'REVOKED'),
          { class: 'small danger', disabled: c.status === 'REVOKED' }))),
    'No certificate is registered.', 5);
  }

  // ---- policies

  async function viewPolicy(name) {
    try {
      const policy = await api('GET', `/policies/${encodeURIComponent(name)}`);
      const targets = await api('POST', `/policy-targets/${encodeURIComponent(name)}`).catch(() => null);
      $('policy-viewer-empty').hidden = true;
      $('policy-viewer-body').hidden = false;
      $('policy-viewer-name').textContent = policy.policyName;
      $('policy-viewer-targets').replaceChildren(...(targets
        ? (targets.targets.length ? ['Attached to: ', ...breakable(targets.targets.join(', '))] : ['Attached to nothing.'])
        : []));
      $('policy-viewer-document').textContent = maybePrettyJson(policy.policyDocument || '');
      for (const row of $('policies-table').tBodies[0].rows) {
        row.classList.toggle('selected', row.dataset.name === name);
      }
    } catch (error) {
      say($('policies-error'), `Policy ${name} could not be read: ${errorText(error)}`);
    }
  }

  async function loadPolicies() {
    let policies;
    try {
      policies = (await api('GET', '/policies')).policies || [];
    } catch (error) {
      say($('policies-error'), `The policies could not be read: ${errorText(error)}`);
      return;
    }
    const known = policies.find((p) => /^arn:[^:]+:iot:[^:]*:[^:]*:/.test(p.policyArn || ''));
    if (known) {
      arnPrefix = known.policyArn.match(/^arn:[^:]+:iot:[^:]*:[^:]*:/)[0];
      $('arn-example').textContent = `${arnPrefix}topic/sensors/1`;
    }
    renderRows($('policies-table').tBodies[0], policies, (p) => h('tr', { 'data-name': p.policyName },
      h('td', { class: 'mono' }, p.policyName),
      h('td', {}, actionButton('View', `policy ${p.policyName}`, () => viewPolicy(p.policyName), { class: 'small' }))),
    'No policy exists.', 2);
  }

  /** Shows where a MalformedPolicyException's "line L, column C" points in the editor. */
  function markPolicyError(textarea, message) {
    const excerpt = $('policy-error-excerpt');
    const at = /line (\d+), column (\d+)/.exec(message);
    if (!at) { excerpt.hidden = true; return; }
    const line = Number(at[1]), column = Number(at[2]);
    const lines = textarea.value.split('\n');
    const number = (n) => String(n).padStart(String(line).length, ' ') + ' | ';
    const parts = [];
    if (line >= 2) parts.push(number(line - 1) + lines[line - 2] + '\n');
    const text = lines[line - 1] ?? '';
    const col = Math.max(1, Math.min(column, text.length || 1));
    parts.push(number(line) + text.slice(0, col - 1),
      h('mark', {}, text.slice(col - 1, col) || ' '), text.slice(col) + '\n');
    parts.push(' '.repeat(number(line).length + col - 1) + `^ line ${line}, column ${column}`);
    excerpt.replaceChildren(...parts);
    excerpt.hidden = false;
    // Put the caret (and a one-character selection) where the error is.
    let offset = 0;
    for (let i = 0; i < line - 1 && i < lines.length; i++) offset += lines[i].length + 1;
    offset += col - 1;
    textarea.focus();
    textarea.setSelectionRange(offset, Math.min(offset + 1, textarea.value.length));
  }

  $('create-policy-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const formAlert = $('create-policy-error');
    const name = $('policy-name').value.trim();
    const textarea = $('policy-document');
    textarea.removeAttribute('aria-invalid');
    $('policy-error-excerpt').hidden = true;
    say(formAlert, '');
    say($('create-policy-status'), '');
    if (!name) { say(formAlert, 'Enter a policy name.'); $('policy-name').focus(); return; }
    try {
      await api('POST', `/policies/${encodeURIComponent(name)}`, { policyDocument: textarea.value });
    } catch (error) {
      say(formAlert, `Policy ${name} was not created: ${errorText(error)}`);
      if (error.type === 'MalformedPolicyException') {
        textarea.setAttribute('aria-invalid', 'true');
        markPolicyError(textarea, error.message);
      }
      return;
    }
    say($('create-policy-status'), `Policy ${name} created.`);
    await loadPolicies();
    viewPolicy(name);
  });

  // ---- why denied

  async function loadRefusals() {
    let refusals;
    try {
      refusals = (await api('GET', '/pubsub/refusals')).refusals || [];
    } catch (error) {
      say(alert, `The refusals could not be read: ${errorText(error)}`);
      return;
    }
    $('refusals-updated').textContent = `Updated ${clockTime(new Date()).slice(0, 8)}`;
    renderRows($('refusals-table').tBodies[0], refusals, (r) => h('tr', {},
      h('td', { class: 'nowrap' }, dateTime(r.time)),
      h('td', { class: 'mono' }, r.clientId ?? h('span', { class: 'muted' }, 'none (HTTP)')),
      h('td', { class: 'mono wrap' }, r.principal ?? '—'),
      h('td', { class: 'mono nowrap' }, r.action ?? '—'),
      h('td', { class: 'mono wrap' }, breakable(r.resource)),
      h('td', { class: 'mono' }, r.policy ?? h('span', { class: 'muted' }, 'none (implicit deny)')),
      h('td', {}, r.statement == null ? '—' : String(r.statement), r.sid ? h('div', { class: 'muted mono' }, `Sid ${r.sid}`) : null),
      h('td', { class: 'wrap' }, r.reason ?? '', r.outcome ? h('div', { class: 'muted' }, r.outcome) : null),
      h('td', {}, testActionOf(r.action) && r.principal
        ? actionButton('Test again', `${r.action} on ${r.resource}`, () => testAgain(r), { class: 'small' })
        : null)),
    'Nothing has been refused yet.', 9);
  }

  // ---- test authorization

  /** The Action choice (its value: the actionType sent) for a refusal's action, if offered. */
  function testActionOf(action) {
    const option = [...$('auth-action').options].find((o) => o.textContent === action);
    return option ? option.value : null;
  }

  /** Asks TestAuthorization the question a refusal answered: the form shows why, today. */
  function testAgain(refusal) {
    $('auth-principal').value = refusal.principal;
    $('auth-client-id').value = refusal.clientId ?? '';
    $('auth-action').value = testActionOf(refusal.action);
    $('auth-resource').value = refusal.resource;
    $('test-auth-heading').scrollIntoView({ block: 'start' });
    $('test-auth-form').requestSubmit();
  }

  function policyNames(list) {
    const names = (list && list.policies || []).map((p) => p.policyName);
    return names.length ? names.join(', ') : 'none';
  }

  $('test-auth-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const result = $('auth-result');
    const principal = $('auth-principal').value.trim();
    const clientId = $('auth-client-id').value.trim();
    let resource = $('auth-resource').value.trim();
    const formAlert = $('auth-error');
    if (!principal) { say(formAlert, 'Enter the principal to test.'); $('auth-principal').focus(); return; }
    if (!resource) { say(formAlert, 'Enter the resource (an ARN) to test.'); $('auth-resource').focus(); return; }
    if (!resource.startsWith('arn:') && arnPrefix) resource = arnPrefix + resource;
    const body = { principal, authInfos: [{ actionType: $('auth-action').value, resources: [resource] }] };
    if (clientId) body.clientId = clientId;
    result.replaceChildren();
    let answer;
    try {
      answer = await api('POST', '/test-authorization', body);
    } catch (error) {
      say(formAlert, `Test authorization failed: ${errorText(error)}`);
      return;
    }
    say(formAlert, '');
    const outcome = (answer.authResults || [])[0];
    if (!outcome) { say(result, 'The broker gave no result.'); return; }
    const decision = outcome.authDecision;
    result.replaceChildren(
      h('p', { class: `decision ${decision === 'ALLOWED' ? 'allowed' : 'denied'}` }, decision),
      h('dl', { class: 'facts' },
        h('dt', {}, 'Question'),
        h('dd', { class: 'mono wrap' }, `${$('auth-action').selectedOptions[0].textContent} on `, breakable(resource)),
        h('dt', {}, 'Allowed by'), h('dd', { class: 'mono' }, policyNames(outcome.allowed)),
        h('dt', {}, 'Explicitly denied by'), h('dd', { class: 'mono' }, policyNames(outcome.denied?.explicitDeny)),
        h('dt', {}, 'Implicitly denied (no statement allows) by'), h('dd', { class: 'mono' }, policyNames(outcome.denied?.implicitDeny)),
        h('dt', {}, 'Reason'), h('dd', { class: 'wrap' }, outcome.reason || '—')));
  });

  const refusalPoller = poll(loadRefusals, 3000, isShown('security'));
  $('certificates-refresh').addEventListener('click', loadCertificates);
  $('policies-refresh').addEventListener('click', loadPolicies);
  pages.security = {
    section: $('page-security'), title: 'Security', poller: refusalPoller,
    show() { refusalPoller.start(); loadCertificates(); loadPolicies(); },
    hide: () => refusalPoller.stop(),
  };
})();

// ===================================================================== 8. Things and shadows

(() => {
  const alert = $('things-error');
  const statusLine = $('desired-status');
  let selected = null; // the thing shown
  let shadowDocs = new Map(); // shadow name ('' = classic) → its document

  async function loadThings() {
    const things = [];
    try {
      // ListThings pages on nextToken; 20 pages of 250 are more than a console should list.
      let token = '';
      for (let pageNo = 0; pageNo < 20; pageNo++) {
        const answer = await api('GET', `/things?maxResults=250${token ? '&nextToken=' + encodeURIComponent(token) : ''}`);
        things.push(...(answer.things || []));
        token = answer.nextToken;
        if (!token) break;
      }
    } catch (error) {
      say(alert, `The things could not be read: ${errorText(error)}`);
      return;
    }
    say(alert, '');
    renderRows($('things-table').tBodies[0], things, (t) => h('tr', { 'data-name': t.thingName, class: t.thingName === selected ? 'selected' : null },
      h('td', {}, h('button', { type: 'button', class: 'link', onclick: () => openThing(t.thingName) }, t.thingName)),
      h('td', {}, t.thingTypeName ?? h('span', { class: 'muted' }, 'none')),
      h('td', { class: 'num' }, String(Object.keys(t.attributes || {}).length)),
      h('td', { class: 'num' }, String(t.version ?? '—'))),
    'No thing is registered.', 4);
  }

  /** GetThingShadow; null when the shadow does not exist. */
  async function getShadow(thing, name) {
    try {
      return await api('GET', `/things/${encodeURIComponent(thing)}/shadow${name ? '?name=' + encodeURIComponent(name) : ''}`);
    } catch (error) {
      if (error.status === 404) return null;
      throw error;
    }
  }

  function fact(list, term, value) {
    list.append(h('dt', {}, term), h('dd', { class: 'mono wrap' }, value));
  }

  async function openThing(name) {
    let thing, classic, named;
    try {
      thing = await api('GET', `/things/${encodeURIComponent(name)}`);
      classic = await getShadow(name, '');
      named = (await api('GET', `/api/things/shadow/ListNamedShadowsForThing/${encodeURIComponent(name)}?pageSize=100`)).results || [];
    } catch (error) {
      say(alert, `Thing ${name} could not be read: ${errorText(error)}`);
      return;
    }
    const docs = new Map([['', classic]]);
    try {
      for (const shadow of named) docs.set(shadow, await getShadow(name, shadow));
    } catch (error) {
      say(alert, `A shadow of ${name} could not be read: ${errorText(error)}`);
    }
    const switched = selected !== name;
    selected = name;
    shadowDocs = docs;
    for (const row of $('things-table').tBodies[0].rows) row.classList.toggle('selected', row.dataset.name === name);
    $('thing-empty').hidden = true;
    $('thing-body').hidden = false;
    $('thing-heading').textContent = `Thing ${thing.thingName}`;
    const facts = $('thing-facts');
    facts.replaceChildren();
    fact(facts, 'ARN', thing.thingArn ?? '—');
    fact(facts, 'Type', thing.thingTypeName ?? 'none');
    fact(facts, 'Version', String(thing.version ?? '—'));
    if (thing.thingId) fact(facts, 'Thing ID', thing.thingId);
    const attributes = $('thing-attributes');
    attributes.replaceChildren();
    const entries = Object.entries(thing.attributes || {});
    if (entries.length === 0) attributes.append(h('dd', { class: 'muted' }, 'No attributes.'));
    for (const [key, value] of entries) fact(attributes, key, value);

    $('shadow-names').replaceChildren(...named.map((n) => h('option', { value: n })));
    $('thing-shadows').replaceChildren(...[...docs].map(([shadow, doc]) => h('section', { class: 'shadow', 'aria-label': shadowTitle(shadow) },
      h('div', { class: 'section-head' },
        h('h4', {}, shadowTitle(shadow).replace(/^./, (c) => c.toUpperCase())),
        doc ? h('span', { class: 'muted' }, `version ${doc.version ?? '—'}`) : null,
        h('button', { type: 'button', class: 'small', 'aria-label': `Edit desired state of the ${shadowTitle(shadow)}`, onclick: () => editDesired(shadow) }, 'Edit desired')),
      doc ? shadowDocument(shadow, doc)
        : h('p', { class: 'muted' }, 'This shadow does not exist yet: updating its desired state creates it.'))));
    if (switched) { say(statusLine, ''); editDesired(''); }
  }

  /** The document: its state (desired, reported, delta) in view, the metadata folded away. */
  function shadowDocument(shadow, doc) {
    const { metadata, ...rest } = doc;
    return [
      h('pre', { class: 'code', tabindex: '0', 'aria-label': `Document of the ${shadowTitle(shadow)}` }, prettyJson(JSON.stringify(rest))),
      metadata ? h('details', {}, h('summary', {}, 'Metadata (timestamps)'),
        h('pre', { class: 'code' }, prettyJson(JSON.stringify(metadata)))) : null,
    ];
  }

  const shadowTitle = (name) => (name ? `shadow ${name}` : 'classic shadow');

  /** Puts a shadow's current desired state in the editor. */
  function editDesired(shadow) {
    $('shadow-name').value = shadow;
    const desired = shadowDocs.get(shadow)?.state?.desired;
    $('desired-state').value = desired === undefined ? '{\n  \n}' : prettyJson(JSON.stringify(desired));
    say($('desired-error'), '');
  }

  $('desired-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const formAlert = $('desired-error');
    const textarea = $('desired-state');
    const shadow = $('shadow-name').value.trim();
    say(formAlert, '');
    say(statusLine, '');
    textarea.removeAttribute('aria-invalid');
    if (!selected) return;
    const text = textarea.value.trim() || 'null';
    try { JSON.parse(text); } catch (error) {
      textarea.setAttribute('aria-invalid', 'true');
      say(formAlert, `The desired state is not JSON: ${error.message}`);
      textarea.focus();
      return;
    }
    // The text goes into the request as typed (not re-serialised): big numbers stay exact.
    const thing = selected;
    try {
      const answer = await api('POST', `/things/${encodeURIComponent(thing)}/shadow${shadow ? '?name=' + encodeURIComponent(shadow) : ''}`,
        `{"state":{"desired":${text}}}`);
      say(statusLine, `The ${shadowTitle(shadow)} of ${thing} is updated (version ${answer.version ?? '?'}).`);
    } catch (error) {
      say(formAlert, `The ${shadowTitle(shadow)} of ${thing} was not updated: ${errorText(error)}`);
      return;
    }
    await openThing(thing);
    await loadThings();
  });

  $('things-refresh').addEventListener('click', async () => {
    await loadThings();
    if (selected) await openThing(selected);
  });
  pages.things = { section: $('page-things'), title: 'Things and shadows', show: loadThings };
})();

// ===================================================================== 9. Overview

(() => {
  const alert = $('overview-error');
  const canvas = $('overview-chart');
  const WINDOW_MS = 5 * 60 * 1000;
  /** {t, in, out, connections}: rates per second between consecutive polls. */
  let samples = [];
  let last = null;

  function tile(term, value, detail) {
    return [h('dl', { class: 'tile' }, h('dt', {}, term),
      h('dd', {}, value), detail ? h('dd', { class: 'detail muted' }, detail) : null)];
  }

  async function refresh() {
    let o;
    try {
      o = await api('GET', '/pubsub/overview');
    } catch (error) {
      say(alert, `The overview could not be read: ${errorText(error)}`);
      return;
    }
    say(alert, '');
    const now = Date.now();
    if (last && o.messagesIn >= last.messagesIn && o.messagesOut >= last.messagesOut) {
      const seconds = Math.max((now - last.t) / 1000, 0.001);
      samples.push({ t: now, in: (o.messagesIn - last.messagesIn) / seconds,
        out: (o.messagesOut - last.messagesOut) / seconds, connections: o.connections });
    } else if (last) {
      samples = []; // the counters went back: another broker run
    }
    last = { t: now, messagesIn: o.messagesIn, messagesOut: o.messagesOut };
    samples = samples.filter((s) => s.t >= now - WINDOW_MS);

    if (currentPage !== 'overview') return;
    $('overview-updated').textContent = `Updated ${clockTime(new Date()).slice(0, 8)}`;
    const number = (n) => (n ?? 0).toLocaleString('en');
    $('overview-facts').replaceChildren(
      ...tile('Version', o.version ?? '—'),
      ...tile('Uptime', duration(o.uptimeSeconds ?? 0), `since ${dateTime(o.startedAt)}`),
      ...tile('Connections', number(o.connections)),
      ...tile('Sessions', `${number(o.sessions?.online)} online`, `${number(o.sessions?.offline)} offline`),
      ...tile('Messages in', number(o.messagesIn), `${number(o.bytesIn)} bytes`),
      ...tile('Messages out', number(o.messagesOut), `${number(o.bytesOut)} bytes`),
      ...tile('Retained messages', number(o.retainedMessages)),
      ...tile('Queued messages', number(o.queuedMessages)));
    renderRows($('listeners-table').tBodies[0], o.listeners || [], (l) => h('tr', {},
      h('td', {}, l.name), h('td', { class: 'mono' }, l.address)), 'No listener.', 2);
    draw(now);
    summarize();
  }

  /** The accessible (and visible) text of the chart. */
  function summarize() {
    if (samples.length === 0) { $('chart-summary').textContent = 'Collecting samples…'; return; }
    const latest = samples[samples.length - 1];
    const max = (key) => Math.max(...samples.map((s) => s[key]));
    const min = (key) => Math.min(...samples.map((s) => s[key]));
    const rate = (n) => (n < 10 ? n.toFixed(1) : Math.round(n).toLocaleString('en'));
    const span = duration((latest.t - samples[0].t) / 1000 + 2);
    $('chart-summary').textContent =
      `Over the last ${span}: messages in ${rate(latest.in)}/s now (peak ${rate(max('in'))}/s), ` +
      `messages out ${rate(latest.out)}/s now (peak ${rate(max('out'))}/s), ` +
      `connections ${latest.connections} now` +
      (min('connections') === max('connections') ? ' (steady).' : ` (between ${min('connections')} and ${max('connections')}).`);
  }

  /** Draws two panes on the canvas: messages per second (in, out) above, connections below. */
  function draw(now) {
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth, height = canvas.clientHeight;
    if (!width || !height) return;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const g = canvas.getContext('2d');
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    const style = getComputedStyle(canvas);
    const colour = (name) => style.getPropertyValue(name).trim();
    const left = 48, right = width - 12, gap = 28;
    const rateTop = 10, rateBottom = Math.round(height * 0.62) - gap / 2;
    const connTop = rateBottom + gap, connBottom = height - 22;
    const x = (t) => left + (right - left) * (1 - (now - t) / WINDOW_MS);
    g.font = '11px system-ui, sans-serif';
    g.lineWidth = 1;

    function pane(top, bottom, maxValue, label, whole) {
      // Counts (connections) get whole-number grid lines: a top that 4 divides.
      const niceMax = whole ? Math.max(4, Math.ceil(maxValue / 4) * 4) : niceCeiling(maxValue);
      g.strokeStyle = colour('--grid');
      g.fillStyle = colour('--muted');
      g.textAlign = 'right';
      g.textBaseline = 'middle';
      for (let i = 0; i <= 4; i++) {
        const y = bottom - (bottom - top) * i / 4;
        g.beginPath(); g.moveTo(left, Math.round(y) + 0.5); g.lineTo(right, Math.round(y) + 0.5); g.stroke();
        const v = niceMax * i / 4;
        g.fillText(String(Number(v.toFixed(2))), left - 6, y); // 0.25, not 0.3
      }
      g.textAlign = 'left';
      g.textBaseline = 'bottom';
      g.fillText(label, left + 4, top - 1 + 10);
      return (v) => bottom - (bottom - top) * (v / niceMax);
    }

    function line(key, y, css, dash) {
      g.strokeStyle = colour(css);
      g.lineWidth = 2;
      g.setLineDash(dash || []);
      g.beginPath();
      samples.forEach((s, i) => (i ? g.lineTo(x(s.t), y(s[key])) : g.moveTo(x(s.t), y(s[key]))));
      g.stroke();
      g.setLineDash([]);
      g.lineWidth = 1;
    }

    const maxRate = Math.max(1, ...samples.map((s) => Math.max(s.in, s.out)));
    const rateY = pane(rateTop, rateBottom, maxRate, 'messages / s');
    const maxConn = Math.max(1, ...samples.map((s) => s.connections));
    const connY = pane(connTop, connBottom, maxConn, 'connections', true);
    line('in', rateY, '--series-in');
    // Dashed, so that "in" shows through where both rates are the same (a 1:1 fan-out).
    line('out', rateY, '--series-out', [6, 4]);
    line('connections', connY, '--series-conn');
    g.fillStyle = colour('--muted');
    g.textBaseline = 'top';
    for (let minutes = 5; minutes >= 0; minutes--) {
      const px = x(now - minutes * 60_000);
      g.textAlign = minutes === 5 ? 'left' : minutes === 0 ? 'right' : 'center';
      g.fillText(minutes ? `−${minutes} min` : 'now', px, connBottom + 6);
    }
  }

  /** 1, 2, 5, 10, 20, 50… at or above `value`, for round axis labels. */
  function niceCeiling(value) {
    const magnitude = 10 ** Math.floor(Math.log10(value));
    for (const step of [1, 2, 4, 5, 10]) if (step * magnitude >= value) return step * magnitude;
    return 10 * magnitude;
  }

  // Sampled on every page, so the chart already has its last minutes when it is opened.
  const poller = poll(refresh, 2000, () => !document.hidden);
  document.addEventListener('visibilitychange', () => { if (!document.hidden) poller.start(); });
  window.addEventListener('resize', () => { if (currentPage === 'overview') draw(Date.now()); });
  pages.overview = { section: $('page-overview'), title: 'Overview', show: () => poller.start() };
  poller.start();
})();

// ===================================================================== start

window.addEventListener('hashchange', () => route(true));
// A hidden tab polls nothing; shown again, the page's refresh resumes.
document.addEventListener('visibilitychange', () => {
  if (!document.hidden && currentPage) pages[currentPage].poller?.start();
});
route(false);
testClient.connect();
