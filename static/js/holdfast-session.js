// holdfast-session.js: a small client for Holdfast's session API, for single-page apps.
//
//   var hf = new HoldfastSession({
//     autoExtend: true,        // keep the session alive while the app is open
//     extendThreshold: 300,    // seconds before the deadline at which to extend
//     onSessionExtended: function (s) {},  // {token, expiresAt, expiresIn}
//     onSessionExpired: function (e) {},   // {status, code, message}
//     baseUrl: "",             // Holdfast's origin; "" is this page's origin
//     token: null,             // a bearer token; without one the session cookie is used
//   });
//   hf.getSessionStatus(); hf.getSessions(); hf.revokeSession(id);
//   hf.revokeAllOtherSessions(); hf.extend(); hf.logout(); hf.destroy();
//
// Cookie mode works on Holdfast's own origin only: the API accepts cookie-authenticated
// writes when they are JSON from the same origin, so every write here sends
// Content-Type: application/json. A bearer client may run anywhere.
//
// Every method returns a Promise. Errors reject with a HoldfastSessionError carrying the
// API's {status, code, message}; a 401 also calls onSessionExpired (once) and stops the
// automatic extension.
(function (root) {
  "use strict";

  var MAX_TIMER_MS = 2147483647; // setTimeout's limit (about 24.8 days)
  var MIN_EXTEND_GAP_MS = 30000; // the server writes activity at most once a minute

  function HoldfastSessionError(status, code, message, body) {
    this.name = "HoldfastSessionError";
    this.status = status;
    this.code = code;
    this.message = message;
    this.body = body || null;
  }
  HoldfastSessionError.prototype = Object.create(Error.prototype);
  HoldfastSessionError.prototype.constructor = HoldfastSessionError;

  function HoldfastSession(options) {
    options = options || {};
    this.baseUrl = (options.baseUrl || "").replace(/\/+$/, "");
    this.token = options.token || null;
    this.autoExtend = options.autoExtend !== false;
    this.extendThreshold = options.extendThreshold == null ? 300 : Number(options.extendThreshold);
    this.onSessionExtended = options.onSessionExtended || null;
    this.onSessionExpired = options.onSessionExpired || null;
    this.status = null;
    this._timer = null;
    this._expired = false;
    this._destroyed = false;
    this._lastExtendAt = 0;
    if (this.autoExtend) {
      // Learn the deadline now; scheduling follows from the answer.
      this.getSessionStatus().catch(function () {});
    }
  }

  HoldfastSession.Error = HoldfastSessionError;

  HoldfastSession.prototype._request = function (method, path, body) {
    var self = this;
    var headers = { Accept: "application/json" };
    var init = { method: method, headers: headers };
    if (this.token) {
      headers.Authorization = "Bearer " + this.token;
      init.credentials = "omit";
    } else {
      init.credentials = "same-origin";
    }
    if (method !== "GET") {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body || {});
    }
    return fetch(this.baseUrl + path, init).then(function (response) {
      if (response.status === 204) return null;
      return response.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        if (response.ok) return data;
        var error = new HoldfastSessionError(
          response.status,
          (data && data.code) || "error",
          (data && data.error) || response.statusText || "Request failed",
          data
        );
        if (response.status === 401) self._sessionEnded(error);
        throw error;
      });
    });
  };

  // {valid: true, sessionId, expiresAt, expiresIn, deviceCount}, or {valid: false, code,
  // error} when the session is over (onSessionExpired is called too). Not activity.
  HoldfastSession.prototype.getSessionStatus = function () {
    var self = this;
    return this._request("GET", "/api/auth/session").then(function (status) {
      self.status = status;
      self._expired = false;
      self._schedule(status.expiresIn);
      return status;
    }, function (error) {
      if (error.status === 401) {
        return { valid: false, code: error.code, error: error.message };
      }
      throw error;
    });
  };

  // Count as activity and take the fresh token: {token, expiresAt, expiresIn}.
  HoldfastSession.prototype.extend = function () {
    var self = this;
    this._lastExtendAt = Date.now();
    return this._request("POST", "/api/auth/session/extend").then(function (answer) {
      if (self.token) self.token = answer.token;
      if (self.status) {
        self.status.expiresAt = answer.expiresAt;
        self.status.expiresIn = answer.expiresIn;
      }
      if (self.onSessionExtended) self.onSessionExtended(answer);
      self._schedule(answer.expiresIn);
      return answer;
    });
  };

  // The caller's live sessions: [{id, device, deviceType, os, browser, ip, location,
  // createdAt, lastActive, expiresAt, current, trusted}].
  HoldfastSession.prototype.getSessions = function () {
    return this._request("GET", "/api/auth/sessions").then(function (data) {
      return data.sessions;
    });
  };

  // End one of the caller's sessions; ending the current one signs out.
  HoldfastSession.prototype.revokeSession = function (sessionId) {
    var self = this;
    var current = this.status && this.status.sessionId === sessionId;
    return this._request("DELETE", "/api/auth/sessions/" + encodeURIComponent(sessionId))
      .then(function () {
        if (current) self._stop();
        return true;
      });
  };

  // End every session but this one: {revoked: n}.
  HoldfastSession.prototype.revokeAllOtherSessions = function () {
    return this._request("DELETE", "/api/auth/sessions/others");
  };

  HoldfastSession.prototype.logout = function () {
    var self = this;
    return this._request("POST", "/api/auth/logout").then(function () {
      self._stop();
      self.token = null;
      return true;
    });
  };

  // Stop the automatic extension (the session itself stays).
  HoldfastSession.prototype.destroy = function () {
    this._destroyed = true;
    this._stop();
  };

  HoldfastSession.prototype._stop = function () {
    if (this._timer !== null) clearTimeout(this._timer);
    this._timer = null;
  };

  HoldfastSession.prototype._sessionEnded = function (error) {
    this._stop();
    if (this._expired) return;
    this._expired = true;
    this.status = { valid: false, code: error.code, error: error.message };
    if (this.onSessionExpired) this.onSessionExpired(error);
  };

  // Extend when the deadline is within extendThreshold seconds. The server moves the idle
  // deadline at most once a minute and never past the absolute deadline, so an extension
  // that did not move it waits before trying again instead of looping; past the deadline
  // a status check reports the end.
  HoldfastSession.prototype._schedule = function (expiresIn) {
    var self = this;
    this._stop();
    if (!this.autoExtend || this._destroyed || this._expired || typeof expiresIn !== "number") return;
    var untilThreshold = (expiresIn - this.extendThreshold) * 1000;
    var wait;
    var action;
    if (untilThreshold > 0) {
      wait = untilThreshold;
      action = "extend";
    } else if (Date.now() - this._lastExtendAt >= MIN_EXTEND_GAP_MS) {
      wait = 0;
      action = "extend";
    } else {
      wait = Math.min(expiresIn * 1000 + 1000, MIN_EXTEND_GAP_MS);
      action = expiresIn * 1000 + 1000 <= MIN_EXTEND_GAP_MS ? "status" : "extend";
    }
    if (wait > MAX_TIMER_MS) {
      wait = MAX_TIMER_MS; // far off: look again then rather than extend early
      action = "status";
    }
    this._timer = setTimeout(function () {
      self._timer = null;
      var step = action === "extend" ? self.extend() : self.getSessionStatus();
      step.catch(function () {});
    }, wait);
  };

  root.HoldfastSession = HoldfastSession;
  if (typeof module === "object" && module.exports) module.exports = HoldfastSession;
})(typeof window !== "undefined" ? window : this);
