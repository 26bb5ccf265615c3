// Tandem status page: polls /api/status once a second and updates the page in place.
//
// Every element is created once (the static HTML, keyed table rows, one chart per canvas) and only its
// text changes, so refreshes do not flicker and references stay valid. When the node stops answering
// the page keeps the last figures greyed out and says since when it is unreachable; it keeps polling
// and recovers on its own.

import * as fmt from "./format.js";
import { LineChart } from "./chart.js";
import { KeyedTable, setText } from "./table.js";

const params = new URLSearchParams(location.search);

// The demo link shows when this node serves the demo too (the whole Web/ tree, as `make run` does).
fetch("/demo/", { method: "HEAD", cache: "no-store" })
  .then((response) => {
    if (response.ok) document.querySelector("#demo-link").hidden = false;
  })
  .catch(() => {});
const API_URL = params.get("api") || "/api/status";
const POLL_MS = 1000;
const TIMEOUT_MS = Number(params.get("timeout")) || 2500;

const $ = (selector) => document.querySelector(selector);
const metricElements = new Map();
for (const element of document.querySelectorAll("[data-metric]")) metricElements.set(element.dataset.metric, element);

/** Sets a named metric's text and raw value. */
function metric(name, text, value) {
  setText(metricElements.get(name), text, value);
}

// MARK: charts

const charts = {
  connections: { unit: "count", series: [{ key: "connections", label: "open", color: "--series-1" }], shadeKey: "storm", minMax: 5 },
  churn: {
    unit: "rate",
    shadeKey: "storm",
    minMax: 1,
    series: [
      { key: "openedPerSecond", label: "new", color: "--series-2" },
      { key: "closedPerSecond", label: "closed", color: "--series-3" },
      { key: "reconnectsPerSecond", label: "reconnects", color: "--series-4" },
    ],
  },
  presence: {
    unit: "rate",
    minMax: 1,
    series: [
      { key: "presenceDeliveriesPerSecond", label: "deliveries", color: "--series-1" },
      { key: "presenceUpdatesPerSecond", label: "updates", color: "--series-2" },
    ],
  },
  lag: { unit: "ms", minMax: 1, series: [{ key: "syncLagP95Ms", label: "p95", color: "--series-4" }] },
  outbound: { unit: "bytes", series: [{ key: "outboundQueueBytes", label: "outbound", color: "--series-1" }] },
  queues: {
    unit: "count",
    minMax: 5,
    series: [
      { key: "redisQueue", label: "redis", color: "--series-2" },
      { key: "pushQueue", label: "push", color: "--series-3" },
    ],
  },
  conflicts: { unit: "percent", series: [{ key: "conflictRate", label: "conflicts", color: "--series-4" }] },
};

const chartViews = [];
for (const figure of document.querySelectorAll("figure.chart")) {
  const options = charts[figure.dataset.chart];
  if (!options) continue;
  const canvas = figure.querySelector("canvas");
  // The legend: one swatch, label and current value per series, built once.
  const legend = document.createElement("ul");
  legend.className = "legend";
  const values = new Map();
  for (const series of options.series) {
    const item = document.createElement("li");
    item.style.setProperty("--swatch", `var(${series.color})`);
    const label = document.createElement("span");
    label.className = "legend-label";
    label.textContent = series.label;
    const value = document.createElement("span");
    value.className = "legend-value";
    value.dataset.series = series.key;
    value.textContent = fmt.DASH;
    item.append(label, " ", value);
    legend.append(item);
    values.set(series.key, value);
  }
  figure.querySelector("figcaption").after(legend);
  chartViews.push({ chart: new LineChart(canvas, options), options, values });
}

function updateCharts(history) {
  for (const { chart, options, values } of chartViews) {
    chart.update(history);
    for (const series of options.series) {
      const v = chart.latest(series.key);
      setText(values.get(series.key), fmt.byUnit(v ?? NaN, options.unit), v);
    }
  }
}

// MARK: tables

const num = (value, format = fmt.integer) => (item, cell) => {
  const v = typeof value === "function" ? value(item) : item[value];
  setText(cell, format(v ?? NaN), v ?? null);
};

let thisNode = null;

/** A cell holding one status word with a health colour and symbol (not by colour alone). */
function health(cell, text, level) {
  if (!cell.firstChild) {
    const span = document.createElement("span");
    span.className = "health";
    cell.append(span);
  }
  setText(cell.firstChild, text, text);
  if (cell.firstChild.dataset.health !== level) cell.firstChild.dataset.health = level;
}

const nodesTable = new KeyedTable($("#nodes-table tbody"), {
  keyAttribute: "node",
  empty: "No node has reported yet.",
  columns: [
    {
      field: "node",
      label: "Node",
      render(item, cell) {
        if (!cell.firstChild) {
          cell.append(document.createElement("span"), document.createElement("span"));
          cell.firstChild.className = "node-name";
          cell.lastChild.className = "tag tag-self";
        }
        setText(cell.firstChild, item.node, item.node);
        setText(cell.lastChild, item.node === thisNode ? "this node" : "");
      },
    },
    {
      field: "state",
      label: "State",
      render(item, cell) {
        // alive:false with state "stopped": shut down cleanly; with "serving": stopped heartbeating.
        const state = item.alive === false ? (item.state === "stopped" ? "stopped" : "no heartbeat") : item.state || "unknown";
        health(cell, state, item.alive === false ? "bad" : item.state === "serving" ? "good" : "warn");
      },
    },
    { field: "connections", label: "Connections", numeric: true, render: num("connections") },
    { field: "docs", label: "Docs", numeric: true, render: num("docs") },
    { field: "presenceSessions", label: "Sessions", numeric: true, render: num("presenceSessions") },
    {
      field: "redisUp",
      label: "Redis",
      render(item, cell) {
        health(cell, item.redisUp ? "up" : "down", item.redisUp ? "good" : "bad");
        cell.dataset.value = String(item.redisUp);
      },
    },
    { field: "wsPort", label: "Client port", numeric: true, render: (item, cell) => setText(cell, String(item.wsPort ?? fmt.DASH), item.wsPort) },
    {
      field: "opsPort",
      label: "Ops port",
      numeric: true,
      render(item, cell) {
        // A link to that node's own status page (same host, its ops port).
        if (!cell.firstChild || cell.firstChild.nodeName !== "A") {
          cell.textContent = "";
          cell.append(document.createElement("a"));
        }
        const link = cell.firstChild;
        const href = item.opsPort ? `${location.protocol}//${location.hostname}:${item.opsPort}/` : "";
        if (link.getAttribute("href") !== href) link.setAttribute("href", href);
        setText(link, String(item.opsPort ?? fmt.DASH));
        cell.dataset.value = String(item.opsPort ?? "");
      },
    },
    { field: "startedAt", label: "Started", render: (item, cell) => setText(cell, fmt.clockTime(item.startedAt), item.startedAt) },
    {
      field: "lastSeen",
      label: "Last seen",
      numeric: true,
      render: (item, cell) => {
        const ago = item.lastSeenSecondsAgo;
        setText(cell, Number.isFinite(ago) ? (ago < 2 ? "now" : `${fmt.duration(ago)} ago`) : fmt.DASH, ago);
      },
    },
  ],
  decorate(item, row) {
    row.classList.toggle("row-down", item.alive === false);
    row.classList.toggle("row-self", item.node === thisNode);
  },
});

const docsTable = new KeyedTable($("#docs-table tbody"), {
  keyAttribute: "doc",
  empty: "No docs have members on this node.",
  columns: [
    {
      field: "doc",
      label: "Doc",
      render(item, cell) {
        if (!cell.firstChild) {
          cell.append(document.createElement("span"), document.createElement("span"));
          cell.firstChild.className = "doc-id";
          cell.lastChild.className = "tag tag-large";
        }
        setText(cell.firstChild, item.doc, item.doc);
        setText(cell.lastChild, item.large ? "large" : "");
      },
    },
    { field: "members", label: "Members", numeric: true, render: num("members") },
    { field: "editors", label: "Editors", numeric: true, render: num("editors") },
    { field: "viewers", label: "Viewers", numeric: true, render: num("viewers") },
    { field: "localMembers", label: "Here", numeric: true, render: num("localMembers") },
    { field: "presenceUpdatesPerSecond", label: "Presence/s", numeric: true, render: num("presenceUpdatesPerSecond", fmt.rate) },
    { field: "pushesPerSecond", label: "Pushes/s", numeric: true, render: num("pushesPerSecond", fmt.rate) },
    { field: "headClock", label: "Head clock", numeric: true, render: num("headClock") },
    { field: "records", label: "Records", numeric: true, render: num("records") },
    { field: "conflictRate", label: "Conflicts", numeric: true, render: num("conflictRate", fmt.percent) },
    { field: "syncLagP95Ms", label: "Lag p95", numeric: true, render: num("syncLagP95Ms", fmt.ms) },
    { field: "largestOutboundBytes", label: "Largest outbound", numeric: true, render: num("largestOutboundBytes", fmt.bytes) },
    { field: "historyBytes", label: "History", numeric: true, render: num("historyBytes", fmt.bytes) },
  ],
});

// MARK: rendering

/** When the current storm started, from the history (the oldest sample of the current run). */
function stormSince(history) {
  let since = null;
  for (let i = history.length - 1; i >= 0 && history[i].storm; i -= 1) since = history[i].t;
  return since;
}

function render(status) {
  thisNode = status.node;
  metric("node", status.node, status.node);
  metric("protocol", String(status.protocolVersion), status.protocolVersion);
  metric("uptime", fmt.duration(status.uptimeSeconds), status.uptimeSeconds);

  const rates = status.rates || {};
  metric("connections", fmt.integer(status.connections), status.connections);
  metric("opened-rate", fmt.rate(rates.openedPerSecond), rates.openedPerSecond);
  metric("closed-rate", fmt.rate(rates.closedPerSecond), rates.closedPerSecond);
  metric("reconnect-rate", fmt.rate(status.reconnects?.ratePerSecond), status.reconnects?.ratePerSecond);

  metric("presence-sessions", fmt.integer(status.presenceSessions), status.presenceSessions);
  metric("presence-updates-rate", fmt.rate(rates.presenceUpdatesPerSecond), rates.presenceUpdatesPerSecond);
  metric("presence-deliveries-rate", fmt.rate(rates.presenceDeliveriesPerSecond), rates.presenceDeliveriesPerSecond);

  metric("pushes-rate", fmt.rate(rates.pushesPerSecond), rates.pushesPerSecond);
  metric("conflict-rate", fmt.percent(rates.conflictRate), rates.conflictRate);
  metric("sync-lag", fmt.ms(rates.syncLagP95Ms ?? NaN), rates.syncLagP95Ms ?? null);

  const redis = status.redis || {};
  // A cluster with some shards down (failing over) still serves the docs of the others: degraded, not down.
  const shards = redis.shards || [];
  const shardsUp = shards.filter((s) => s.up).length;
  const partlyUp = redis.up || redis.subscriberUp || shardsUp > 0;
  const redisHealth = redis.up && redis.subscriberUp ? "good" : partlyUp ? "warn" : "bad";
  metric("redis-status", redis.up ? (redis.subscriberUp ? "up" : "degraded") : partlyUp ? "degraded" : "down", redisHealth);
  const redisStatus = metricElements.get("redis-status");
  if (redisStatus.dataset.health !== redisHealth) redisStatus.dataset.health = redisHealth;
  metric("redis-subscriber", redis.subscriberUp ? "up" : "down", redis.subscriberUp);
  metric("redis-pending", fmt.integer(redis.pendingCommands), redis.pendingCommands);
  const mode = redis.cluster ? `cluster, ${shardsUp} of ${shards.length} shards up` : "single server";
  metric("redis-mode", mode, redis.cluster ? `cluster:${shardsUp}/${shards.length}` : "single");
  metric("redis-endpoint", redis.endpoint || fmt.DASH, redis.endpoint);
  metric("ready", status.ready ? "yes" : "no", status.ready);

  metric("outbound-bytes", fmt.bytes(rates.outboundQueueBytes), rates.outboundQueueBytes);
  metric("redis-queue", fmt.integer(rates.redisQueue), rates.redisQueue);
  metric("push-queue", fmt.integer(rates.pushQueue), rates.pushQueue);

  const nodes = status.nodes || [];
  metric("node-count", String(nodes.length), nodes.length);
  nodesTable.update(nodes, (n) => n.node);

  const docs = status.docs || [];
  // The API lists at most --ops-max-list-items docs (the largest); docsTotal counts them all.
  const docsTotal = status.docsTotal ?? docs.length;
  const docCount = docsTotal > docs.length ? `${docs.length} of ${docsTotal}` : String(docsTotal);
  metric("doc-count", docCount, docsTotal);
  docsTable.update(docs, (d) => d.doc);

  renderStorm(status);
  updateCharts(status.history || []);
  document.body.dataset.node = status.node;
}

const stormBanner = $("#storm-banner");
let stormShown = false;

function renderStorm(status) {
  const storm = status.reconnects || {};
  const on = storm.storm === true;
  if (on) {
    metric("storm-rate", fmt.rate(storm.ratePerSecond), storm.ratePerSecond);
    metric("storm-threshold", Number.isInteger(storm.stormThreshold) ? fmt.integer(storm.stormThreshold) : fmt.rate(storm.stormThreshold), storm.stormThreshold);
    metric("storm-peak", fmt.rate(storm.stormPeakRate ?? storm.ratePerSecond), storm.stormPeakRate ?? storm.ratePerSecond);
    const since = storm.stormStartedAt ? Date.parse(storm.stormStartedAt) / 1000 : stormSince(status.history || []);
    $("#storm-since-wrap").hidden = since === null;
    if (since !== null) metric("storm-since", fmt.clockTime(since * 1000), since);
  }
  if (on !== stormShown) {
    stormShown = on;
    stormBanner.hidden = !on;
    document.body.classList.toggle("storm", on);
    if (!on) announce("The reconnect storm is over.");
  }
}

// MARK: reachability

const announcer = $("#announcer");
function announce(text) {
  announcer.textContent = text;
}

const liveState = $("#live-state");
const liveText = $("#live-text");
const unreachableBanner = $("#unreachable-banner");
let downSince = null;
let failures = 0;
let lastSuccess = null;

function setLiveState(state, text) {
  if (liveState.dataset.state !== state) liveState.dataset.state = state;
  setText(liveText, text);
}

function markReachable() {
  lastSuccess = new Date();
  if (downSince !== null) announce(`Node reachable again at ${fmt.clockTime(lastSuccess)}.`);
  downSince = null;
  failures = 0;
  unreachableBanner.hidden = true;
  document.body.classList.remove("stale");
  setLiveState("live", `Live · updated ${fmt.clockTime(lastSuccess)}`);
}

function describe(error) {
  if (error?.name === "AbortError") return `no answer within ${TIMEOUT_MS / 1000} s`;
  if (error instanceof TypeError) return "connection failed";
  return error?.message || String(error);
}

function markUnreachable(error) {
  failures += 1;
  if (downSince === null) downSince = new Date();
  const since = fmt.clockTime(downSince);
  setText($("#unreachable-since"), since, downSince.toISOString());
  const last = lastSuccess ? `last data from ${fmt.clockTime(lastSuccess)}` : "no data received yet";
  setText($("#unreachable-detail"), `${failures} failed ${failures === 1 ? "attempt" : "attempts"} (${describe(error)}); ${last}`);
  unreachableBanner.hidden = false;
  document.body.classList.add("stale");
  setLiveState("down", `Unreachable since ${since}`);
}

// MARK: polling

// The full five minutes of history come once; afterwards only the newest samples, merged in here.
const HISTORY_SAMPLES = 300;
let history = null;

function mergeHistory(samples) {
  if (history === null) {
    history = samples.slice(-HISTORY_SAMPLES);
    return history;
  }
  const last = history.length ? history[history.length - 1].t : -Infinity;
  for (const sample of samples) if (sample.t > last) history.push(sample);
  if (history.length > HISTORY_SAMPLES) history.splice(0, history.length - HISTORY_SAMPLES);
  return history;
}

async function poll() {
  const started = performance.now();
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
  try {
    const url = new URL(API_URL, location.href);
    if (history !== null) url.searchParams.set("history", "5");
    const response = await fetch(url, { cache: "no-store", signal: controller.signal, headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const status = await response.json();
    status.history = mergeHistory(status.history || []);
    render(status);
    markReachable();
  } catch (error) {
    history = null;  // after an outage, fetch the whole history again (the node may have restarted)
    markUnreachable(error);
  } finally {
    clearTimeout(timer);
    window.tandemStatus.polls += 1;
    setTimeout(poll, Math.max(0, POLL_MS - (performance.now() - started)));
  }
}

// For tests and the curious: how many polls ran.
window.tandemStatus = { polls: 0 };
poll();
