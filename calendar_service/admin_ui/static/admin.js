// The dead-letter page: plain JavaScript over the admin API, with the bearer
// token of /auth/token kept in sessionStorage (gone when the tab closes).
"use strict";

const TOKEN = "rsvp-admin-token";
const $ = (selector) => document.querySelector(selector);
let currentQueue = null;
let nextCursor = null;

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(TOKEN)}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) { signOut(); throw new Error("signed out"); }
  if (!response.ok) {
    const detail = (await response.json().catch(() => ({}))).detail;
    throw new Error(typeof detail === "string" ? detail : `HTTP ${response.status}`);
  }
  return response.status === 204 ? null : response.json();
}

function cell(row, text, className) {
  const td = row.insertCell();
  td.textContent = text ?? "–";
  if (className) td.className = className;
  return td;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "–";
}

function status(text) { $("#status").textContent = text; }

async function loadQueues() {
  const { queues } = await api("GET", "/admin/dlq");
  const body = $("#queues tbody");
  body.replaceChildren();
  for (const queue of queues) {
    const row = body.insertRow();
    const name = cell(row, "");
    const link = document.createElement("a");
    link.href = "#"; link.textContent = queue.name;
    link.addEventListener("click", (event) => { event.preventDefault(); openQueue(queue.name); });
    name.append(link);
    cell(row, queue.origin);
    cell(row, String(queue.messages), "num");
    if (queue.messages > 0) row.classList.add("has-messages");
  }
}

async function loadSummary() {
  const { groups } = await api("GET", "/admin/dlq/summary");
  const body = $("#summary tbody");
  body.replaceChildren();
  if (groups.length === 0) {
    cell(body.insertRow(), "No dead letters. All good.").colSpan = 6;
  }
  for (const group of groups) {
    const row = body.insertRow();
    cell(row, group.queue);
    cell(row, group.type);
    cell(row, group.reason);
    cell(row, group.exception_type);
    cell(row, String(group.count), "num");
    cell(row, when(group.last_failed_at));
  }
}

async function openQueue(name, append = false) {
  currentQueue = name;
  $("#messages-card").hidden = false;
  $("#current-queue").textContent = name;
  const query = new URLSearchParams({ limit: "50" });
  if (append && nextCursor) query.set("cursor", nextCursor);
  const page = await api("GET", `/admin/dlq/${encodeURIComponent(name)}?${query}`);
  const body = $("#messages tbody");
  if (!append) body.replaceChildren();
  for (const item of page.items) addMessageRow(body, item);
  nextCursor = page.next_cursor;
  $("#more").hidden = !nextCursor;
  status(`${page.matched} message(s)`);
}

function addMessageRow(body, item) {
  const row = body.insertRow();
  const id = cell(row, "");
  const link = document.createElement("a");
  link.href = "#"; link.textContent = item.message_id;
  link.addEventListener("click", (event) => { event.preventDefault(); showDetail(item); });
  id.append(link);
  cell(row, item.type);
  cell(row, item.reason);
  cell(row, [item.exception_type, item.exception_message].filter(Boolean).join(": "));
  cell(row, String(item.attempts), "num");
  cell(row, when(item.failed_at));
  const actions = cell(row, "", "actions");
  actions.append(
    button("Replay", () => replay({ message_id: item.message_id }, `message ${item.message_id}`)),
    button("Delete", () => remove(item.message_id), "danger"),
  );
}

function button(label, onClick, className) {
  const element = document.createElement("button");
  element.textContent = label;
  if (className) element.className = className;
  element.addEventListener("click", onClick);
  return element;
}

function showDetail(item) {
  $("#detail-id").textContent = item.message_id;
  $("#detail-headers").textContent = JSON.stringify(item.headers, null, 2);
  $("#detail-body").textContent = JSON.stringify(item.body, null, 2);
  $("#detail").showModal();
}

// One action at a time: buttons are inert until the page has refreshed.
async function busyWhile(work) {
  document.body.classList.add("busy");
  try { await work(); } finally { document.body.classList.remove("busy"); }
}

async function replay(filter, what) {
  if (!confirm(`Replay ${what} from ${currentQueue} to its origin queue?`)) return;
  await busyWhile(async () => {
    status("Replaying…");
    try {
      const path = `/admin/dlq/${encodeURIComponent(currentQueue)}/replay`;
      const result = await api("POST", path, filter);
      status(`Replayed ${result.replayed} of ${result.matched} matching.`);
    } catch (error) { status(`Replay failed: ${error.message}`); }
    await refresh();
  });
}

async function remove(messageId) {
  if (!confirm(`Delete message ${messageId} from ${currentQueue} for good?`)) return;
  await busyWhile(async () => {
    try {
      const queue = encodeURIComponent(currentQueue);
      await api("DELETE", `/admin/dlq/${queue}/messages/${encodeURIComponent(messageId)}`);
      status(`Deleted ${messageId}.`);
    } catch (error) { status(`Delete failed: ${error.message}`); }
    await refresh();
  });
}

async function refresh() {
  const keep = $("#status").textContent;
  await loadQueues();
  await loadSummary();
  if (currentQueue) await openQueue(currentQueue);
  if (keep) status(keep);
}

function signOut() {
  sessionStorage.removeItem(TOKEN);
  $("#console").hidden = true;
  $("#sign-out").hidden = true;
  $("#who").textContent = "";
  $("#sign-in").hidden = false;
}

async function signIn(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  const response = await fetch("/auth/token", { method: "POST", body: new URLSearchParams(form) });
  if (!response.ok) {
    $("#sign-in-error").textContent = "Wrong email or password.";
    return;
  }
  sessionStorage.setItem(TOKEN, (await response.json()).access_token);
  $("#who").textContent = form.get("username");
  await start();
}

async function start() {
  $("#sign-in").hidden = true;
  $("#sign-out").hidden = false;
  try {
    await loadQueues();
    await loadSummary();
    $("#console").hidden = false;
  } catch (error) {
    signOut();
    $("#sign-in-error").textContent = error.message;
  }
}

$("#sign-in").addEventListener("submit", signIn);
$("#sign-out").addEventListener("click", signOut);
$("#refresh").addEventListener("click", refresh);
$("#more").addEventListener("click", () => openQueue(currentQueue, true));
$("#replay-all").addEventListener("click", () => replay({}, "every message"));
if (sessionStorage.getItem(TOKEN)) start(); else signOut();
