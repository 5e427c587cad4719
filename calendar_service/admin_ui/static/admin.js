// The dead-letter page: plain JavaScript over the admin API (the dead-letter
// store: nothing here touches a queue), with the bearer token of /auth/token
// kept in sessionStorage (gone when the tab closes).
"use strict";

const TOKEN = "rsvp-admin-token";
const $ = (selector) => document.querySelector(selector);
let current = null;  // {label, filter}: the group or queue whose letters are shown
let nextCursor = null;
let watching = null;  // the timer that polls running replays

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

function link(text, onClick) {
  const element = document.createElement("a");
  element.href = "#"; element.textContent = text;
  element.addEventListener("click", (event) => { event.preventDefault(); onClick(); });
  return element;
}

function button(label, onClick, className) {
  const element = document.createElement("button");
  element.textContent = label;
  if (className) element.className = className;
  element.addEventListener("click", onClick);
  return element;
}

function when(iso) { return iso ? new Date(iso).toLocaleString() : "–"; }
function status(text) { $("#status").textContent = text; }
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function loadGroups() {
  const { groups } = await api("GET", "/admin/dead-letters/groups");
  const body = $("#summary tbody");
  body.replaceChildren();
  if (groups.length === 0) cell(body.insertRow(), "No dead letters. All good.").colSpan = 7;
  for (const group of groups) {
    const row = body.insertRow();
    row.dataset.group = group.group;
    cell(row, group.queue);
    cell(row, group.type);
    cell(row, group.reason);
    cell(row, [group.exception_type, group.sample_message].filter(Boolean).join(": "), "sample");
    const label = `group ${group.group}`;
    cell(row, "", "num").append(link(String(group.count), () => openLetters(label, { group: group.group })));
    cell(row, when(group.last_failed_at));
    cell(row, "", "actions").append(
      button("Replay group", () => replay({ group: group.group }, `the ${group.count} dead letters of this group`)),
    );
  }
}

async function loadQueues() {
  const { queues } = await api("GET", "/admin/dlq");
  const body = $("#queues tbody");
  body.replaceChildren();
  for (const queue of queues) {
    const row = body.insertRow();
    cell(row, "").append(link(queue.name, () => openLetters(queue.name, { queue: queue.name })));
    cell(row, queue.origin);
    cell(row, String(queue.messages), "num");
    if (queue.messages > 0) row.classList.add("has-messages");
  }
}

async function openLetters(label, filter, append = false) {
  current = { label, filter };
  $("#messages-card").hidden = false;
  $("#current-queue").textContent = label;
  const query = new URLSearchParams({ ...filter, state: "dead", limit: "50" });
  if (append && nextCursor) query.set("cursor", nextCursor);
  const page = await api("GET", `/admin/dead-letters?${query}`);
  const body = $("#messages tbody");
  if (!append) body.replaceChildren();
  for (const item of page.items) addMessageRow(body, item);
  nextCursor = page.next_cursor;
  $("#more").hidden = !nextCursor;
}

function addMessageRow(body, item) {
  const row = body.insertRow();
  cell(row, "").append(link(item.message_id, () => showDetail(item)));
  cell(row, item.type);
  cell(row, item.reason);
  cell(row, [item.exception_type, item.exception_message].filter(Boolean).join(": "));
  cell(row, String(item.attempts), "num");
  cell(row, when(item.failed_at));
  cell(row, "", "actions").append(
    button("Replay", () => replay({ ids: [item.id] }, `message ${item.message_id}`)),
    button("Delete", () => remove(item), "danger"),
  );
}

function showDetail(item) {
  $("#detail-id").textContent = item.message_id;
  $("#detail-headers").textContent = JSON.stringify(item.headers, null, 2);
  $("#detail-body").textContent = JSON.stringify(item.body, null, 2);
  $("#detail").showModal();
}

async function loadReplays() {
  const { replays } = await api("GET", "/admin/dead-letters/replays");
  const body = $("#replays tbody");
  body.replaceChildren();
  for (const replay of replays) {
    const row = body.insertRow();
    cell(row, when(replay.started_at));
    cell(row, replay.actor);
    cell(row, replay.state);
    const bar = document.createElement("progress");
    bar.max = Math.max(replay.matched, 1); bar.value = replay.replayed;
    cell(row, ` ${replay.replayed} / ${replay.matched}`).prepend(bar);
    cell(row, String(replay.failed_again), "num");
    cell(row, replay.stopped_reason);
    const actions = cell(row, "", "actions");
    if (replay.state === "running") {
      actions.append(button("Stop", () => cancel(replay.replay_id), "danger"));
    }
  }
  const running = replays.some((replay) => replay.state === "running");
  clearTimeout(watching);
  if (running) watching = setTimeout(() => refresh().catch(() => {}), 1000);
}

async function loadAudit() {
  const { items } = await api("GET", "/admin/audit");
  const body = $("#audit tbody");
  body.replaceChildren();
  for (const entry of items) {
    const row = body.insertRow();
    cell(row, when(entry.at));
    cell(row, entry.actor);
    cell(row, entry.action);
    cell(row, entry.target);
    cell(row, JSON.stringify(entry.detail), "sample");
  }
}

// One action at a time: buttons are inert until the page has refreshed.
async function busyWhile(work) {
  document.body.classList.add("busy");
  try { await work(); } finally { document.body.classList.remove("busy"); }
}

async function replay(filter, what) {
  if (!confirm(`Replay ${what} to the origin queue?`)) return;
  await busyWhile(async () => {
    status("Replaying…");
    try {
      const started = await api("POST", "/admin/dead-letters/replay", filter);
      let progress = { state: "running" };
      while (progress.state === "running") {
        progress = await api("GET", `/admin/dead-letters/replays/${started.replay_id}`);
        status(`Replaying: ${progress.replayed} of ${started.matched}…`);
        if (progress.state === "running") await sleep(300);
      }
      const why = progress.stopped_reason ? ` (stopped: ${progress.stopped_reason})` : "";
      status(`Replayed ${progress.replayed} of ${started.matched} matching${why}.`);
    } catch (error) { status(`Replay failed: ${error.message}`); }
    await refresh();
  });
}

async function remove(item) {
  if (!confirm(`Delete message ${item.message_id} for good?`)) return;
  await busyWhile(async () => {
    try {
      await api("DELETE", `/admin/dead-letters/${item.id}`);
      status(`Deleted ${item.message_id}.`);
    } catch (error) { status(`Delete failed: ${error.message}`); }
    await refresh();
  });
}

async function cancel(replayId) {
  await api("DELETE", `/admin/dead-letters/replays/${replayId}`);
  await refresh();
}

async function refresh() {
  await loadGroups();
  if (current) await openLetters(current.label, current.filter);
  await loadReplays();
  await loadQueues();
  await loadAudit();
}

function showTab(audit) {
  $("#letters-view").hidden = audit;
  $("#audit-view").hidden = !audit;
  $("#tab-letters").setAttribute("aria-selected", String(!audit));
  $("#tab-audit").setAttribute("aria-selected", String(audit));
}

function signOut() {
  sessionStorage.removeItem(TOKEN);
  clearTimeout(watching);
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
    await refresh();
    $("#console").hidden = false;
  } catch (error) {
    signOut();
    $("#sign-in-error").textContent = error.message;
  }
}

$("#sign-in").addEventListener("submit", signIn);
$("#sign-out").addEventListener("click", signOut);
$("#refresh").addEventListener("click", () => refresh());
$("#tab-letters").addEventListener("click", () => showTab(false));
$("#tab-audit").addEventListener("click", () => showTab(true));
$("#more").addEventListener("click", () => openLetters(current.label, current.filter, true));
$("#replay-all").addEventListener("click", () => replay(current.filter, `every dead letter of ${current.label}`));
if (sessionStorage.getItem(TOKEN)) start(); else signOut();
