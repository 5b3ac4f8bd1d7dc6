// Examiner page: roster, add, import, downloads and printable slips, all through the API
// with the key kept in sessionStorage (no cookies, so no CSRF surface).
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const KEY = "exam-depository-key";
  const maxUploads = Number(document.body.dataset.maxUploads);
  let students = [];

  function show(id, visible) { $(id).classList.toggle("hidden", !visible); }
  function say(text, ok) {
    const m = $("message");
    m.textContent = text;
    m.className = "message " + (ok ? "ok" : "error") + (text ? "" : " hidden");
  }
  function key() { return sessionStorage.getItem(KEY) || ""; }
  function cell(text) { const td = document.createElement("td"); td.textContent = text; return td; }

  async function api(path, options) {
    const init = Object.assign({}, options || {});
    init.headers = Object.assign({ Authorization: "Bearer " + key() }, init.headers || {});
    const response = await fetch(path, init);
    if (response.status === 401) { signOut("The key was not accepted."); throw new Error("unauthorized"); }
    if (response.status === 429) { say("Too many wrong keys from this network; wait a minute."); throw new Error("throttled"); }
    return response;
  }

  function detail(body) {
    if (!body || body.detail === undefined) return "";
    if (typeof body.detail === "string") return body.detail;
    return body.detail.map((d) => (d.loc ? d.loc[d.loc.length - 1] + ": " + d.msg : d.message)).join("; ");
  }

  function signOut(message) {
    sessionStorage.removeItem(KEY);
    show("workspace", false);
    show("slips-view", false);
    show("sign-in", true);
    show("sign-out", false);
    say(message || "");
  }

  async function load() {
    const response = await api("/students?with_codes=true");
    if (!response.ok) { say("Could not load the roster (" + response.status + ")."); return; }
    const body = await response.json();
    students = body.students;
    $("totals").textContent = body.totals.total_students + " students, " + body.totals.total_submissions + " with a submission.";
    renderRoster();
  }

  function renderRoster() {
    const query = $("search").value.trim().toLowerCase();
    const rows = $("roster");
    rows.replaceChildren();
    for (const s of students) {
      const text = (s.nickname + " " + s.first_name + " " + s.last_name).toLowerCase();
      if (query && !text.includes(query)) continue;
      const tr = document.createElement("tr");
      tr.append(cell(s.nickname), cell(s.first_name + " " + s.last_name));
      tr.append(cell(s.last_submission ? "submitted " + new Date(s.last_submission.created_at).toLocaleString() : "no submission"));
      tr.append(cell(s.uploads_used + " of " + maxUploads));
      const action = document.createElement("td");
      if (s.last_submission) {
        const button = document.createElement("button");
        button.type = "button";
        button.className = "secondary";
        button.textContent = "Download";
        button.setAttribute("aria-label", "Download the file of " + s.nickname);
        button.addEventListener("click", () => downloadOne(s.last_submission.verification_code));
        action.append(button);
      }
      tr.append(action);
      rows.append(tr);
    }
  }

  async function downloadOne(code) {
    const response = await fetch("/verifications/" + encodeURIComponent(code) + "/download_url");
    if (!response.ok) { say("The file is not available (" + response.status + ")."); return; }
    location.href = (await response.json()).download_url;
  }

  async function downloadZip() {
    say("Preparing the archive…", true);
    const response = await api("/exports/submissions.zip");
    if (!response.ok) { say("The export failed (" + response.status + ")."); return; }
    const blob = await response.blob();
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = "submissions.zip";
    document.body.append(link);
    link.click();
    link.remove();
    say("");
  }

  function printSlips() {
    const box = $("slips");
    box.replaceChildren();
    const limit = document.body.dataset.maxHuman;
    for (const s of students) {
      const slip = document.createElement("div");
      slip.className = "slip";
      const name = document.createElement("p");
      name.textContent = s.first_name + " " + s.last_name + " (" + s.nickname + ")";
      const code = document.createElement("p");
      code.className = "code";
      code.textContent = s.upload_code;
      const link = document.createElement("p");
      link.textContent = location.origin + "/upload?code=" + s.upload_code;
      const rules = document.createElement("p");
      rules.className = "muted";
      rules.textContent = "Upload one file of at most " + limit + ". You have " + maxUploads +
        " attempts; each new upload replaces the previous one. Keep the verification code from your receipt.";
      slip.append(name, code, link, rules);
      box.append(slip);
    }
    show("workspace", false);
    show("slips-view", true);
  }

  $("sign-in-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("api-key").value.trim());
    $("api-key").value = "";
    try {
      await load();
      show("sign-in", false);
      show("workspace", true);
      show("sign-out", true);
      say("");
    } catch (_) { /* message already shown */ }
  });

  $("add-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {
      nickname: $("nickname").value.trim(),
      first_name: $("first-name").value.trim(),
      last_name: $("last-name").value.trim(),
      email: $("email").value.trim(),
    };
    const response = await api("/students", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const answer = await response.json();
    if (response.status === 201) {
      say("Added " + answer.nickname + " with upload code " + answer.upload_code + ".", true);
      $("add-form").reset();
      await load();
    } else {
      say("Not added: " + detail(answer));
    }
  });

  $("import-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const list = $("import-errors");
    list.replaceChildren();
    show("import-errors", false);
    const file = $("csv-file").files[0];
    if (!file) return;
    const response = await api("/students/import", { method: "POST", headers: { "Content-Type": "text/csv" }, body: await file.text() });
    const answer = await response.json();
    if (response.status === 201) {
      say("Imported " + answer.created.length + " students.", true);
      $("import-form").reset();
      await load();
      return;
    }
    say("Nothing was imported: the file has errors.");
    const lines = Array.isArray(answer.detail) ? answer.detail : [{ line: "?", message: detail(answer) }];
    for (const problem of lines) {
      const item = document.createElement("li");
      item.textContent = "Line " + problem.line + ": " + problem.message;
      list.append(item);
    }
    show("import-errors", true);
  });

  $("search").addEventListener("input", renderRoster);
  $("refresh").addEventListener("click", load);
  $("download-zip").addEventListener("click", downloadZip);
  $("print-slips").addEventListener("click", printSlips);
  $("print-now").addEventListener("click", () => window.print());
  $("close-slips").addEventListener("click", () => { show("slips-view", false); show("workspace", true); });
  $("sign-out").addEventListener("click", () => signOut("Signed out."));

  if (key()) {
    load().then(() => { show("sign-in", false); show("workspace", true); show("sign-out", true); }).catch(() => {});
  }
})();
