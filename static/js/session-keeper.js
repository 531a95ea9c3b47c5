// Holdfast session keeper: keeps a working person signed in, warns before the idle
// deadline, and notices within seconds when the session was ended elsewhere.
//
// - polls GET /session/status (which does not count as activity) every 15 s and when
//   the tab becomes visible again;
// - real activity (pointer, key, touch, scroll) extends the session, at most once a
//   minute, with POST /session/extend;
// - two minutes before the deadline shows "You will be signed out in 2:00 — Stay signed in";
// - when the session ends: revoked elsewhere -> straight to /login with the reason;
//   expired -> "Your session has ended" with a sign-in link.
(function () {
  "use strict";
  var body = document.body;
  var statusUrl = body.dataset.sessionStatus;
  if (!statusUrl) return;
  var extendUrl = statusUrl.replace(/status$/, "extend");
  var loginUrl = body.dataset.loginUrl || "/login";
  var POLL_MS = 15000, ACTIVITY_WINDOW_MS = 60000, WARN_SECONDS = 120;
  var deadline = null;          // Date.now()-based ms when the session ends
  var lastExtend = Date.now();  // page load was a request: it counted as activity
  var active = false;           // activity seen since the last extend
  var ended = false;
  var banner = document.getElementById("session-banner");

  function csrfToken() {
    try { return JSON.parse(body.getAttribute("hx-headers"))["X-CSRFToken"]; }
    catch (e) { return ""; }
  }

  function applyStatus(response) {
    return response.json().then(function (data) {
      if (response.ok && data.valid) {
        deadline = Date.now() + data.expiresIn * 1000;
        render();
        return;
      }
      if (response.status === 401) sessionEnded(data);
    }).catch(function () { /* network hiccup: try again at the next poll */ });
  }

  function poll() {
    if (ended) return;
    fetch(statusUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(applyStatus, function () {});
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
    if (reason === "idle_expired" || reason === "lifetime_expired") {
      show("ended", (data.error || "Your session has ended."), "Sign in again", data.loginUrl || loginUrl);
    } else {
      window.location.assign((data && data.loginUrl) || loginUrl);
    }
  }

  function format(seconds) {
    var m = Math.floor(seconds / 60), s = seconds % 60;
    return m + ":" + (s < 10 ? "0" : "") + s;
  }

  function show(kind, text, action, href) {
    banner.textContent = "";
    banner.className = "session-banner " + kind;
    var span = document.createElement("span");
    span.textContent = text;
    banner.appendChild(span);
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

  function render() {
    if (ended || deadline === null) return;
    var left = Math.max(0, Math.round((deadline - Date.now()) / 1000));
    if (left === 0) { poll(); return; }
    if (left <= WARN_SECONDS) {
      var text = "You will be signed out in " + format(left) + " — ";
      if (banner.hidden || !banner.classList.contains("warning")) {
        show("warning", text, "Stay signed in");
      } else {
        banner.firstChild.textContent = text;
      }
    } else if (!banner.hidden) {
      banner.hidden = true;
      banner.className = "session-banner";
    }
  }

  function onActivity() {
    if (ended) return;
    active = true;
    if (Date.now() - lastExtend >= ACTIVITY_WINDOW_MS) extend();
  }

  ["pointerdown", "keydown", "touchstart", "wheel"].forEach(function (name) {
    window.addEventListener(name, onActivity, { passive: true });
  });
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") poll();
  });
  // htmx requests are requests: they extended the session on the server.
  document.addEventListener("htmx:afterRequest", function () { lastExtend = Date.now(); });
  setInterval(poll, POLL_MS);
  setInterval(function () {
    render();
    if (active && Date.now() - lastExtend >= ACTIVITY_WINDOW_MS) extend();
  }, 1000);
  poll();
})();
