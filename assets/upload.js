// Student page: look up the upload code, upload with a progress bar, show a receipt.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const maxBytes = Number(document.body.dataset.maxBytes);
  let code = "";
  let student = null;

  function show(id, visible) { $(id).classList.toggle("hidden", !visible); }
  function say(text) { const m = $("message"); m.textContent = text; show("message", Boolean(text)); }
  function size(n) { return n < 1024 ? n + " bytes" : n < 1048576 ? (n / 1024).toFixed(1) + " KiB" : (n / 1048576).toFixed(2) + " MiB"; }
  function when(iso) { return new Date(iso).toLocaleString(); }

  function explain(status, detail) {
    if (status === 404) return "This upload code is not known. Check it on your slip and try again.";
    if (status === 413) return "The file is too large: the limit is " + size(maxBytes) + ".";
    if (status === 422) return detail || "The upload was refused.";
    if (status === 403) return detail || "Uploads are not accepted at the moment.";
    if (status === 429) return "Too many wrong codes from this network. Wait a minute, then try again.";
    if (status === 503) return "The server is busy. Wait a few seconds and try again; your attempt was not used.";
    return "The server had a problem (" + status + "). Your attempt was not used; please try again.";
  }

  function detailOf(text) {
    try { const d = JSON.parse(text).detail; return typeof d === "string" ? d : ""; } catch (_) { return ""; }
  }

  function render(status) {
    student = status.student || student;
    $("student-name").textContent = student ? student.first_name + " " + student.last_name + " (" + student.nickname + ")" : "";
    $("attempts-left").textContent = status.uploads_available;
    const last = status.last_submission;
    $("current").textContent = last
      ? "Current submission: " + last.original_filename + ", " + size(last.size_bytes) + ", received " + when(last.created_at) + "."
      : "You have not submitted a file yet.";
    const w = status.window || {};
    const parts = [];
    if (w.opens_at) parts.push("Submissions open " + when(w.opens_at) + ".");
    if (w.closes_at) parts.push("Submissions close " + when(w.closes_at) + " (server time now " + when(w.server_time) + ").");
    $("window").textContent = parts.join(" ");
    const looked = status.download_urls_issued_at || [];
    $("downloads").textContent = looked.length
      ? "Download links for your current file were issued at: " + looked.map(when).join(", ") + "."
      : "";
    $("upload-button").disabled = status.uploads_available < 1;
    if (status.uploads_available < 1) say("You have used all your attempts. Your last upload is the one that counts.");
  }

  async function lookUp(value) {
    say("");
    code = value.trim().toUpperCase();
    if (!/^[A-Z0-9]{8}$/.test(code)) { say("An upload code has 8 letters and digits."); return; }
    const response = await fetch("/submissions/" + encodeURIComponent(code));
    const text = await response.text();
    if (!response.ok) { say(explain(response.status, detailOf(text))); return; }
    render(JSON.parse(text));
    show("file-step", true);
    $("file").focus();
  }

  function receipt(body) {
    const s = body.last_submission;
    $("r-student").textContent = student ? student.nickname : "";
    $("r-code").textContent = s.verification_code;
    $("r-file").textContent = s.original_filename;
    $("r-size").textContent = size(s.size_bytes) + " (" + s.size_bytes + " bytes)";
    $("r-sha256").textContent = s.sha256;
    $("r-time").textContent = s.created_at;
    $("r-left").textContent = body.uploads_available;
    const lines = [
      "exam-depository receipt",
      "student: " + (student ? student.nickname : ""),
      "verification code: " + s.verification_code,
      "file: " + s.original_filename,
      "size: " + s.size_bytes + " bytes",
      "sha256: " + s.sha256,
      "received at: " + s.created_at,
      "attempts left: " + body.uploads_available,
      "service: " + location.origin,
    ];
    const blob = new Blob([lines.join("\n") + "\n"], { type: "text/plain" });
    const link = $("save-receipt");
    if (link.href.startsWith("blob:")) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(blob);
    link.download = "receipt-" + s.verification_code + ".txt";
    show("receipt", true);
    $("receipt").scrollIntoView();
    offerSignedReceipt(s.verification_code);
  }

  async function offerSignedReceipt(verification) {
    const link = $("signed-receipt");
    show("signed-receipt", false);
    const response = await fetch("/receipts/" + encodeURIComponent(verification));
    if (!response.ok) return;
    const text = JSON.stringify(await response.json(), null, 2) + "\n";
    $("signed-receipt-text").textContent = text;
    show("signed-receipt-box", true);
    const blob = new Blob([text], { type: "application/json" });
    if (link.href.startsWith("blob:")) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(blob);
    link.download = "receipt-" + verification + ".json";
    show("signed-receipt", true);
  }

  function upload(file) {
    say("");
    if (file.size === 0) { say("The file is empty."); return; }
    if (file.size > maxBytes) { say("The file is too large: " + size(file.size) + ", the limit is " + size(maxBytes) + "."); return; }
    const form = new FormData();
    form.append("file", file, file.name);
    const request = new XMLHttpRequest();
    request.open("POST", "/submissions/" + encodeURIComponent(code));
    request.upload.onprogress = (event) => {
      if (!event.lengthComputable) return;
      const percent = Math.round((event.loaded / event.total) * 100);
      $("progress").value = percent;
      $("progress").textContent = percent + "%";
      $("progress-text").textContent = percent + "%";
    };
    request.onload = () => {
      show("progress-box", false);
      $("upload-button").disabled = false;
      if (request.status === 201) {
        const body = JSON.parse(request.responseText);
        render(body);
        receipt(body);
      } else {
        say(explain(request.status, detailOf(request.responseText)));
      }
    };
    request.onerror = () => {
      show("progress-box", false);
      $("upload-button").disabled = false;
      say("The connection failed. Check your network and try again; your attempt was not used.");
    };
    $("upload-button").disabled = true;
    $("progress").value = 0;
    show("progress-box", true);
    request.send(form);
  }

  $("code-form").addEventListener("submit", (event) => { event.preventDefault(); lookUp($("code").value); });
  $("file-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const file = $("file").files[0];
    if (!file) { say("Choose a file first."); return; }
    upload(file);
  });
  $("file").addEventListener("change", () => {
    const file = $("file").files[0];
    if (file && file.size > maxBytes) say("The file is too large: " + size(file.size) + ", the limit is " + size(maxBytes) + ".");
    else say("");
  });
  $("print-receipt").addEventListener("click", () => window.print());

  const preset = new URLSearchParams(location.search).get("code");
  if (preset) { $("code").value = preset.toUpperCase(); lookUp(preset); }
})();
