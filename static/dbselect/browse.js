// The selector's browse widget: lists folders and database files through /select-db/browse.
(function () {
  "use strict";
  const toggle = document.getElementById("browse-toggle");
  if (!toggle) return;
  const panel = document.getElementById("browser");
  const list = document.getElementById("browse-list");
  const dirLabel = document.getElementById("browse-dir");
  const error = document.getElementById("browse-error");
  const up = document.getElementById("browse-up");
  const input = document.getElementById("id_path");
  let parent = null;

  function show(dir) {
    const url = toggle.dataset.url + "?dir=" + encodeURIComponent(dir);
    fetch(url, { credentials: "same-origin" })
      .then((r) => r.json())
      .then((data) => {
        error.textContent = "";
        if (data.error) { error.textContent = data.error; return; }
        dirLabel.textContent = data.dir;
        parent = data.parent;
        up.disabled = !parent;
        list.replaceChildren();
        data.entries.forEach((entry) => {
          const item = document.createElement("li");
          const button = document.createElement("button");
          button.type = "button";
          button.className = "entry " + entry.type;
          button.textContent = entry.type === "folder" ? entry.name + "/" : entry.name;
          button.addEventListener("click", () => {
            if (entry.type === "folder") { show(entry.path); }
            else {
              input.value = entry.path;
              // Lets the selector select its "Another file" option (select.js).
              input.dispatchEvent(new Event("input", { bubbles: true }));
            }
          });
          item.appendChild(button);
          list.appendChild(item);
        });
        if (!data.entries.length) {
          const item = document.createElement("li");
          item.textContent = "No folders or database files here.";
          list.appendChild(item);
        }
      })
      .catch(() => { error.textContent = "The folder could not be listed."; });
  }

  toggle.addEventListener("click", () => {
    panel.hidden = !panel.hidden;
    if (!panel.hidden) show(toggle.dataset.start);
  });
  up.addEventListener("click", () => { if (parent) show(parent); });
})();
