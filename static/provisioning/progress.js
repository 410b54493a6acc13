// The progress page of a database being prepared: follows its JSON status once a second and
// selects the database (submits the continue form) as soon as it is ready.
(function () {
  "use strict";
  const panel = document.getElementById("preparing");
  if (!panel) return;
  const initial = panel.dataset.state;
  const stateText = document.getElementById("preparing-state");
  const message = document.getElementById("preparing-message");
  const bar = document.getElementById("preparing-bar");
  const count = document.getElementById("preparing-count");
  const form = document.getElementById("continue-form");
  const following = ["queued", "building"];

  function show(status) {
    stateText.textContent = status.state;
    message.textContent = status.message;
    bar.value = status.percent;
    bar.textContent = status.percent + " %";
    count.textContent = status.total ? status.done + " / " + status.total : "";
  }

  function poll() {
    fetch(panel.dataset.statusUrl, { credentials: "same-origin", cache: "no-store" })
      .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
      .then((status) => {
        show(status);
        if (status.state === "ready") {
          form.hidden = false;
          form.submit();
        } else if (following.includes(status.state)) {
          window.setTimeout(poll, 1000);
        } else if (status.state !== initial) {
          // Failed or interrupted meanwhile: the page shows why, and what operators can do.
          window.location.reload();
        }
      })
      .catch((code) => {
        // Gone (discarded): the page says so. Anything else (a restart): try again shortly.
        if (code === 404) window.location.reload();
        else window.setTimeout(poll, 3000);
      });
  }

  if (initial === "ready") {
    form.submit();
  } else if (following.includes(initial)) {
    window.setTimeout(poll, 1000);
  }
})();
