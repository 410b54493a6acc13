// The full check on the database details page: follows its JSON status once a second while it
// is queued or running, and reloads the page when it ends, so the result is shown by the server.
(function () {
  "use strict";
  const panel = document.getElementById("full-check");
  if (!panel) return;
  const following = ["queued", "running"];
  const initial = panel.dataset.state;
  if (!following.includes(initial)) return;
  const stateText = document.getElementById("check-state");
  const message = document.getElementById("check-message");
  const bar = document.getElementById("check-bar");
  const phase = document.getElementById("check-phase");

  function show(status) {
    if (stateText) stateText.textContent = status.state;
    if (message) message.textContent = status.message;
    if (bar) {
      bar.value = status.percent;
      bar.textContent = status.percent + " %";
    }
    if (phase) phase.textContent = status.phase === "attachments" ? "attachment files" : status.phase;
  }

  function poll() {
    fetch(panel.dataset.statusUrl, { credentials: "same-origin", cache: "no-store" })
      .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
      .then((status) => {
        show(status);
        if (following.includes(status.state)) {
          window.setTimeout(poll, 1000);
        } else {
          window.location.reload();
        }
      })
      .catch(() => window.setTimeout(poll, 3000));
  }

  window.setTimeout(poll, 1000);
})();
