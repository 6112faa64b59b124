// th2etl dashboard: the buttons call the JSON API (same origin, session cookie); a run page
// follows its log by polling while the run is active. No framework, no build step.
"use strict";

function flash(text, ok) {
  const box = document.getElementById("flash");
  if (!box) return;
  box.textContent = text;
  box.className = ok ? "flash ok" : "flash";
  box.hidden = false;
}

async function api(method, path, body) {
  const response = await fetch(path, {
    method: method,
    headers: { "Content-Type": "application/json", "Accept": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (response.status === 401) {
    window.location = "/ui/login?next=" + encodeURIComponent(window.location.pathname);
    throw new Error("sign in again");
  }
  if (!response.ok) throw new Error((data && data.detail) || response.statusText);
  return data;
}

function parseVariables(text) {
  const variables = {};
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line) continue;
    const at = line.indexOf("=");
    if (at < 1) throw new Error("'" + line + "' is not name=value");
    variables[line.slice(0, at).trim()] = line.slice(at + 1).trim();
  }
  return variables;
}

async function runPipeline(form) {
  const button = form.querySelector("button");
  button.disabled = true;
  try {
    const variables = parseVariables(form.querySelector("textarea").value);
    const pipeline = encodeURIComponent(form.dataset.pipeline);
    const started = await api("POST", "/pipelines/" + pipeline + "/run", { variables: variables });
    window.location = "/ui/runs/" + encodeURIComponent(started.run_id);
  } catch (error) {
    flash(error.message, false);
    button.disabled = false;
  }
}

async function act(button) {
  button.disabled = true;
  try {
    if (button.dataset.action === "cancel") {
      await api("POST", "/runs/" + encodeURIComponent(button.dataset.run) + "/cancel", {});
      flash("Cancel requested: running blocs finish, the others never start.", true);
      return;
    }
    if (button.dataset.action === "enable") {
      const enabled = button.dataset.enabled === "true";
      await api("PUT", "/schedulers/" + encodeURIComponent(button.dataset.scheduler),
        { enabled: enabled });
      window.location.reload();
    }
  } catch (error) {
    flash(error.message, false);
    button.disabled = false;
  }
}

function followRun(head) {
  const log = document.getElementById("log");
  const note = document.getElementById("follow");
  const badge = head.querySelector(".badge");
  const path = "/runs/" + encodeURIComponent(head.dataset.run) + "/log";
  if (note) note.textContent = "(following)";
  async function poll() {
    try {
      const answer = await api("GET", path);
      const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      if (log.textContent !== answer.log) {
        log.textContent = answer.log;
        if (atBottom) log.scrollTop = log.scrollHeight;
      }
      if (badge && badge.dataset.status !== answer.status) {
        badge.dataset.status = answer.status;
        badge.textContent = answer.status;
        badge.className = "badge " + answer.status;
      }
      if (["queued", "running"].indexOf(answer.status) < 0) {
        window.location.reload();  // the timeline and bloc table in their final state
        return;
      }
    } catch (error) {
      if (note) note.textContent = "(" + error.message + ")";
    }
    window.setTimeout(poll, 1000);
  }
  window.setTimeout(poll, 500);
}

async function backfill(form, dryRun) {
  const out = form.querySelector(".backfill-result");
  const buttons = form.querySelectorAll("button");
  buttons.forEach(function (b) { b.disabled = true; });
  try {
    const body = {
      from: form.elements["from"].value.trim(),
      to: form.elements["to"].value.trim(),
      max_active: parseInt(form.elements["max_active"].value || "1", 10),
      rerun_failed: form.elements["rerun_failed"].checked,
      dry_run: dryRun,
    };
    const path = "/schedulers/" + encodeURIComponent(form.dataset.scheduler) + "/backfill";
    const answer = await api("POST", path, body);
    let text = answer.summary;
    if (answer.notes && answer.notes.length) text += "\n" + answer.notes.join("\n");
    if (answer.ticks) {
      text += "\n" + answer.ticks.map(function (t) {
        return t.scheduled_time + "  " + t.state;
      }).join("\n");
    }
    if (!dryRun) text += "\nstarted: follow its runs in the pipeline's history";
    out.textContent = text;
    out.hidden = false;
  } catch (error) {
    flash(error.message, false);
  }
  buttons.forEach(function (b) { b.disabled = false; });
}

document.addEventListener("submit", function (event) {
  const form = event.target;
  if (form.dataset && form.dataset.action === "run") {
    event.preventDefault();
    runPipeline(form);
  }
  if (form.dataset && form.dataset.action === "backfill") {
    event.preventDefault();
    const dryRun = !(event.submitter && event.submitter.value === "false");
    backfill(form, dryRun);
  }
});

document.addEventListener("click", function (event) {
  const button = event.target.closest("button[data-action]");
  if (button) {
    event.preventDefault();
    act(button);
  }
});

document.addEventListener("DOMContentLoaded", function () {
  const head = document.querySelector(".run-head");
  if (head && head.dataset.finished === "false") followRun(head);
  const log = document.getElementById("log");
  if (log) log.scrollTop = log.scrollHeight;
});
