// Holdfast times: every <time datetime data-format> in the viewer's time zone and
// language, with the browser's Intl (the same locale the browser's date inputs use, so
// printed dates and date filters read alike).
//
// - data-format="relative": "5 minutes ago", "in 29 minutes"; refreshed every 30 s so
//   "just now" does not stay "just now";
// - data-format="datetime": "6 Dec 2026, 15:05 CET"; "date": "6 Dec 2026"; "time":
//   "15:05:09 CET";
// - the exact time, with its zone, is the title of each;
// - the foot of the page says which zone times are in and offers UTC instead (kept in
//   this browser's localStorage: a choice of the viewer, not of the account); a browser
//   whose own zone is UTC has nothing to switch to, and is offered nothing.
// Without JavaScript the server's text stays: UTC, written "6 Dec 2026, 14:05 UTC".
(function () {
  "use strict";

  var KEY = "holdfast-time-zone";
  var REFRESH_MS = 30000;
  var footer = document.getElementById("time-zone");

  function chosenZone() {
    try { return window.localStorage.getItem(KEY) === "UTC" ? "UTC" : undefined; }
    catch (e) { return undefined; }
  }

  function ownZoneIsUtc() {
    var own = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
    return /^(Etc\/)?(UTC|UCT|GMT|Universal|Zulu)$/.test(own);
  }

  function zoneName(zone) {
    return zone || Intl.DateTimeFormat().resolvedOptions().timeZone || "local";
  }

  function formats(zone) {
    return {
      datetime: new Intl.DateTimeFormat(undefined, {
        day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit",
        timeZone: zone, timeZoneName: "short",
      }),
      time: new Intl.DateTimeFormat(undefined, {
        hour: "2-digit", minute: "2-digit", second: "2-digit", timeZone: zone, timeZoneName: "short",
      }),
      date: new Intl.DateTimeFormat(undefined, {
        day: "numeric", month: "short", year: "numeric", timeZone: zone,
      }),
      relative: typeof Intl.RelativeTimeFormat === "function"
        ? new Intl.RelativeTimeFormat(undefined, { numeric: "auto" }) : null,
    };
  }

  // Days at most, as the server writes them: "in 29 days" says more than "in 4 weeks".
  var UNITS = [["day", 86400], ["hour", 3600], ["minute", 60]];

  function relative(format, moment) {
    var seconds = Math.round((moment.getTime() - Date.now()) / 1000);
    var size = Math.abs(seconds);
    for (var i = 0; i < UNITS.length; i++) {
      if (size >= UNITS[i][1]) return format.format(Math.trunc(seconds / UNITS[i][1]), UNITS[i][0]);
    }
    return format.format(0, "second"); // "now"
  }

  function render(root) {
    var zone = chosenZone();
    var f = formats(zone);
    (root || document).querySelectorAll("time[datetime][data-format]").forEach(function (el) {
      var moment = new Date(el.getAttribute("datetime"));
      if (isNaN(moment.getTime())) return;
      var kind = el.dataset.format;
      if (kind === "relative") {
        if (f.relative) el.textContent = relative(f.relative, moment);
      } else if (f[kind]) {
        el.textContent = f[kind].format(moment);
      }
      el.title = f.datetime.format(moment);
    });
    if (footer) {
      footer.querySelector(".tz-name").textContent = zoneName(zone);
      var button = footer.querySelector("button");
      button.textContent = zone ? button.dataset.showLocal : button.dataset.showUtc;
      button.hidden = ownZoneIsUtc();
      footer.hidden = false;
    }
  }

  if (footer) {
    footer.querySelector("button").addEventListener("click", function () {
      try {
        if (chosenZone()) window.localStorage.removeItem(KEY);
        else window.localStorage.setItem(KEY, "UTC");
      } catch (e) { /* storage refused: the choice lasts this page only */ }
      render();
    });
  }

  document.addEventListener("htmx:afterSettle", function (event) { render(event.target); });
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", function () { render(); });
  else render();
  window.setInterval(function () {
    if (document.visibilityState === "visible") render();
  }, REFRESH_MS);
})();
