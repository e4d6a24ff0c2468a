// The Sở's dashboard: reads the /v1 reports with the user's token and redraws every few
// seconds. Every number shown sits in an element with data-k (what it is) and data-v (the
// value as the API gave it), so a test can compare the page with the API.
"use strict";

const REFRESH_MS = 5000;
const STAGES = ["open", "acknowledged", "expired", "fulfilled"];
const fmt = new Intl.NumberFormat("en-US");
const charts = {};
let token = null;
let districtNames = {};
let timer = null;

const $ = (id) => document.getElementById(id);

function readToken() {
  // A link may carry the token in the fragment (never sent to the server); keep it for this
  // tab only and take it out of the address bar.
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    sessionStorage.setItem("kyso-token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem("kyso-token");
}

class Unauthorized extends Error {}

async function get(path) {
  const res = await fetch(path, { headers: { Authorization: "Bearer " + token } });
  if (res.status === 401 || res.status === 403) {
    const body = await res.json().catch(() => ({}));
    throw new Unauthorized(body.detail || res.statusText);
  }
  if (!res.ok) throw new Error(path + ": " + res.status);
  return res.json();
}

// A cell (or any element) showing a number: data-v keeps the exact value.
function setNum(el, key, value, shown) {
  el.dataset.k = key;
  el.dataset.v = value === null || value === undefined ? "" : String(value);
  el.textContent = shown !== undefined ? shown : value === null || value === undefined ? "–" : fmt.format(value);
  return el;
}

function setKey(key, value, shown) {
  for (const el of document.querySelectorAll(`[data-k="${CSS.escape(key)}"]`)) setNum(el, key, value, shown);
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function numCell(tr, key, value, shown) {
  const td = document.createElement("td");
  td.className = "n";
  tr.appendChild(td);
  return setNum(td, key, value, shown);
}

// Replaces a table's rows: header names, then one row per item built by fill(tr, item).
function table(id, headers, items, fill) {
  const t = $(id);
  t.replaceChildren();
  const head = t.createTHead().insertRow();
  for (const h of headers) {
    const th = document.createElement("th");
    th.textContent = h.replace(/^#/, "");
    if (h.startsWith("#")) th.className = "n";
    head.appendChild(th);
  }
  const body = t.createTBody();
  for (const item of items) fill(body.insertRow(), item);
}

const pct = (x) => (x === null || x === undefined ? "–" : (x * 100).toFixed(1) + " %");

function duration(ms) {
  if (ms <= 0) return "due";
  const min = Math.floor(ms / 60000);
  const h = Math.floor(min / 60);
  return h > 0 ? `${h} h ${min % 60} min` : `${min} min`;
}

function chart(id, type, labels, datasets) {
  if (typeof Chart === "undefined") return; // the page still shows every number in tables
  if (charts[id]) {
    charts[id].data.labels = labels;
    charts[id].data.datasets.forEach((d, i) => (d.data = datasets[i].data));
    charts[id].update("none");
    return;
  }
  charts[id] = new Chart($(id), {
    type,
    data: { labels, datasets },
    options: {
      animation: false,
      maintainAspectRatio: false,
      plugins: { legend: { display: datasets.length > 1 } },
      scales: { y: { beginAtZero: true, ticks: { precision: 0 } } },
    },
  });
}

const RED = "#c8102e", GREY = "#b8c4cf", BLUE = "#2f6690";

// Issued in total and per segment come from the counts; targets, where the campaign sets
// them (R16), from the targets report.
function progress(t, totalRows, segmentRows) {
  const hasTargets = t.total !== null || t.segments.length > 0;
  $("as-of").textContent = hasTargets
    ? `as of ${t.as_of}, campaign ends ${t.ends}`
    : `as of ${t.as_of}; this campaign sets no targets`;
  const total = t.total || {};
  setKey("total:issued", totalRows.length ? totalRows[0].issued : 0);
  setKey("total:target", total.target ?? null);
  setKey("total:percent", total.percent ?? null, total.percent == null ? "–" : total.percent.toFixed(1) + " %");
  setKey("total:planned_by_now", total.planned_by_now ?? null);
  setKey("total:behind_by", total.behind_by ?? null);
  const targets = Object.fromEntries(t.segments.map((s) => [s.name, s]));
  const issued = Object.fromEntries(segmentRows.map((r) => [r.group[0], r.issued]));
  const names = [...new Set([...Object.keys(targets), ...Object.keys(issued)])].sort();
  table("segments", ["segment", "#issued", "#target", "#done", "#planned by today", "#behind by"], names, (tr, name) => {
    const p = targets[name] || {};
    cell(tr, name);
    numCell(tr, `segment:${name}:issued`, issued[name] || 0);
    numCell(tr, `segment:${name}:target`, p.target ?? null);
    numCell(tr, `segment:${name}:percent`, p.percent ?? null, p.percent == null ? "–" : p.percent.toFixed(1) + " %");
    numCell(tr, `segment:${name}:planned_by_now`, p.planned_by_now ?? null);
    numCell(tr, `segment:${name}:behind_by`, p.behind_by ?? null);
  });
  const datasets = [{ label: "issued", data: names.map((n) => issued[n] || 0), backgroundColor: RED }];
  if (hasTargets) {
    datasets.push({ label: "planned by today", data: names.map((n) => targets[n]?.planned_by_now ?? 0), backgroundColor: GREY });
  }
  chart("chart-segments", "bar", names, datasets);
}

function perCa(rows) {
  rows.sort((a, b) => b.issued - a.issued);
  table("cas", ["CA", "#issued", "#technical error", "#late", "#switched in"], rows, (tr, r) => {
    const ca = r.group[0];
    cell(tr, ca);
    numCell(tr, `ca:${ca}:issued`, r.issued);
    numCell(tr, `ca:${ca}:technical_error`, r.technical_error);
    numCell(tr, `ca:${ca}:late`, r.late);
    numCell(tr, `ca:${ca}:switched_in`, r.switched_in);
  });
  chart("chart-cas", "bar", rows.map((r) => r.group[0]), [
    { label: "issued", data: rows.map((r) => r.issued), backgroundColor: RED },
  ]);
}

function perDistrict(rows) {
  rows.sort((a, b) => b.issued - a.issued);
  const name = (code) => districtNames[code] || code;
  table("districts", ["district", "code", "#issued", "#late"], rows, (tr, r) => {
    const code = r.group[0];
    cell(tr, name(code));
    cell(tr, code);
    numCell(tr, `district:${code}:issued`, r.issued);
    numCell(tr, `district:${code}:late`, r.late);
  });
  chart("chart-districts", "bar", rows.map((r) => name(r.group[0])), [
    { label: "issued", data: rows.map((r) => r.issued), backgroundColor: BLUE },
  ]);
}

function perDay(rows) {
  rows.sort((a, b) => (a.group[0] < b.group[0] ? -1 : 1));
  table("days", ["day", "#issued"], rows, (tr, r) => {
    cell(tr, r.group[0]);
    numCell(tr, `day:${r.group[0]}:issued`, r.issued);
  });
  chart("chart-days", "line", rows.map((r) => r.group[0]), [
    { label: "issued", data: rows.map((r) => r.issued), borderColor: RED, backgroundColor: RED, tension: 0.2 },
  ]);
}

function demands(d) {
  setKey("demands:open", d.open);
  const cas = Object.keys(d.by_ca).sort();
  table("demands", ["CA", ...STAGES.map((s) => "#" + s)], cas, (tr, ca) => {
    cell(tr, ca);
    for (const s of STAGES) numCell(tr, `demands:${ca}:${s}`, d.by_ca[ca][s] || 0);
  });
  table("due", ["demand", "CA", "district", "commune", "expires", "#time left"], d.due_soon, (tr, l) => {
    if (l.time_left_ms < 3600000) tr.className = "urgent";
    cell(tr, String(l.demand));
    cell(tr, l.ca || "unassigned");
    cell(tr, districtNames[l.district] || l.district);
    cell(tr, l.commune);
    cell(tr, l.expires_at.replace("T", " ").replace(/\.\d+Z$/, " UTC"));
    numCell(tr, `due:${l.demand}:time_left_ms`, l.time_left_ms, duration(l.time_left_ms));
  });
}

function compliance(lines) {
  const cols = [
    ["issuances", "#issued"],
    ["lookup_share", "#looked up first", pct],
    ["recording_p50_s", "#recording p50 (s)"],
    ["recording_p95_s", "#p95 (s)"],
    ["late", "#late"],
    ["refused_duplicates", "#refused: duplicate"],
    ["refused_inactive", "#refused: inactive"],
    ["refused_staff", "#refused: staff"],
    ["demands_assigned", "#demands"],
    ["demands_answered", "#answered"],
    ["demands_expired", "#expired"],
    ["violations", "#violations"],
  ];
  table("compliance", ["CA", "status", ...cols.map((c) => c[1])], lines, (tr, l) => {
    cell(tr, l.ca);
    cell(tr, l.status);
    for (const [field, , show] of cols) {
      const v = l[field];
      numCell(tr, `compliance:${l.ca}:${field}`, v, show ? show(v) : undefined);
    }
  });
}

function violations(list) {
  setKey("violations:count", list.length);
  const newest = list.slice().reverse();
  table("violations", ["#seq", "recorded", "CA", "kind", "description"], newest, (tr, v) => {
    numCell(tr, `violation:${v.seq}:seq`, v.seq, String(v.seq));
    cell(tr, v.recorded_at.replace("T", " ").replace(/\.\d+Z$/, " UTC"));
    cell(tr, v.ca);
    cell(tr, String(v.kind).replaceAll("_", " "));
    cell(tr, v.description);
  });
}

async function refresh() {
  try {
    const [ready, t, totalRows, segments, cas, districts, days, d, c, v] = await Promise.all([
      fetch("/readyz").then((r) => r.json()),
      get("/v1/reports/targets"),
      get("/v1/reports/counts"),
      get("/v1/reports/counts?group_by=segment"),
      get("/v1/reports/counts?group_by=ca"),
      get("/v1/reports/counts?group_by=district"),
      get("/v1/reports/counts?group_by=day"),
      get("/v1/reports/demands"),
      get("/v1/reports/compliance"),
      get("/v1/violations"),
    ]);
    progress(t, totalRows, segments);
    perCa(cas);
    perDistrict(districts);
    perDay(days);
    demands(d);
    compliance(c);
    violations(v);
    const status = $("status");
    status.className = "";
    status.textContent = `log at seq ${fmt.format(ready.last_seq)} · reports ${ready.projection_lag} events behind · updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.seq = ready.last_seq;
    document.body.dataset.loaded = "1";
  } catch (e) {
    if (e instanceof Unauthorized) {
      sessionStorage.removeItem("kyso-token");
      showLogin(e.message);
      return;
    }
    const status = $("status");
    status.className = "stale";
    status.textContent = `could not refresh (${e.message}); retrying — numbers shown may be stale`;
  }
}

function showLogin(message) {
  clearInterval(timer);
  $("board").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("status").textContent = "";
}

async function start() {
  token = readToken();
  if (!token) return showLogin();
  $("login").hidden = true;
  $("board").hidden = false;
  await refresh();
  clearInterval(timer);
  timer = setInterval(refresh, REFRESH_MS);
}

$("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem("kyso-token", $("token").value.trim());
  start();
});

fetch("/v1/campaign")
  .then((r) => r.json())
  .then((c) => {
    $("campaign").textContent = c.name;
    document.title = c.name + " — kyso";
    districtNames = Object.fromEntries(c.districts.map((d) => [d.code, d.name]));
  })
  .catch(() => {})
  .finally(start);
