// The selector's one list of choices: typing a path (or picking one with the browse widget)
// selects the "Another file" option; submitting with another option selected leaves the typed
// path out, so the selected option is what the server opens. Without this script the server
// prefers a non-empty typed path.
(function () {
  "use strict";
  const form = document.getElementById("select-form");
  const typed = document.getElementById("choice-typed");
  const input = document.getElementById("id_path");
  if (!form || !typed || !input) return;

  input.addEventListener("input", () => { typed.checked = true; });
  form.addEventListener("submit", () => { input.disabled = !typed.checked; });
  // Back from the next page (the page kept in the back/forward cache): the field is usable.
  window.addEventListener("pageshow", () => { input.disabled = false; });
})();
