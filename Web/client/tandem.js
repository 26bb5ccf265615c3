// Tandem browser client for protocol v1 (docs/protocol.md). One ES module, no dependencies.
//
//   import { TandemClient } from "./tandem.js";
//   const client = new TandemClient({ url: "ws://127.0.0.1:7070/v1/ws", user: "ada", name: "Ada" });
//   await client.connect();
//   const doc = client.join("board:1", { state: { cursor: [0, 0] } });
//   doc.addEventListener("presence", () => render(doc.members));
//   doc.addEventListener("change", () => render(doc.records));
//   doc.setPresence({ cursor: [10, 20] });          // throttled to the server's presenceRate
//   await doc.put("note-1", { text: "hi" });         // optimistic; resolves with the server's result
//   client.addEventListener("error", (e) => showBanner(e.detail.message)); // server_too_old / client_too_old
//
// Reconnects by itself: exponential backoff with full jitter, `?resume=SESSION` so others see no
// leave/join, and re-joins every doc with `since` so only missing commits are sent. Pushes that were in
// flight are recognised in the catch-up (same session and push id) or sent again. A doc whose push is
// refused `unavailable` backs off: one push in flight until one is answered, edits made meanwhile sent
// together (docs/protocol.md, busy docs).

export const PROTOCOL_VERSION = 1;
// Close codes of a server that does not speak this client's protocol version (docs/protocol.md): the
// client does not reconnect and fires an "error" event ({error, code, reason, message}).
export const CLOSE_CLIENT_TOO_OLD = 4400;
export const CLOSE_SERVER_TOO_OLD = 4401;

/** How long to wait before pushing again after `unavailable`: the server's `retryAfterMs` when it gave
 * one (a busy doc spreads its refused pushes over the time it needs), at most a minute; else a second. */
export function retryDelayMs(retryAfterMs) {
  return Number.isFinite(retryAfterMs) && retryAfterMs >= 0 ? Math.min(retryAfterMs, 60000) : 1000;
}

// MARK: ops (pure; never mutate their inputs)

// Composing ops (for coalescing pushes held while the server refuses them as busy): `composeOps(a, b)`
// has the effect of applying `a` then `b`, or is null when some record's or field's ops do not compose
// (then they go as separate pushes). Conservative: only cases with one obvious result.
const lengthOf = (v) => (typeof v === "string" || Array.isArray(v) ? v.length : null);

function composeField(a, b) {
  const [ka, va, oa] = a;
  const [kb, vb, ob] = b;
  if (kb === "put" || kb === "delete") return b;
  if (ka === "put") {
    const out = applyDiff({ f: va }, { f: b });
    return "f" in out ? ["put", out.f] : ["delete"];
  }
  if (ka === "patch" && kb === "patch") {
    const diff = composeDiff(va, vb);
    return diff && ["patch", diff];
  }
  // Two appends at consecutive offsets are one append (same type: strings, or arrays).
  if (ka === "append" && kb === "append" && typeof va === typeof vb && Array.isArray(va) === Array.isArray(vb)) {
    const length = lengthOf(va);
    if (length !== null && Number.isInteger(oa) && ob === oa + length) {
      return ["append", Array.isArray(va) ? va.concat(vb) : va + vb, oa];
    }
  }
  return null;
}

function composeDiff(a, b) {
  const out = { ...a };
  for (const [field, op] of Object.entries(b)) {
    if (field === "__proto__") return null;
    if (!Object.hasOwn(out, field)) out[field] = op;
    else if (!(out[field] = composeField(out[field], op))) return null;
  }
  return out;
}

/** OPS `a` then OPS `b` as one OPS, or null when they do not compose (see above). */
export function composeOps(a, b) {
  const out = { ...a };
  for (const [id, op] of Object.entries(b)) {
    if (id === "__proto__") return null;
    if (!Object.hasOwn(out, id) || op[0] === "put" || op[0] === "remove") {
      out[id] = op;
      continue;
    }
    const [kind, value] = out[id];
    if (kind === "put") out[id] = ["put", applyDiff(value, op[1])];
    else if (kind === "patch") {
      const diff = composeDiff(value, op[1]);
      if (!diff) return null;
      out[id] = ["patch", diff];
    } else return null; // a patch after a remove
  }
  return out;
}

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

/** Applies a field DIFF to an object and returns the new object. */
export function applyDiff(object, diff) {
  const out = { ...(isObject(object) ? object : {}) };
  for (const [field, op] of Object.entries(diff)) {
    const [kind, value] = op;
    if (kind === "put") out[field] = value;
    else if (kind === "delete") delete out[field];
    else if (kind === "patch") out[field] = applyDiff(out[field], value);
    else if (kind === "append") {
      const current = out[field];
      if (Array.isArray(value)) out[field] = (Array.isArray(current) ? current : []).concat(value);
      else out[field] = (typeof current === "string" ? current : "") + value;
    }
  }
  return out;
}

/** Applies OPS ({id: ["put", rec] | ["patch", diff] | ["remove"]}) to a Map of records, in place. */
export function applyOps(records, ops) {
  for (const [id, op] of Object.entries(ops || {})) {
    const [kind, value] = op;
    if (kind === "put") records.set(id, value);
    else if (kind === "remove") records.delete(id);
    else if (kind === "patch" && records.has(id)) records.set(id, applyDiff(records.get(id), value));
  }
  return records;
}

// MARK: checksums (issue 13; docs/protocol.md, "Checksums", is the definition)

/** Canonical JSON: `JSON.stringify` with every object's keys sorted (the default sort: UTF-16 order). */
export function canonicalJSON(value) {
  if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null";
  if (Array.isArray(value)) return "[" + value.map(canonicalJSON).join(",") + "]";
  return "{" + Object.keys(value).sort().map((k) => JSON.stringify(k) + ":" + canonicalJSON(value[k])).join(",") + "}";
}

const utf8Encoder = new TextEncoder();

function fmix32(h) {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** MurmurHash3 (x86_32) of `bytes` with seeds 0 and 0x9747b28c, in one pass: [lane0, lane1]. */
export function murmur3Pair(bytes) {
  const n = bytes.length;
  let h0 = 0;
  let h1 = 0x9747b28c;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    let k = bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24);
    k = Math.imul(k, 0xcc9e2d51);
    k = Math.imul((k << 15) | (k >>> 17), 0x1b873593);
    h0 ^= k;
    h0 = (Math.imul((h0 << 13) | (h0 >>> 19), 5) + 0xe6546b64) | 0;
    h1 ^= k;
    h1 = (Math.imul((h1 << 13) | (h1 >>> 19), 5) + 0xe6546b64) | 0;
  }
  let k = 0;
  const rest = n & 3;
  if (rest >= 3) k ^= bytes[i + 2] << 16;
  if (rest >= 2) k ^= bytes[i + 1] << 8;
  if (rest >= 1) {
    k ^= bytes[i];
    k = Math.imul(k, 0xcc9e2d51);
    k = Math.imul((k << 15) | (k >>> 17), 0x1b873593);
    h0 ^= k;
    h1 ^= k;
  }
  return [fmix32(h0 ^ n), fmix32(h1 ^ n)];
}

/** A record's hash: both lanes of the canonical JSON of `[id, value]` (UTF-8). */
export function recordHash(id, value) {
  return murmur3Pair(utf8Encoder.encode(canonicalJSON([id, value])));
}

const hex8 = (x) => x.toString(16).padStart(8, "0");

/** A doc's checksum, kept per record: the sum of its records' hashes, each lane mod 2^32. */
export class DocChecksum {
  constructor(records) {
    this.hashes = new Map();
    this.lane0 = 0;
    this.lane1 = 0;
    if (records) for (const [id, value] of records) this.set(id, value);
  }

  /** Record `id` is now `value` (undefined: removed). */
  set(id, value) {
    const old = this.hashes.get(id);
    if (old) {
      this.lane0 = (this.lane0 - old[0]) >>> 0;
      this.lane1 = (this.lane1 - old[1]) >>> 0;
      this.hashes.delete(id);
    }
    if (value === undefined) return;
    const h = recordHash(id, value);
    this.hashes.set(id, h);
    this.lane0 = (this.lane0 + h[0]) >>> 0;
    this.lane1 = (this.lane1 + h[1]) >>> 0;
  }

  get hex() {
    return hex8(this.lane0) + hex8(this.lane1);
  }
}

/** Full-jitter exponential backoff: a random delay in [0, min(max, base·2^attempt)]. */
export function backoffDelay(attempt, baseMs, maxMs, random = Math.random) {
  return Math.floor(random() * Math.min(maxMs, baseMs * 2 ** attempt));
}

const event = (type, detail) => new CustomEvent(type, { detail });

// MARK: client

export class TandemClient extends EventTarget {
  /**
   * @param {object} options
   * @param {string|string[]} options.url   ws(s)://host:port/v1/ws — several: tried in turn on failures
   * @param {string} [options.token]        a JWT (servers with --jwt-secret)
   * @param {string} [options.user]         development mode: user id …
   * @param {string} [options.name]         … and display name
   * @param {boolean} [options.reconnect=true]
   * @param {number} [options.backoffMs=250]    first retry window; doubles per failed attempt
   * @param {number} [options.maxBackoffMs=15000]
   * @param {number} [options.heartbeatMs=15000] sends {"t":"ping"} when idle this long; a connection
   *   silent for 2.5× this is considered lost
   * @param {typeof WebSocket} [options.WebSocket]
   * @param {object} [options.persistence]  an OfflineStore (tandem-offline.js): docs and pending pushes survive a reload
   */
  constructor(options) {
    super();
    this.options = { reconnect: true, backoffMs: 250, maxBackoffMs: 15000, heartbeatMs: 15000, stableMs: 5000, connectTimeoutMs: 10000, ...options };
    this.urls = [].concat(this.options.url);
    this.WebSocket = this.options.WebSocket || globalThis.WebSocket;
    this.state = "idle"; // idle | connecting | open | reconnecting | closed
    this.session = null;
    this.sessions = new Set(); // every session id this client had (to recognise its own commits)
    this.node = null;
    this.user = null;
    this.limits = { presenceRate: 20, tickMs: 50, maxMessageBytes: 1114112, maxStateBytes: 1024 };
    this.docs = new Map();
    this.ws = null;
    this.attempt = 0;
    this.urlIndex = 0;
    this.nextPushId = 1;
    this.timers = {};
    this.waiters = [];
    this.persistence = this.options.persistence || null;
    this.persistence?.restoreClient(this);
    if (typeof window !== "undefined") {
      window.addEventListener("online", () => {
        if (this.state === "reconnecting" && !this.ws) this.retryNow();
      });
    }
  }

  /** Opens the connection; resolves with the first `welcome`. Reconnects by itself afterwards. */
  connect() {
    if (this.state === "open") return Promise.resolve(this.welcome);
    const ready = new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (!this.ws && this.state !== "reconnecting") {
      this.closedByUser = false;
      this.open();
    }
    return ready;
  }

  /** Closes cleanly (the server removes this session's presence at once); no reconnect. */
  close() {
    this.closedByUser = true;
    this.clearTimers();
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close(1000, "bye");
    this.setState("closed");
    this.settleWaiters(new Error("closed"));
    for (const doc of this.docs.values()) doc.disconnected();
  }

  /**
   * Joins a doc (or returns the one already joined). `doc.ready` resolves once it is in sync. `schema`: the
   * record-schema version this app was built for; a server enforcing another one answers with an `error`
   * event of code `schema_mismatch` (docs/schemas.md). `presence`: "full" (default: shown, sees others),
   * "hidden" (sees others, shown to no one) or "none" (no presence either way; no deltas at all); a hidden or
   * none doc cannot `setPresence` (docs/protocol.md#join).
   */
  join(id, { state, schema, presence } = {}) {
    if (presence !== undefined && !["full", "hidden", "none"].includes(presence)) {
      throw new Error(`presence must be "full", "hidden" or "none", not ${JSON.stringify(presence)}`);
    }
    let doc = this.docs.get(id);
    if (!doc) {
      doc = new TandemDoc(this, id, state);
      this.persistence?.restoreDoc(doc);
      this.docs.set(id, doc);
    } else if (state !== undefined) doc.state = state;
    if (schema !== undefined) doc.schema = schema;
    if (presence !== undefined) doc.presenceMode = presence;
    if (this.state === "open") doc.sendJoin();
    return doc;
  }

  doc(id) {
    return this.docs.get(id);
  }

  send(message) {
    if (!this.ws || this.state !== "open") return false;
    this.ws.send(JSON.stringify(message));
    return true;
  }

  /** Skips the current backoff wait. */
  retryNow() {
    clearTimeout(this.timers.retry);
    if (!this.ws && !this.closedByUser) this.open();
  }

  // MARK: internals

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.dispatchEvent(event("state", { state }));
  }

  clearTimers() {
    for (const timer of Object.values(this.timers)) clearTimeout(timer);
    this.timers = {};
  }

  settleWaiters(error, value) {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) (error ? w.reject(error) : w.resolve(value));
  }

  open() {
    const url = new URL(this.urls[this.urlIndex % this.urls.length]);
    const { token, user, name } = this.options;
    if (token) url.searchParams.set("token", token);
    else {
      if (user) url.searchParams.set("user", user);
      if (name) url.searchParams.set("name", name);
    }
    if (this.session) url.searchParams.set("resume", this.session);
    this.setState(this.session ? "reconnecting" : "connecting");
    const ws = new this.WebSocket(url.toString());
    this.ws = ws;
    this.welcomed = false;
    ws.onmessage = (e) => ws === this.ws && this.receive(e.data);
    ws.onclose = (e) => this.closed(ws, e.code, e.reason);
    ws.onerror = () => {}; // a close event follows
    this.timers.connect = setTimeout(() => this.drop(ws, 4000, "connect timeout"), this.options.connectTimeoutMs);
  }

  /** Gives up on a socket at once (without waiting for the browser's close handshake). */
  drop(ws, code, reason) {
    if (!ws || ws !== this.ws) return;
    ws.onclose = ws.onmessage = null;
    try {
      ws.close(code, reason);
    } catch {
      /* already closing */
    }
    this.closed(ws, code, reason);
  }

  closed(ws, code, reason) {
    if (ws !== this.ws) return;
    this.ws = null;
    this.clearTimers();
    for (const doc of this.docs.values()) doc.disconnected();
    if (this.closedByUser) return;
    // 1000 from the server means this session was resumed on a newer connection: that one wins.
    const superseded = code === 1000 && this.welcomed;
    // 4400/4401: the server does not speak this client's protocol version; retrying cannot help.
    const incompatible = code === CLOSE_CLIENT_TOO_OLD || code === CLOSE_SERVER_TOO_OLD;
    const willReconnect = this.options.reconnect && !superseded && !incompatible;
    let delayMs = 0;
    if (willReconnect) {
      if (!this.welcomed || code === 1001) this.urlIndex += 1; // refused, unreachable or draining: try the next URL
      delayMs = backoffDelay(this.attempt, this.options.backoffMs, this.options.maxBackoffMs);
      // 1008: we sent too much or too many bad frames; back off for real before trying again.
      if (code === 1008) delayMs = Math.max(delayMs, this.options.maxBackoffMs);
      this.attempt += 1;
      this.timers.retry = setTimeout(() => this.open(), delayMs);
      this.setState("reconnecting");
    } else {
      this.setState("closed");
      this.settleWaiters(new Error(`closed (${code} ${reason || ""})`));
    }
    this.dispatchEvent(event("close", { code, reason, willReconnect, delayMs }));
    if (incompatible) {
      const error = code === CLOSE_CLIENT_TOO_OLD ? "client_too_old" : "server_too_old";
      const message = code === CLOSE_CLIENT_TOO_OLD
        ? "this app is older than the server's protocol: reload it to get the new version"
        : "the server does not speak this app's protocol yet: try again after the server is upgraded";
      this.dispatchEvent(event("error", { error, code, reason, message }));
    }
  }

  heartbeat() {
    clearTimeout(this.timers.heartbeat);
    const { heartbeatMs } = this.options;
    this.timers.heartbeat = setTimeout(() => {
      const silentMs = Date.now() - this.lastMessageAt;
      if (silentMs >= heartbeatMs * 2.5) return this.drop(this.ws, 4000, "heartbeat timeout");
      if (silentMs >= heartbeatMs) this.send({ t: "ping" });
      this.heartbeat();
    }, heartbeatMs / 2);
  }

  receive(data) {
    this.lastMessageAt = Date.now();
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (message.t === "welcome") return this.welcomeReceived(message);
    if (message.t === "pong") return;
    const doc = message.doc !== undefined ? this.docs.get(message.doc) : undefined;
    if (doc) doc.receive(message);
    else if (message.t === "error") this.dispatchEvent(event("servererror", message));
  }

  welcomeReceived(welcome) {
    clearTimeout(this.timers.connect);
    this.welcomed = true;
    this.welcome = welcome;
    this.session = welcome.session;
    this.sessions.add(welcome.session);
    this.node = welcome.node;
    this.user = welcome.user;
    this.limits = { ...this.limits, ...(welcome.limits || {}) };
    // Only a connection that stays up a while resets the backoff (a node that accepts and then drops
    // us at once must not get a tight reconnect loop).
    this.timers.stable = setTimeout(() => (this.attempt = 0), this.options.stableMs);
    this.setState("open");
    this.heartbeat();
    this.dispatchEvent(event("welcome", welcome));
    this.settleWaiters(null, welcome);
    for (const doc of this.docs.values()) doc.sendJoin();
  }
}

// MARK: doc

export class TandemDoc extends EventTarget {
  constructor(client, id, state) {
    super();
    this.client = client;
    this.id = id;
    this.state = state ?? null; // this session's presence state
    this.presenceMode = "full"; // join's "presence": full, hidden or none
    this.role = null;
    this.members = new Map(); // sid → {sid, user, name, role, state, node, v}
    this.confirmed = new Map(); // records as of `clock` (server-confirmed)
    this.records = new Map(); // confirmed + pending pushes applied optimistically
    this.clock = 0;
    this.synced = false; // caught up since the current join
    this.everSynced = false;
    this.pending = []; // {id, ops, sent, fresh, resolve, reject}
    // Busy-doc backoff: after a push is refused `unavailable`, at most one push is in flight (the
    // `probe`) until one is answered; pushes made meanwhile wait and go coalesced (see `resumePushing`).
    this.backoff = false;
    this.backoffTimer = null;
    this.probe = null;
    this.staging = null; // snapshot chunks being received
    // Integrity checksum of `confirmed` (issue 13): built from it whenever `confirmed` is another Map (a
    // snapshot, an offline restore), then kept per commit; a commit's `sum` is checked against it.
    this.checksum = null;
    this.checksumOf = null;
    this.resyncing = false; // re-joined without `since` after a mismatch: the snapshot replaces everything
    this.lastResyncAt = -Infinity;
    this.lastPresenceAt = 0;
    this.left = false;
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => {});
  }

  /** Other sessions in the doc (this one excluded). */
  others() {
    return [...this.members.values()].filter((m) => m.sid !== this.client.session);
  }

  /** Sets this session's presence; sent at most `presenceRate` times a second (latest wins). */
  setPresence(state) {
    if (this.presenceMode !== "full") {
      throw new Error(`joined with presence "${this.presenceMode}": this session has no presence to set`);
    }
    this.state = state;
    if (this.client.state !== "open" || !this.role || this.presenceTimer) return;
    const interval = 1000 / Math.max(1, this.client.limits.presenceRate || 20);
    const wait = this.lastPresenceAt + interval - Date.now();
    if (wait <= 0) this.flushPresence();
    else this.presenceTimer = setTimeout(() => this.flushPresence(), wait);
  }

  flushPresence() {
    this.presenceTimer = null;
    if (this.client.send({ t: "presence", doc: this.id, state: this.state })) this.lastPresenceAt = Date.now();
  }

  /** Pushes OPS; applied to `records` at once, then replaced by what the server decided. */
  push(ops) {
    if (this.left) return Promise.reject(new Error("left"));
    const id = this.client.nextPushId++;
    return new Promise((resolve, reject) => {
      // `fresh`: never sent, or refused as busy (not applied for certain): may be coalesced with others.
      const push = { id, ops, sent: false, fresh: true, resolve, reject };
      this.pending.push(push);
      this.recompute("local");
      if (this.synced && !this.backoff) this.sendPush(push);
    });
  }

  put(id, record) {
    return this.push({ [id]: ["put", record] });
  }

  patch(id, diff) {
    return this.push({ [id]: ["patch", diff] });
  }

  remove(id) {
    return this.push({ [id]: ["remove"] });
  }

  leave() {
    this.left = true;
    this.client.send({ t: "leave", doc: this.id });
    this.client.docs.delete(this.id);
    this.client.persistence?.forgetDoc(this.id);
    clearTimeout(this.presenceTimer);
    clearTimeout(this.backoffTimer);
    for (const p of this.pending) p.reject(new Error("left"));
    this.pending = [];
  }

  // MARK: internals

  sendPush(push) {
    push.sent = this.client.send({ t: "push", doc: this.id, id: push.id, base: this.clock, ops: push.ops });
    // Once on the wire it may be applied (an answer can be lost with the connection): from now on it is
    // re-sent only as itself, with its id, so that the server recognises a duplicate.
    if (push.sent) push.fresh = false;
  }

  /** Joins each run of consecutive fresh unsent pushes into one push (as far as their ops compose):
   * a client the server refused does not send it one push per edit made meanwhile. */
  coalesceUnsent() {
    const out = [];
    for (const push of this.pending) {
      const last = out[out.length - 1];
      const ops = last && !last.sent && last.fresh && !push.sent && push.fresh ? composeOps(last.ops, push.ops) : null;
      if (!ops) {
        out.push(push);
        continue;
      }
      const parts = [...(last.parts || [last]), ...(push.parts || [push])];
      out[out.length - 1] = {
        id: this.client.nextPushId++, ops, sent: false, fresh: true, parts,
        resolve: (r) => parts.forEach((p) => p.resolve(r)),
        reject: (e) => parts.forEach((p) => p.reject(e)),
      };
    }
    this.pending = out;
  }

  /** The busy-doc backoff's timer fired: one push (the oldest unsent, coalesced) goes as the probe. */
  resumePushing() {
    this.backoffTimer = null;
    if (!this.synced || !this.backoff || this.probe) return;
    this.coalesceUnsent();
    const next = this.pending.find((p) => !p.sent);
    if (!next) return this.endBackoff(null);
    this.sendPush(next);
    this.probe = next;
  }

  /** A push was answered (other than `unavailable`): if it was the probe, send everything held. */
  endBackoff(push) {
    if (!this.backoff || (push && push !== this.probe)) return;
    this.backoff = false;
    this.probe = null;
    clearTimeout(this.backoffTimer);
    this.backoffTimer = null;
    if (!this.synced) return;
    this.coalesceUnsent();
    for (const p of this.pending) if (!p.sent) this.sendPush(p);
  }

  sendJoin() {
    const message = { t: "join", doc: this.id };
    // Hidden and none sessions have no state (the server refuses a join that carries one).
    if (this.presenceMode !== "full") message.presence = this.presenceMode;
    else if (this.state !== null) message.state = this.state;
    if (this.schema !== undefined) message.schema = this.schema;
    if (this.everSynced && !this.resyncing) message.since = this.clock;
    this.joinState = this.state;
    this.synced = false;
    this.client.send(message);
  }

  disconnected() {
    this.synced = false;
    this.role = null;
    clearTimeout(this.presenceTimer);
    this.presenceTimer = null;
    for (const p of this.pending) p.sent = false;
    this.backoff = false;
    this.probe = null;
    clearTimeout(this.backoffTimer);
    this.backoffTimer = null;
  }

  receive(m) {
    switch (m.t) {
      case "joined":
        this.role = m.role;
        this.members = new Map((m.presence || []).map((e) => [e.sid, e]));
        this.emitPresence(m.presence || [], [], []);
        this.dispatchEvent(event("joined", m));
        // Presence set while the join was on its way: send the newest.
        if (this.presenceMode === "full" && this.state !== this.joinState) this.setPresence(this.state);
        // Already at the head (a re-join with nothing missed): in sync now; a catch-up may still follow.
        if (this.everSynced && m.clock === this.clock) this.becameSynced();
        break;
      case "presence":
        for (const e of [...m.joined, ...m.updated]) this.members.set(e.sid, e);
        for (const sid of m.left) this.members.delete(sid);
        this.emitPresence(m.joined, m.updated, m.left);
        break;
      case "snapshot":
        if (!this.staging) this.staging = new Map();
        for (const [id, record] of Object.entries(m.records || {})) this.staging.set(id, record);
        if (!m.more) {
          this.confirmed = this.staging;
          this.staging = null;
          this.clock = m.clock;
          this.resyncing = false;
          this.verify(m.sum, m.clock, null);
          this.recompute("snapshot");
          this.becameSynced();
        }
        break;
      case "log":
        for (const entry of m.entries) this.applyCommit(entry.clock, entry.ops, entry.by, entry.id, entry.sum);
        this.recompute("log");
        if (!m.more) this.becameSynced();
        break;
      case "patch":
        this.applyCommit(m.clock, m.ops, m.by, undefined, m.sum);
        this.recompute("patch");
        break;
      case "result":
        this.result(m);
        break;
      case "left":
        this.role = null;
        break;
      case "error":
        this.error(m);
        break;
      case "history":
      case "at":
      case "restored":
        this.historyAnswer(m);
        break;
    }
  }

  // MARK: version history (issue 15, docs/protocol.md "Version history")

  /** The versions before `before` (newest first, at most `limit`): resolves with the `history` message. */
  history({ before, limit } = {}) {
    const message = { t: "history", doc: this.id };
    if (before !== undefined) message.before = before;
    if (limit !== undefined) message.limit = limit;
    return this.historyRequest(message);
  }

  /** The doc after commit `clock` (or at `time`, ms since 1970): resolves with `{clock, at, records}`
   * (`records` a Map). A preview: the doc's own records are not touched. */
  at({ clock, time }) {
    return this.historyRequest(clock !== undefined ? { t: "at", doc: this.id, clock } : { t: "at", doc: this.id, time });
  }

  /** Editors: one new commit that makes the doc what it was after `clock` (everyone gets it as a patch);
   * resolves with the `restored` message. */
  restore(clock) {
    return this.historyRequest({ t: "restore", doc: this.id, clock });
  }

  /** The server answers one history request per connection at a time: so does the client. */
  historyRequest(message) {
    if (this.historyPending) return Promise.reject(Object.assign(new Error("one history request at a time"), { code: "rate_limited" }));
    return new Promise((resolve, reject) => {
      if (!this.client.send(message)) {
        reject(Object.assign(new Error("not connected"), { code: "unavailable" }));
        return;
      }
      this.historyPending = { resolve, reject, records: null };
    });
  }

  historyAnswer(m) {
    const pending = this.historyPending;
    if (!pending) return;
    if (m.t === "at") {
      pending.records ??= new Map();
      for (const [id, record] of Object.entries(m.records || {})) pending.records.set(id, record);
      if (m.more) return;
      this.historyPending = null;
      pending.resolve({ clock: m.clock, at: m.at, records: pending.records });
      return;
    }
    this.historyPending = null;
    pending.resolve(m);
  }

  /** A commit from the log or the live stream; our own (after a reconnect) settles its pending push. */
  applyCommit(clock, ops, by, pushId, sum) {
    if (clock <= this.clock) return;
    this.applyConfirmed(ops);
    this.clock = clock;
    this.verify(sum, clock, ops);
    if (pushId !== undefined && this.client.sessions.has(by)) {
      const index = this.pending.findIndex((p) => p.id === pushId);
      if (index >= 0) this.pending.splice(index, 1)[0].resolve({ action: "commit", clock, id: pushId, recovered: true });
    }
    this.scheduleAck();
  }

  result(m) {
    const index = this.pending.findIndex((p) => p.id === m.id);
    const push = index >= 0 ? this.pending.splice(index, 1)[0] : null;
    const ops = m.action === "commit" && push ? push.ops : m.action === "rebase" ? m.ops : null;
    const fresh = m.action !== "discard" && m.clock > this.clock;
    if (fresh && ops) this.applyConfirmed(ops);
    if (m.action !== "discard") this.clock = Math.max(this.clock, m.clock);
    if (fresh && ops) this.verify(m.sum, m.clock, ops);
    this.recompute("result");
    push?.resolve(m);
    this.dispatchEvent(event("result", m));
    if (push) this.endBackoff(push);
  }

  error(m) {
    // An error without a push id while a history request waits is its answer (the server answers them in order).
    if (m.id === undefined && this.historyPending && m.code !== "not_joined") {
      const pending = this.historyPending;
      this.historyPending = null;
      pending.reject(Object.assign(new Error(m.message || m.code), { code: m.code }));
    }
    const index = m.id !== undefined ? this.pending.findIndex((p) => p.id === m.id) : -1;
    if (index >= 0) {
      const push = this.pending[index];
      if (m.code === "unavailable") {
        // Not applied: Redis is unreachable, or the doc or node is busy. Until one push is answered, at
        // most one is in flight: after the server's `retryAfterMs` (jittered), else a second, the oldest
        // unsent push goes again — with the edits made meanwhile when it was refused as busy (a hint
        // means it was never queued, so it can change); otherwise as itself, same id, so that a
        // duplicate is recognised.
        push.sent = false;
        if (Number.isFinite(m.retryAfterMs)) push.fresh = true;
        this.backoff = true;
        if (this.probe === push) this.probe = null;
        if (!this.backoffTimer) this.backoffTimer = setTimeout(() => this.resumePushing(), retryDelayMs(m.retryAfterMs));
      } else {
        this.pending.splice(index, 1);
        this.recompute("result");
        push.reject(Object.assign(new Error(m.message || m.code), { code: m.code }));
        this.endBackoff(push);
      }
    } else if (m.code === "forbidden" && !this.role) {
      this.rejectReady(Object.assign(new Error(m.message || "forbidden"), { code: m.code }));
    }
    this.dispatchEvent(event("servererror", m));
  }

  /** Applies committed ops to `confirmed`, keeping its checksum. */
  applyConfirmed(ops) {
    applyOps(this.confirmed, ops);
    if (this.checksum && this.checksumOf === this.confirmed) {
      for (const id of Object.keys(ops || {})) this.checksum.set(id, this.confirmed.get(id));
    }
  }

  /** Compares `confirmed` at `clock` with the server's checksum `sum` (absent: nothing to compare).
   * A mismatch is reported (`{"t":"diverged"}`, a `diverged` event) and, unless it is the snapshot
   * itself or a resync happened in the last 10 s, answered by re-joining without `since`: the snapshot
   * that follows replaces everything. */
  verify(sum, clock, ops) {
    if (typeof sum !== "string" || this.resyncing) return;
    if (!this.checksum || this.checksumOf !== this.confirmed) {
      this.checksum = new DocChecksum(this.confirmed);
      this.checksumOf = this.confirmed;
    }
    const actual = this.checksum.hex;
    if (actual === sum) return;
    const now = Date.now();
    const resync = ops !== null && now - this.lastResyncAt >= 10000;
    this.client.send({ t: "diverged", doc: this.id, clock, sum: actual });
    this.dispatchEvent(event("diverged", { clock, expected: sum, actual, resync }));
    if (!resync) return;
    this.lastResyncAt = now;
    this.resyncing = true;
    this.staging = null;
    // Whatever was sent may or may not be in the snapshot: re-sent after it, a committed one is
    // recognised as a duplicate (same session, same id).
    for (const p of this.pending) p.sent = false;
    this.sendJoin();
  }

  becameSynced() {
    if (this.synced) return;
    this.synced = true;
    this.everSynced = true;
    this.resolveReady(this);
    // Pushes made while offline, or in flight when the connection broke and not found in the catch-up.
    this.coalesceUnsent();
    for (const push of this.pending) if (!push.sent) this.sendPush(push);
    this.dispatchEvent(event("synced", { clock: this.clock }));
  }

  recompute(source) {
    const view = new Map(this.confirmed);
    for (const push of this.pending) applyOps(view, push.ops);
    this.records = view;
    if (source !== "restore") this.client.persistence?.saveDoc(this);
    this.dispatchEvent(event("change", { source, clock: this.clock }));
  }

  emitPresence(joined, updated, left) {
    this.dispatchEvent(event("presence", { joined, updated, left, members: this.members }));
  }

  scheduleAck() {
    if (this.ackTimer) return;
    this.ackTimer = setTimeout(() => {
      this.ackTimer = null;
      this.client.send({ t: "ack", doc: this.id, clock: this.clock });
    }, 250);
  }
}
