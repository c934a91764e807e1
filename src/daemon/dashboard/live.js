// The dashboard's only script: live node states on a run page (over the
// daemon's WebSocket, signed in by the session cookie), and the run buttons.
"use strict";

function setNode(id, state) {
  for (const el of document.querySelectorAll("[data-node]")) {
    if (el.dataset.node !== id) continue;
    el.setAttribute("class", (el.getAttribute("class") || "").replace(/\bn-[a-z]+\b/, "n-" + state));
    el.dataset.state = state;
  }
}

function follow(root) {
  const conn = document.getElementById("conn");
  const say = (text, cls) => { if (conn) { conn.textContent = text; conn.className = cls; } };
  let finished = false;
  const ws = new WebSocket(`ws://${location.host}/api/v1/executions/${encodeURIComponent(root.dataset.run)}/events`);
  ws.onopen = () => say("live", "conn-live");
  ws.onmessage = (message) => {
    let e;
    try { e = JSON.parse(message.data); } catch { return; }
    if (e.type === "node_started") setNode(e.node, "running");
    else if (e.type === "node_finished" || e.type === "node_failed") setNode(e.node, e.status);
    else if (e.type === "run_finished" || (e.type === "run" && e.status)) {
      finished = true;
      // The whole record (outputs, errors, log) as the server renders it.
      location.reload();
    }
  };
  ws.onclose = () => {
    if (finished) return;
    // Dropped (sleep, restart): say so, then read the page again.
    say("disconnected: reloading", "conn-lost");
    setTimeout(() => location.reload(), 2000);
  };
}

// The daemon's error message ({"error": {"message"}}), else the status.
function problem(answer, r) {
  return (answer && answer.error && answer.error.message) || `failed: HTTP ${r.status}`;
}

async function post(button) {
  if (button.dataset.confirm && !confirm(button.dataset.confirm)) return;
  button.disabled = true;
  try {
    const r = await fetch(button.dataset.post, {
      method: "POST", headers: {"content-type": "application/json"}, body: button.dataset.body || "{}", credentials: "same-origin",
    });
    const answer = await r.json().catch(() => ({}));
    if (!r.ok) {
      const out = document.getElementById("action-error");
      if (out) out.textContent = problem(answer, r);
      button.disabled = false;
      return;
    }
    if (button.dataset.then) {
      location.href = button.dataset.then;
    } else if (answer.run_id && answer.run_id !== document.querySelector("[data-run]")?.dataset.run) {
      location.href = "/runs/" + encodeURIComponent(answer.run_id);
    } else {
      location.reload();
    }
  } catch (err) {
    button.disabled = false;
  }
}

async function remove(button) {
  if (!confirm(button.dataset.confirm || "Delete?")) return;
  const r = await fetch(button.dataset.delete, {method: "DELETE", credentials: "same-origin"});
  if (r.ok) { if (button.dataset.then) location.href = button.dataset.then; else location.reload(); return; }
  const answer = await r.json().catch(() => ({}));
  const out = document.getElementById("action-error");
  if (out) out.textContent = problem(answer, r);
}

async function runForm(form, event) {
  event.preventDefault();
  const input = {};
  for (const field of form.querySelectorAll("input[name]")) {
    if (field.value !== "") input[field.name] = field.value; // the daemon converts by the param's type
  }
  const out = document.getElementById("run-error");
  const r = await fetch(form.dataset.runForm, {
    method: "POST", headers: {"content-type": "application/json"}, body: JSON.stringify(input), credentials: "same-origin",
  });
  const answer = await r.json().catch(() => ({}));
  if (r.ok && answer.run_id) location.href = "/runs/" + encodeURIComponent(answer.run_id);
  else if (out) out.textContent = problem(answer, r);
}

// The New node form: create the package, then wait for hot reload to load
// it and show it in the catalog.
async function newNode(form, event) {
  event.preventDefault();
  const out = document.getElementById("new-status");
  const body = {name: form.elements.name.value.trim(), lang: form.elements.lang.value};
  const description = form.elements.description.value.trim();
  if (description !== "") body.description = description;
  const r = await fetch(form.dataset.newNode, {
    method: "POST", headers: {"content-type": "application/json"}, body: JSON.stringify(body), credentials: "same-origin",
  });
  const answer = await r.json().catch(() => ({}));
  if (!r.ok) { out.textContent = problem(answer, r); out.className = "err"; return; }
  out.className = "meta";
  out.textContent = `Created ${answer.dir} (${answer.files.join(", ")}); waiting for it to load…`;
  const deadline = Date.now() + 30000;
  while (Date.now() < deadline) {
    const listed = await fetch("/api/v1/nodes", {credentials: "same-origin"}).then((r) => r.json()).catch(() => ({}));
    if ((listed.nodes || []).some((n) => n.type === answer.name)) {
      location.href = "/nodes?new=" + encodeURIComponent(answer.name) + "#fresh";
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  out.className = "err";
  out.textContent = `Created ${answer.dir}, but it was not loaded within 30 s: the "Packages that could not be loaded" list or \`fuse nodes doctor\` says why.`;
}

// The credential form: only the chosen type's fields are shown and sent;
// values go to the daemon once and never come back.
function credentialForm(form) {
  const choose = () => {
    for (const set of form.querySelectorAll("fieldset[data-type]")) {
      const on = set.dataset.type === form.elements.type.value;
      set.hidden = !on;
      set.disabled = !on;
    }
  };
  form.elements.type.addEventListener("change", choose);
  choose();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const out = document.getElementById("cred-status");
    const fields = {};
    for (const input of form.querySelectorAll(`fieldset[data-type="${CSS.escape(form.elements.type.value)}"] input[data-field]`)) {
      if (input.value !== "") fields[input.dataset.field] = input.value;
    }
    const body = {name: form.elements.name.value.trim(), type: form.elements.type.value, fields};
    const r = await fetch(form.dataset.newCredential, {
      method: "POST", headers: {"content-type": "application/json"}, body: JSON.stringify(body), credentials: "same-origin",
    });
    for (const input of form.querySelectorAll("input[data-field]")) input.value = "";
    if (r.ok) { location.reload(); return; }
    const answer = await r.json().catch(() => ({}));
    out.className = "err";
    out.textContent = problem(answer, r);
  });
}

async function check(button) {
  const out = button.parentElement.querySelector(".check-result");
  const r = await fetch(button.dataset.check, {method: "POST", credentials: "same-origin"});
  const answer = await r.json().catch(() => ({}));
  if (r.ok && answer.ok) { out.className = "check-result s-succeeded"; out.textContent = "decrypts"; }
  else { out.className = "check-result err"; out.textContent = r.ok ? answer.error : problem(answer, r); }
}

// A node's input or output cut on the page, loaded whole from the API.
async function loadPart(button) {
  const root = document.querySelector("[data-run]");
  button.disabled = true;
  const r = await fetch(`/api/v1/executions/${encodeURIComponent(root.dataset.run)}`, {credentials: "same-origin"});
  const answer = await r.json().catch(() => ({}));
  const row = r.ok && answer.nodes ? answer.nodes[Number(button.dataset.index)] : null;
  const pre = document.querySelector(`pre[data-part="${button.dataset.load}"][data-index="${button.dataset.index}"]`);
  if (row && pre) {
    pre.textContent = JSON.stringify(row[button.dataset.load], null, 2);
    button.remove();
  } else {
    button.textContent = r.ok ? "not recorded" : problem(answer, r);
  }
}

function filterRows(search) {
  const rows = document.querySelectorAll(search.dataset.filter);
  const needle = search.value.trim().toLowerCase();
  for (const row of rows) row.hidden = needle !== "" && !(row.dataset.name || row.textContent).toLowerCase().includes(needle);
}

function localTimes() {
  // The chart's hour labels in the browser's time zone.
  for (const t of document.querySelectorAll("text[data-hour-label]")) {
    const d = new Date(Number(t.dataset.hourLabel));
    t.textContent = d.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
  }
  for (const t of document.querySelectorAll("time[data-ms]")) {
    const ms = Number(t.dataset.ms);
    if (ms > 0) { const d = new Date(ms); t.dateTime = d.toISOString(); t.textContent = d.toLocaleString(); }
  }
}

document.addEventListener("DOMContentLoaded", () => {
  localTimes();
  const form = document.querySelector("form[data-run-form]");
  if (form) form.addEventListener("submit", (e) => runForm(form, e));
  const created = document.querySelector("form[data-new-node]");
  if (created) created.addEventListener("submit", (e) => newNode(created, e));
  const credential = document.querySelector("form[data-new-credential]");
  if (credential) credentialForm(credential);
  for (const b of document.querySelectorAll("button[data-check]")) b.addEventListener("click", () => check(b));
  for (const b of document.querySelectorAll("button[data-load]")) b.addEventListener("click", () => loadPart(b));
  const search = document.querySelector("input[data-filter]");
  if (search) search.addEventListener("input", () => filterRows(search));
  const root = document.querySelector("[data-run]");
  if (root && root.dataset.live === "1") follow(root);
  for (const b of document.querySelectorAll("button[data-post]")) b.addEventListener("click", () => post(b));
  for (const b of document.querySelectorAll("button[data-delete]")) b.addEventListener("click", () => remove(b));
});
