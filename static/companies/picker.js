// The project form's company picker: as the user types, fill the <datalist> with the
// companies whose name starts with the text (GET data-company-picker?q=..., JSON).
(function () {
  "use strict";
  document.querySelectorAll("input[data-company-picker]").forEach(function (input) {
    var list = document.getElementById(input.getAttribute("list"));
    var url = input.getAttribute("data-company-picker");
    var timer = null;
    var asked = null;
    function fill() {
      var term = input.value.trim();
      if (!list || term === asked) return;
      asked = term;
      fetch(url + "?q=" + encodeURIComponent(term), {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      })
        .then(function (response) { return response.ok ? response.json() : { results: [] }; })
        .then(function (data) {
          if (term !== asked) return; // an answer to an older question
          list.replaceChildren.apply(list, data.results.map(function (company) {
            var option = document.createElement("option");
            option.value = company.name;
            return option;
          }));
        })
        .catch(function () { /* no suggestions; typing the exact name still works */ });
    }
    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(fill, 150);
    });
    input.addEventListener("focus", fill);
  });
})();
