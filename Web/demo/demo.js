// Multi-cursor + shared sticky notes on Tandem, using ../client/tandem.js.
//
// URL parameters: ws (ws://host:port/v1/ws; default: asked from /api/status when served by a node's ops
// port, else port 7070 of this host), doc (default "demo:board"), token, or user and name.

import { TandemClient } from "../client/tandem.js";

const params = new URLSearchParams(location.search);
const $ = (s) => document.querySelector(s);
const board = $("#board");

const colorOf = (text) => {
  let h = 0;
  for (const ch of text) h = (h * 31 + ch.codePointAt(0)) >>> 0;
  return `hsl(${h % 360} 65% 38%)`;
};

async function clientURL() {
  if (params.get("ws")) return params.get("ws");
  try {
    const status = await (await fetch("/api/status", { cache: "no-store" })).json();
    const me = (status.nodes || []).find((n) => n.node === status.node);
    if (me?.wsPort) return `ws://${location.hostname}:${me.wsPort}/v1/ws`;
  } catch {
    /* not served by an ops port */
  }
  return `ws://${location.hostname || "127.0.0.1"}:7070/v1/ws`;
}

const name = params.get("name") || localStorage.getItem("tandem-demo-name") || `Guest ${Math.floor(Math.random() * 9000 + 1000)}`;
localStorage.setItem("tandem-demo-name", name);
const user = params.get("user") || name.toLowerCase().replace(/[^a-z0-9]+/g, "-");
const docId = params.get("doc") || "demo:board";

const client = new TandemClient({ url: await clientURL(), token: params.get("token") || undefined, user, name });
window.demo = { client }; // for the browser tests and the console

client.addEventListener("state", ({ detail }) => {
  $("#conn").dataset.state = detail.state;
  $("#conn").textContent = detail.state === "open" ? "connected" : detail.state;
});
client.addEventListener("welcome", ({ detail }) => ($("#node").textContent = detail.node));
$("#doc-name").textContent = docId;
$("#me").textContent = name;

const doc = client.join(docId, { state: { cursor: null, color: colorOf(user) } });
window.demo.doc = doc;
client.connect().catch((error) => console.warn("connect failed", error));

// MARK: cursors and people

const cursors = new Map(); // sid → element

function renderPresence() {
  const me = doc.members.get(client.session);
  if (me) $("#me").textContent = me.name; // with a token, the name is the token's
  const people = $("#people");
  people.replaceChildren(
    ...[...doc.members.values()].map((m) => {
      const li = document.createElement("li");
      li.style.setProperty("--c", colorOf(m.user));
      li.textContent = m.sid === client.session ? `${m.name} (you)` : m.name;
      return li;
    }),
  );
  for (const m of doc.others()) {
    const cursor = m.state?.cursor;
    let el = cursors.get(m.sid);
    if (!cursor) {
      el?.remove();
      cursors.delete(m.sid);
      continue;
    }
    if (!el) {
      el = document.createElement("div");
      el.className = "cursor";
      el.dataset.sid = m.sid;
      el.append(document.createElement("span"));
      board.append(el);
      cursors.set(m.sid, el);
    }
    el.style.setProperty("--c", colorOf(m.user));
    el.lastChild.textContent = m.name;
    el.style.transform = `translate(${cursor[0] * board.clientWidth}px, ${cursor[1] * board.clientHeight}px)`;
  }
  for (const [sid, el] of cursors) {
    if (!doc.members.has(sid)) {
      el.remove();
      cursors.delete(sid);
    }
  }
}
doc.addEventListener("presence", renderPresence);

const fraction = (event) => {
  const r = board.getBoundingClientRect();
  return [Math.min(1, Math.max(0, (event.clientX - r.left) / r.width)), Math.min(1, Math.max(0, (event.clientY - r.top) / r.height))];
};
board.addEventListener("pointermove", (e) => doc.setPresence({ ...doc.state, cursor: fraction(e) }));
board.addEventListener("pointerleave", () => doc.setPresence({ ...doc.state, cursor: null }));

// MARK: notes

const notes = new Map(); // record id → element

function addNote([x, y]) {
  const id = `note:${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
  doc.put(id, { x, y, text: "", by: name }).catch((e) => console.warn("push failed", e));
  return id;
}
board.addEventListener("dblclick", (e) => e.target === board && addNote(fraction(e)));
board.addEventListener("keydown", (e) => e.key === "n" && e.target === board && addNote([0.1 + Math.random() * 0.6, 0.1 + Math.random() * 0.6]));

function noteElement(id) {
  const el = $("#note-template").content.firstElementChild.cloneNode(true);
  el.dataset.note = id;
  const text = el.querySelector("textarea");
  let typing;
  text.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => doc.patch(id, { text: ["put", text.value] }).catch(() => {}), 250);
  });
  el.querySelector(".delete").addEventListener("click", () => doc.remove(id).catch(() => {}));
  // Drag by the grip: move locally at once, push the position at most every 100 ms and on release.
  const grip = el.querySelector(".grip");
  grip.addEventListener("pointerdown", (down) => {
    if (down.target.closest("button")) return;
    grip.setPointerCapture(down.pointerId);
    const r = el.getBoundingClientRect();
    const offset = [down.clientX - r.left, down.clientY - r.top];
    let last = 0;
    const position = (e) => fraction({ clientX: e.clientX - offset[0], clientY: e.clientY - offset[1] });
    const move = (e) => {
      const [x, y] = position(e);
      el.style.left = `${x * 100}%`;
      el.style.top = `${y * 100}%`;
      doc.setPresence({ ...doc.state, cursor: fraction(e) });
      if (Date.now() - last > 100) {
        last = Date.now();
        doc.patch(id, { x: ["put", x], y: ["put", y] }).catch(() => {});
      }
    };
    const up = (e) => {
      grip.removeEventListener("pointermove", move);
      const [x, y] = position(e);
      doc.patch(id, { x: ["put", x], y: ["put", y] }).catch(() => {});
    };
    grip.addEventListener("pointermove", move);
    grip.addEventListener("pointerup", up, { once: true });
  });
  return el;
}

function renderNotes() {
  const pendingIds = new Set(doc.pending.flatMap((p) => Object.keys(p.ops)));
  for (const [id, record] of doc.records) {
    if (!id.startsWith("note:")) continue;
    let el = notes.get(id);
    if (!el) {
      el = noteElement(id);
      notes.set(id, el);
      board.append(el);
    }
    el.style.left = `${(record.x ?? 0) * 100}%`;
    el.style.top = `${(record.y ?? 0) * 100}%`;
    el.classList.toggle("pending", pendingIds.has(id));
    el.querySelector(".author").textContent = record.by || "";
    const text = el.querySelector("textarea");
    if (document.activeElement !== text && text.value !== (record.text ?? "")) text.value = record.text ?? "";
  }
  for (const [id, el] of notes) {
    if (!doc.records.has(id)) {
      el.remove();
      notes.delete(id);
    }
  }
  $("#clock").textContent = String(doc.clock);
}
doc.addEventListener("change", renderNotes);

// MARK: history (issue 15): a slider over every clock (versions as ticks) previews the board at that
// clock; Restore makes it the current state (one new commit); Fork copies it into a new doc (ops API:
// needs the node's --ops-token, given as ?opsToken=).

const slider = $("#history-slider");
const preview = $("#history-preview");
let versions = [];

async function loadHistory() {
  const answer = await doc.history({ limit: 100 });
  versions = answer.versions || [];
  $("#history-versions").replaceChildren(
    ...versions.map((v) => Object.assign(document.createElement("option"), { value: v.clock, label: new Date(v.at).toLocaleTimeString() })),
  );
  slider.max = String(answer.head);
  slider.value = String(answer.head);
  await showVersion(answer.head);
}

async function showVersion(clock) {
  $("#history-label").textContent = `clock ${clock} of ${slider.max}`;
  try {
    const state = await doc.at({ clock });
    if (Number(slider.value) !== clock) return; // moved on meanwhile
    preview.replaceChildren(
      ...[...state.records].filter(([id]) => id.startsWith("note:")).map(([id, record]) => {
        const el = document.createElement("div");
        el.className = "preview-note";
        el.dataset.note = id;
        el.style.left = `${(record.x ?? 0) * 100}%`;
        el.style.top = `${(record.y ?? 0) * 100}%`;
        el.textContent = record.text || "…";
        return el;
      }),
    );
    preview.dataset.clock = String(clock);
    $("#history-label").textContent = `clock ${clock} of ${slider.max}${state.at ? ` · ${new Date(state.at).toLocaleString()}` : ""}`;
  } catch (error) {
    $("#history-status").textContent = error.message;
  }
}

$("#history").addEventListener("toggle", () => $("#history").open && loadHistory().catch((e) => ($("#history-status").textContent = e.message)));
slider.addEventListener("change", () => showVersion(Number(slider.value)));
$("#history-restore").addEventListener("click", async () => {
  try {
    const answer = await doc.restore(Number(slider.value));
    $("#history-status").textContent = answer.changed ? `restored clock ${answer.restoredFrom} as clock ${answer.clock}` : "already this version";
    await loadHistory();
  } catch (error) {
    $("#history-status").textContent = `restore refused: ${error.message}`;
  }
});
$("#history-fork").addEventListener("click", async () => {
  const to = `${docId}-fork-${Date.now().toString(36)}`;
  const headers = params.get("opsToken") ? { Authorization: `Bearer ${params.get("opsToken")}` } : {};
  const url = `/api/docs/${encodeURIComponent(docId)}/fork?clock=${slider.value}&to=${encodeURIComponent(to)}`;
  try {
    const response = await fetch(url, { method: "POST", headers });
    const body = await response.json();
    if (!response.ok) throw new Error(body.message || response.statusText);
    const link = Object.assign(document.createElement("a"), { href: `?doc=${encodeURIComponent(to)}`, textContent: `open ${to}` });
    $("#history-status").replaceChildren(`forked into ${to} · `, link);
  } catch (error) {
    $("#history-status").textContent = `fork refused: ${error.message}`;
  }
});
doc.addEventListener("change", () => {
  if (!$("#history").open) return;
  const atHead = Number(slider.value) === Number(slider.max);
  slider.max = String(doc.clock);
  if (atHead) slider.value = slider.max;
  $("#history-label").textContent = `clock ${slider.value} of ${slider.max}`;
});
