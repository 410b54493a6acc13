// Long work (snapshot, restore, migrate, create, import/export, full check): a form carrying
// data-busy="Creating snapshot…" disables its submit buttons once it is submitted and shows
// that text beside an animated indicator, so the page never seems frozen while the server
// works. No framework: the browser submits the form as usual.
//
//   data-busy="…"         the text shown while the request runs (required)
//   data-busy-reset="8"   re-enable after that many seconds: for forms answered with a
//                         download (the page stays as it is), e.g. the bundle export
//
// A page brought back with the browser's Back button (bfcache) is reset.
(function () {
  "use strict";

  const BUTTONS = 'button[type="submit"], button:not([type]), input[type="submit"]';

  function submitButtons(form) {
    const own = Array.from(form.querySelectorAll(BUTTONS));
    // Buttons outside the form that submit it (form="id").
    if (form.id) {
      document.querySelectorAll(BUTTONS).forEach((button) => {
        if (button.getAttribute("form") === form.id && !own.includes(button)) own.push(button);
      });
    }
    return own;
  }

  function indicator(form) {
    let status = form.querySelector(".busy-status");
    if (!status) {
      status = document.createElement("span");
      status.className = "busy-status";
      status.setAttribute("role", "status");
      status.setAttribute("aria-live", "polite");
      const spinner = document.createElement("span");
      spinner.className = "busy-spinner";
      spinner.setAttribute("aria-hidden", "true");
      const text = document.createElement("span");
      text.className = "busy-text";
      status.append(spinner, text);
      const buttons = submitButtons(form).filter((b) => form.contains(b));
      const last = buttons[buttons.length - 1];
      if (last) last.after(status);
      else form.append(status);
    }
    return status;
  }

  function reset(form) {
    delete form.dataset.busyActive;
    form.removeAttribute("aria-busy");
    submitButtons(form).forEach((button) => {
      if (button.dataset.busyDisabled) {
        button.disabled = false;
        delete button.dataset.busyDisabled;
      }
    });
    const status = form.querySelector(".busy-status");
    if (status) status.remove();
  }

  function start(form) {
    form.dataset.busyActive = "1";
    form.setAttribute("aria-busy", "true");
    const status = indicator(form);
    status.querySelector(".busy-text").textContent = form.dataset.busy;
    // Disabled after the submit event: the submitter's name and value are already in the
    // request the browser sends.
    window.setTimeout(() => {
      submitButtons(form).forEach((button) => {
        if (!button.disabled) {
          button.dataset.busyDisabled = "1";
          button.disabled = true;
        }
      });
    }, 0);
    const seconds = parseFloat(form.dataset.busyReset || "");
    if (seconds > 0) window.setTimeout(() => reset(form), seconds * 1000);
  }

  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-busy")) return;
    if (form.dataset.busyActive) {
      event.preventDefault(); // a second click while the first request runs
      return;
    }
    // Another script may have cancelled the submission (validation, confirm()).
    window.setTimeout(() => {
      if (!event.defaultPrevented) return;
      reset(form);
    }, 0);
    start(form);
  });

  window.addEventListener("pageshow", (event) => {
    if (event.persisted) document.querySelectorAll("form[data-busy]").forEach(reset);
  });
})();
