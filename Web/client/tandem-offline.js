// Offline edits that survive a reload, for tandem.js (issue 12). IndexedDB when the browser has it.
//
//   import { TandemClient } from "./tandem.js";
//   import { OfflineStore } from "./tandem-offline.js";
//   const persistence = await OfflineStore.open("my-app");       // reads what a previous page saved
//   const client = new TandemClient({ url, user, persistence });
//   const doc = client.join("board:1");                          // starts from the saved records and pushes
//
// Per doc it keeps the last confirmed records and clock and the pending pushes (id and ops); per client the
// session ids it had and the next push id. After a reload the doc re-joins with `since` = the saved clock,
// so the catch-up is a log: a push that was committed before the page went away is recognised there (one of
// the saved sessions, its id) and not sent again; the others are pushed once in sync, as after a reconnect.
// Without IndexedDB (private windows of some browsers) it keeps nothing and tandem.js works as before.

const STORE = "docs";
const CLIENT_KEY = "\u0000client"; // cannot be a doc id (docs are [A-Za-z0-9._:-])

function request(req) {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}

export class OfflineStore {
  /** Opens (or creates) the database `name` and reads everything saved in it. */
  static async open(name = "tandem-offline") {
    const store = new OfflineStore();
    if (typeof indexedDB === "undefined") return store;
    try {
      const open = indexedDB.open(name, 1);
      open.onupgradeneeded = () => open.result.createObjectStore(STORE);
      store.db = await request(open);
      const tx = store.db.transaction(STORE, "readonly");
      const [keys, values] = await Promise.all([
        request(tx.objectStore(STORE).getAllKeys()),
        request(tx.objectStore(STORE).getAll()),
      ]);
      keys.forEach((key, i) => store.saved.set(key, values[i]));
    } catch (error) {
      console.warn("tandem-offline: IndexedDB unavailable, edits will not survive a reload", error);
      store.db = null;
    }
    return store;
  }

  constructor() {
    this.db = null;
    this.saved = new Map(); // key → value as last written
    this.dirty = new Map(); // key → value waiting for the next write
    this.writing = Promise.resolve();
  }

  /** Called by TandemClient's constructor: sessions and push ids of the pages before. */
  restoreClient(client) {
    const saved = this.saved.get(CLIENT_KEY);
    if (!saved) return;
    for (const session of saved.sessions || []) client.sessions.add(session);
    client.nextPushId = Math.max(client.nextPushId, saved.nextPushId || 1);
  }

  /** Called when a doc is created: its records, clock and pending pushes as last saved. */
  restoreDoc(doc) {
    // `everSynced` (so the next page joins with `since`) and a new session are set without a change event.
    doc.addEventListener("synced", () => this.saveDoc(doc));
    const saved = this.saved.get(doc.id);
    if (!saved) return;
    doc.confirmed = new Map(Object.entries(saved.records || {}));
    doc.clock = saved.clock || 0;
    doc.everSynced = saved.everSynced === true;
    // Nobody awaits these any more (the page that made them is gone); they are pushed once in sync.
    doc.pending = (saved.pending || []).map(({ id, ops }) => ({ id, ops, sent: false, resolve() {}, reject() {} }));
    doc.recompute("restore");
  }

  /** Called after every change of a doc's records or pushes; written in the background, latest wins. */
  saveDoc(doc) {
    if (!this.db) return;
    const client = doc.client;
    this.dirty.set(CLIENT_KEY, { sessions: [...client.sessions], nextPushId: client.nextPushId });
    this.dirty.set(doc.id, {
      records: Object.fromEntries(doc.confirmed),
      clock: doc.clock,
      everSynced: doc.everSynced,
      pending: doc.pending.map(({ id, ops }) => ({ id, ops })),
    });
    this.schedule();
  }

  /** Forgets a doc (after `leave`). */
  forgetDoc(id) {
    if (!this.db) return;
    this.dirty.set(id, undefined);
    this.schedule();
  }

  schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    this.writing = this.writing.then(() => new Promise((resolve) => setTimeout(resolve, 0))).then(() => this.write());
  }

  /** Resolves once everything saved so far is written. */
  flushed() {
    return this.writing;
  }

  async write() {
    this.scheduled = false;
    const entries = [...this.dirty];
    this.dirty.clear();
    if (!entries.length) return;
    const tx = this.db.transaction(STORE, "readwrite");
    const objects = tx.objectStore(STORE);
    for (const [key, value] of entries) {
      if (value === undefined) {
        objects.delete(key);
        this.saved.delete(key);
      } else {
        objects.put(value, key);
        this.saved.set(key, value);
      }
    }
    await new Promise((resolve) => {
      tx.oncomplete = resolve;
      tx.onerror = tx.onabort = () => {
        console.warn("tandem-offline: write failed", tx.error);
        resolve();
      };
    });
  }
}
