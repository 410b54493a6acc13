// The engines page: shown at once with what is known, then refreshed once the other worker
// processes have published fresh tables (GET data?since=<when the page asked them>).
(function () {
  "use strict";
  const live = document.getElementById("engines-live");
  if (!live) return;
  const url = live.dataset.refreshUrl + "?since=" + encodeURIComponent(live.dataset.asked);

  function refresh(tries) {
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
      .then((data) => {
        live.innerHTML = data.html;
        live.dataset.refreshed = "1";
      })
      .catch(() => {
        // A restart or a slow worker: try once more, then leave the page as it is.
        if (tries > 0) window.setTimeout(() => refresh(tries - 1), 2000);
      });
  }

  refresh(1);
})();
