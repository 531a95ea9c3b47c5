// Holdfast actions: every htmx action shows that it runs and says when it failed.
//
// - While a request runs, the controls of the form (or the button) that sent it are
//   disabled and the button that was pressed is marked aria-busy (Pico draws a spinner).
// - hx-confirm questions are asked in the page's <dialog id="confirm-dialog">, with the
//   pressed button's words on the confirming button, not with window.confirm().
// - A failed request (an error status, or no answer at all) is said in words in
//   #action-error, with "Try again" (which sends the same request again, without asking
//   the question a second time) and "Dismiss".
// - A button with data-requires-selection="<css selector>" is disabled until one of the
//   boxes that selector finds is ticked.
//
// Every word shown comes from data-* attributes in the page (templates/base.html), so
// the words are translated with the templates. No inline script or style: the CSP says
// script-src 'self' and style-src 'self'.
(function () {
  "use strict";

  var errorBox = document.getElementById("action-error");
  var dialog = document.getElementById("confirm-dialog");
  var failed = null; // {elt, verb, path, target}: what "Try again" sends again

  function words(element, name, fallback) {
    return (element && element.dataset[name]) || fallback;
  }

  function pressedButton(detail, elt) {
    var event = detail.triggeringEvent || (detail.requestConfig && detail.requestConfig.triggeringEvent);
    if (event && event.submitter) return event.submitter;
    if (elt.matches("button, input[type=submit]")) return elt;
    if (elt.tagName === "FORM") return elt.querySelector("button[type=submit], button:not([type]), input[type=submit]");
    return null;
  }

  // The words of the pressed button: in full (its hidden words name the device) for a
  // failure, or short (data-action, e.g. "End session") for the dialog's own button.
  function actionName(button, elt, short) {
    if (button) {
      var label = (short && button.dataset.action) || button.textContent || button.value || "";
      label = label.replace(/\s+/g, " ").trim();
      if (label) return label;
    }
    return (elt && elt.dataset && elt.dataset.action) || "";
  }

  // --- running: disabled controls and a busy button -----------------------------------

  function controlsOf(elt) {
    if (elt.tagName === "FORM") {
      var inside = Array.prototype.slice.call(elt.querySelectorAll("button, input[type=submit]"));
      var outside = elt.id ? Array.prototype.slice.call(document.querySelectorAll(
        'button[form="' + elt.id + '"], input[type=submit][form="' + elt.id + '"]')) : [];
      return inside.concat(outside);
    }
    if (elt.matches("button, input[type=submit]")) return [elt];
    return [];
  }

  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail.elt;
    var busy = [];
    controlsOf(elt).forEach(function (control) {
      if (!control.disabled) {
        control.disabled = true;
        busy.push(control);
      }
    });
    var button = pressedButton(event.detail, elt);
    if (button && busy.indexOf(button) >= 0) button.setAttribute("aria-busy", "true");
    elt.__holdfastBusy = busy;
    if (busy.length) hideError();
  });

  document.addEventListener("htmx:afterRequest", function (event) {
    var elt = event.detail.elt;
    (elt.__holdfastBusy || []).forEach(function (control) {
      control.disabled = false;
      control.removeAttribute("aria-busy");
    });
    elt.__holdfastBusy = null;
    refreshSelections();
  });

  // --- failures, said in words ---------------------------------------------------------

  function reasonFor(xhr) {
    if (!xhr || !xhr.status) return words(errorBox, "network", "Holdfast could not be reached. Check your connection.");
    var type = xhr.getResponseHeader("Content-Type") || "";
    if (type.indexOf("application/json") === 0) {
      try {
        var body = JSON.parse(xhr.responseText);
        if (body && body.error) return body.error;
      } catch (e) { /* not JSON after all: say it by status */ }
    }
    var status = xhr.status;
    if (status === 403) return words(errorBox, "forbidden", "You are not allowed to do that.");
    if (status === 404) return words(errorBox, "notFound", "It is not there any more. Reload the page to see what is.");
    if (status === 409) return words(errorBox, "conflict", "Something changed meanwhile. Reload the page and try again.");
    if (status === 429) return words(errorBox, "rateLimited", "Too many requests. Wait a moment.");
    if (status >= 500) return words(errorBox, "server", "The server had a problem.");
    return words(errorBox, "other", "The request was refused.");
  }

  function showError(detail, network) {
    if (!errorBox) return;
    var elt = detail.elt;
    var xhr = network ? null : detail.xhr;
    var action = actionName(pressedButton(detail, elt), elt);
    var template = action
      ? words(errorBox, "failedAction", "“{action}” did not go through: {reason}")
      : words(errorBox, "failed", "That did not go through: {reason}");
    var text = template.replace("{action}", action).replace("{reason}", reasonFor(xhr));
    errorBox.querySelector(".action-error-text").textContent = text;
    var config = detail.requestConfig || {};
    failed = {
      elt: elt,
      verb: (config.verb || "get").toUpperCase(),
      path: config.path || detail.pathInfo && detail.pathInfo.requestPath,
      target: detail.target,
    };
    errorBox.querySelector("[data-retry]").hidden = !document.body.contains(elt) || !failed.path;
    errorBox.hidden = false;
  }

  function hideError() {
    if (errorBox) errorBox.hidden = true;
    failed = null;
  }

  document.addEventListener("htmx:responseError", function (event) { showError(event.detail, false); });
  document.addEventListener("htmx:sendError", function (event) { showError(event.detail, true); });
  document.addEventListener("htmx:timeout", function (event) { showError(event.detail, true); });
  document.addEventListener("htmx:swapError", function (event) { showError(event.detail, false); });

  if (errorBox) {
    errorBox.querySelector("[data-retry]").addEventListener("click", function () {
      var again = failed;
      hideError();
      if (!again || !document.body.contains(again.elt)) return;
      again.elt.__holdfastConfirmed = true; // asked already: the person chose to retry
      htmx.ajax(again.verb, again.path, { source: again.elt, target: again.target });
    });
    errorBox.querySelector("[data-dismiss]").addEventListener("click", hideError);
  }

  // --- questions in a dialog ------------------------------------------------------------

  var answer = null; // what to do when the person confirms

  document.addEventListener("htmx:confirm", function (event) {
    var detail = event.detail;
    if (!detail.question) return; // no hx-confirm: nothing to ask
    event.preventDefault();
    if (detail.elt.__holdfastConfirmed) {
      detail.elt.__holdfastConfirmed = false;
      detail.issueRequest(true);
      return;
    }
    if (!dialog || typeof dialog.showModal !== "function") {
      if (window.confirm(detail.question)) detail.issueRequest(true);
      return;
    }
    var action = actionName(pressedButton(detail, detail.elt), detail.elt, true);
    dialog.querySelector(".confirm-question").textContent = detail.question;
    dialog.querySelector("[data-confirm]").textContent = action || words(dialog, "yes", "Continue");
    answer = function () { detail.issueRequest(true); };
    dialog.showModal();
  });

  if (dialog) {
    dialog.querySelector("[data-confirm]").addEventListener("click", function () {
      var go = answer;
      answer = null;
      dialog.close("confirm");
      if (go) go();
    });
    dialog.querySelector("[data-cancel]").addEventListener("click", function () {
      answer = null;
      dialog.close("cancel");
    });
    dialog.addEventListener("close", function () { answer = null; });
  }

  // --- bulk actions wait for a choice ---------------------------------------------------

  function refreshSelections() {
    document.querySelectorAll("[data-requires-selection]").forEach(function (button) {
      if (button.getAttribute("aria-busy") === "true") return;
      var picked = document.querySelectorAll(button.dataset.requiresSelection + ":checked").length;
      button.disabled = picked === 0;
    });
  }

  // --- phones: stacked table rows name their column; filters fold away ----------------

  // Each cell gets its column's name (data-label), which the phone layout shows before
  // it (static/css/app.css), since the table's head is not shown there.
  function labelCells(root) {
    (root || document).querySelectorAll("main table").forEach(function (table) {
      var names = Array.prototype.map.call(table.querySelectorAll("thead th"), function (th) {
        return th.querySelector(".visually-hidden") ? "" : th.textContent.replace(/\s+/g, " ").trim();
      });
      if (!names.length) return;
      table.querySelectorAll("tbody tr").forEach(function (row) {
        Array.prototype.forEach.call(row.children, function (cell, index) {
          if (!cell.hasAttribute("data-label") && names[index] !== undefined) cell.dataset.label = names[index];
        });
      });
    });
  }

  // <details class="fold" open>: open on a wide screen; on a phone it starts folded
  // unless it holds something the person must see (data-keep-open, e.g. a filter error).
  function foldOnPhones() {
    if (!window.matchMedia || !window.matchMedia("(max-width: 640px)").matches) return;
    document.querySelectorAll("details.fold[open]:not([data-keep-open])").forEach(function (details) {
      details.open = false;
    });
  }

  document.addEventListener("htmx:afterSettle", function () { labelCells(); });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { labelCells(); foldOnPhones(); });
  } else {
    labelCells();
    foldOnPhones();
  }

  document.addEventListener("change", refreshSelections);
  document.addEventListener("htmx:afterSettle", refreshSelections);
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", refreshSelections);
  else refreshSelections();
})();
