// Verification page: exchange a verification code for a short-lived download link.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  function say(text) { $("message").textContent = text; $("message").classList.toggle("hidden", !text); }
  $("verify-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    say("");
    $("link-box").classList.add("hidden");
    const code = $("verification").value.trim().toLowerCase();
    if (!/^[a-z0-9]{9}$/.test(code)) { say("A verification code has 9 letters and digits."); return; }
    const response = await fetch("/verifications/" + encodeURIComponent(code) + "/download_url");
    if (response.status === 404) { say("This verification code is not known."); return; }
    if (response.status === 410) { say("This file is no longer available: it was replaced by a newer upload or has expired."); return; }
    if (response.status === 429) { say("Too many wrong codes from this network. Wait a minute, then try again."); return; }
    if (!response.ok) { say("The server had a problem (" + response.status + "). Please try again."); return; }
    const body = await response.json();
    $("download-link").href = body.download_url;
    $("expires").textContent = body.expires_seconds;
    $("link-box").classList.remove("hidden");
    $("download-link").focus();
  });
})();
