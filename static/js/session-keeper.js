// Holdfast session keeper: keeps a working person signed in, warns before the idle
// deadline, and notices within seconds when the session was ended elsewhere.
//
// - polls GET /session/status (which does not count as activity) every 15 s and when
//   the tab becomes visible again;
// - real activity (pointer, key, touch, wheel) extends the session with
//   POST /session/extend, at most once a window (a minute, or a quarter of a short idle
//   timeout, never more often than the server would write it down);
// - before the deadline (two minutes, or half a short idle timeout) shows
//   "You will be signed out in 2:00 — Stay signed in";
// - when the session ends: revoked elsewhere -> straight to /login with the reason;
//   expired -> "Your session has ended" with a sign-in link.
(function () {
  "use strict";
  var body = document.body;
  var statusUrl = body.dataset.sessionStatus;
  var banner = document.getElementById("session-banner");
  if (!statusUrl || !banner) return;
  var extendUrl = statusUrl.replace(/status$/, "extend");
  var loginUrl = body.dataset.loginUrl || "/login";
  // The banner's words, in the page's language (templates/base.html), English if missing.
  var words = banner.dataset;
  function say(name, fallback, values) {
    var text = words[name] || fallback;
    Object.keys(values || {}).forEach(function (key) { text = text.split("{" + key + "}").join(values[key]); });
    return text;
  }
  var POLL_MS = 15000;
  var warnSeconds = 120;           // refined from the idle timeout the server reports
  var activityWindowMs = 60000;    // likewise
  var deadline = null;             // Date.now()-based ms when the session ends
  var lastExtend = Date.now();     // loading the page was a request: it counted as activity
  var active = false;              // activity seen since the last extend
  var ended = false;
  var countdown = null;            // the ticking "2:00" text while the warning shows

  function csrfToken() {
    try { return JSON.parse(body.getAttribute("hx-headers"))["X-CSRFToken"]; }
    catch (e) { return ""; }
  }

  function applyStatus(response) {
    return response.json().then(function (data) {
      if (response.ok && data.valid) {
        deadline = Date.now() + data.expiresIn * 1000;
        if (data.idleTimeout) {
          warnSeconds = Math.min(120, Math.floor(data.idleTimeout / 2));
          activityWindowMs = 1000 * Math.max(5, Math.min(60, Math.floor(data.idleTimeout / 4)));
        }
        render();
        return;
      }
      if (response.status === 401) sessionEnded(data);
    }).catch(function () { /* not JSON (a proxy page?): try again at the next poll */ });
  }

  function poll() {
    if (ended) return;
    fetch(statusUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(applyStatus, function () { /* offline: try again at the next poll */ });
  }

  function extend() {
    if (ended) return;
    lastExtend = Date.now();
    active = false;
    fetch(extendUrl, {
      method: "POST", credentials: "same-origin",
      headers: { Accept: "application/json", "X-CSRFToken": csrfToken() },
    }).then(applyStatus, function () {});
  }

  function sessionEnded(data) {
    ended = true;
    var reason = data && data.reason;
    var target = (data && data.loginUrl) || loginUrl;
    if (reason === "idle_expired" || reason === "lifetime_expired") {
      // The person may be reading the page: leave it, say so, offer the way back.
      show("ended", say("ended", "Your session has ended."), data.error || "",
           say("signInAgain", "Sign in again"), target);
    } else {
      window.location.assign(target);
    }
  }

  function format(seconds) {
    var m = Math.floor(seconds / 60), s = seconds % 60;
    return m + ":" + (s < 10 ? "0" : "") + s;
  }

  // The banner: a message, an optional detail, and one action (a button, or a link).
  // Screen readers hear it once when it appears, not every tick of the countdown.
  function show(kind, text, detail, action, href) {
    banner.textContent = "";
    banner.className = "session-banner " + kind;
    var message = document.createElement("p");
    message.className = "session-banner-text";
    if (kind === "warning") {
      var spoken = document.createElement("span");
      spoken.className = "visually-hidden";
      var minutes = Math.max(1, Math.round(text / 60));
      spoken.textContent = minutes === 1
        ? say("spokenOne", "You will be signed out in about {count} minute.", { count: minutes })
        : say("spokenMany", "You will be signed out in about {count} minutes.", { count: minutes });
      countdown = document.createElement("span");
      countdown.id = "session-countdown";
      countdown.setAttribute("aria-hidden", "true");
      countdown.textContent = say("countdown", "You will be signed out in {time} — ", { time: format(text) });
      message.appendChild(spoken);
      message.appendChild(countdown);
    } else {
      countdown = null;
      var strong = document.createElement("strong");
      strong.textContent = text;
      message.appendChild(strong);
      if (detail) message.appendChild(document.createTextNode(" " + detail));
    }
    banner.appendChild(message);
    var control;
    if (href) {
      control = document.createElement("a");
      control.href = href;
      control.setAttribute("role", "button");
    } else {
      control = document.createElement("button");
      control.type = "button";
      control.addEventListener("click", extend);
    }
    control.textContent = action;
    control.id = "session-banner-action";
    banner.appendChild(control);
    banner.hidden = false;
  }

  function hide() {
    banner.hidden = true;
    banner.className = "session-banner";
    banner.textContent = "";
    countdown = null;
  }

  function render() {
    if (ended || deadline === null) return;
    var left = Math.max(0, Math.round((deadline - Date.now()) / 1000));
    if (left === 0) { poll(); return; }
    if (left <= warnSeconds) {
      if (countdown === null) show("warning", left, "", say("stay", "Stay signed in"));
      else countdown.textContent = say("countdown", "You will be signed out in {time} — ", { time: format(left) });
    } else if (!banner.hidden) {
      hide();
    }
  }

  function onActivity() {
    if (ended) return;
    active = true;
    if (Date.now() - lastExtend >= activityWindowMs) extend();
  }

  ["pointerdown", "keydown", "touchstart", "wheel"].forEach(function (name) {
    window.addEventListener(name, onActivity, { passive: true });
  });
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") poll();
  });
  // htmx requests are requests: the server extended the session for them.
  document.addEventListener("htmx:afterRequest", function () {
    lastExtend = Date.now();
    if (!banner.hidden) poll();  // the warning may be out of date now
  });
  setInterval(poll, POLL_MS);
  setInterval(function () {
    render();
    if (active && Date.now() - lastExtend >= activityWindowMs) extend();
  }, 1000);
  poll();
})();
