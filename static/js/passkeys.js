// Holdfast passkeys: the browser's side of the WebAuthn ceremonies (app/web/passkeys.py).
//
// - Sign-in page: the "Sign in with a passkey" button, and the email field's autofill
//   (conditional mediation: the browser lists this site's passkeys under the field)
//   where the browser supports it. Options come from POST /api/auth/passkey/options;
//   the answer goes to POST /login/passkey, which sets the session cookie.
// - Security page: "Add a passkey" (POST /api/account/passkeys/options, then
//   POST /api/account/passkeys).
// - Fresh sign-in page: "Use a passkey".
// - The "Add a passkey to finish signing in" step (POST /login/passkey/add/options, then
//   POST /login/passkey/add, which sets the session cookie).
// The words this script shows come from data-words-* attributes of the buttons, in the
// page's language (the English here is only the fallback).
// Options travel in the WebAuthn JSON form (PublicKeyCredential.parse…OptionsFromJSON)
// and answers as credential.toJSON(). URLs come from data attributes on the buttons.
(function () {
  "use strict";

  function csrfToken() {
    try {
      return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || "";
    } catch (e) {
      return "";
    }
  }

  function supported() {
    return !!(window.PublicKeyCredential &&
              PublicKeyCredential.parseRequestOptionsFromJSON &&
              PublicKeyCredential.parseCreationOptionsFromJSON);
  }

  function postJSON(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "X-CSRFToken": csrfToken()
      },
      body: JSON.stringify(body || {})
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        return { ok: response.ok, status: response.status, data: data };
      });
    });
  }

  // Go to ``url`` by POSTing a form carrying the page's CSRF token (a page that shows a
  // choice, which a GET must not start).
  function postForm(url) {
    var form = document.createElement("form");
    form.method = "post";
    form.action = url;
    var token = document.createElement("input");
    token.type = "hidden";
    token.name = "csrf_token";
    token.value = csrfToken();
    form.appendChild(token);
    document.body.appendChild(form);
    form.submit();
  }

  // Go to ``url``, loading it again when only its #fragment differs from this page's.
  function go(url) {
    var target = new URL(url, window.location.href);
    var here = window.location;
    if (target.pathname === here.pathname && target.search === here.search) {
      here.hash = target.hash;
      here.reload();
    } else {
      here.assign(target.href);
    }
  }

  function say(box, message) {
    if (!box) return;
    box.textContent = message;
    box.hidden = !message;
  }

  // The button's data-words-<key> (the page's language), else ``fallback``.
  function words(element, key, fallback) {
    var name = "words" + key.charAt(0).toUpperCase() + key.slice(1);
    return (element && element.dataset[name]) || fallback;
  }

  function cancelled(error) {
    return error && (error.name === "NotAllowedError" || error.name === "AbortError");
  }

  // --- signing in ------------------------------------------------------------------------

  var signIn = document.getElementById("passkey-sign-in");
  var pending = null;  // the conditional (autofill) request, aborted before a button press

  function finishSignIn(button, options, credential) {
    var box = document.getElementById("passkey-error");
    return postJSON(button.dataset.verifyUrl, {
      challengeId: options.challengeId,
      credential: credential.toJSON(),
      next: button.dataset.next || null
    }).then(function (answer) {
      if (answer.ok && answer.data.redirect) {
        window.location.assign(answer.data.redirect);
      } else if (answer.data.choose) {
        postForm(answer.data.choose);  // the session limit: choose a session to end
      } else {
        say(box, answer.data.error || words(button, "refused", "That passkey was not accepted."));
        button.disabled = false;
      }
    });
  }

  function requestOptions(button) {
    var body = button.dataset.tenant ? { tenant: button.dataset.tenant } : {};
    return postJSON(button.dataset.optionsUrl, body).then(function (answer) {
      if (!answer.ok) {
        throw new Error(answer.data.error || words(button, "unavailable", "Passkeys are not available."));
      }
      return answer.data;
    });
  }

  function startAutofill(button) {
    if (!PublicKeyCredential.isConditionalMediationAvailable) return;
    PublicKeyCredential.isConditionalMediationAvailable().then(function (available) {
      if (!available) return;
      requestOptions(button).then(function (options) {
        pending = new AbortController();
        return navigator.credentials.get({
          mediation: "conditional",
          signal: pending.signal,
          publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options.publicKey)
        }).then(function (credential) {
          pending = null;
          if (credential) return finishSignIn(button, options, credential);
        });
      }).catch(function (error) {
        if (!cancelled(error)) say(document.getElementById("passkey-error"), error.message);
      });
    });
  }

  if (signIn && supported()) {
    signIn.hidden = false;
    document.body.dataset.passkeys = "ready";
    signIn.addEventListener("click", function () {
      var box = document.getElementById("passkey-error");
      say(box, "");
      if (pending) { pending.abort(); pending = null; }
      signIn.disabled = true;
      requestOptions(signIn).then(function (options) {
        return navigator.credentials.get({
          publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options.publicKey)
        }).then(function (credential) { return finishSignIn(signIn, options, credential); });
      }).catch(function (error) {
        signIn.disabled = false;
        say(box, cancelled(error)
          ? words(signIn, "cancelled", "No passkey was used. Try again, or get an emailed code.")
          : error.message);
      });
    });
    if (signIn.dataset.autofill === "on") startAutofill(signIn);
  }

  // --- adding a passkey -----------------------------------------------------------------

  var add = document.getElementById("add-passkey");
  if (add && supported()) {
    add.hidden = false;
    document.body.dataset.passkeys = "ready";
    add.addEventListener("click", function () {
      var box = document.getElementById("passkey-error");
      say(box, "");
      add.disabled = true;
      postJSON(add.dataset.optionsUrl, {}).then(function (answer) {
        if (answer.status === 401 && answer.data.code === "fresh_login_required") {
          window.location.assign(add.dataset.againUrl);
          return null;
        }
        if (!answer.ok) {
          throw new Error(answer.data.error || words(add, "unavailable", "Passkeys are not available."));
        }
        var options = answer.data;
        return navigator.credentials.create({
          publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options.publicKey)
        }).then(function (credential) {
          return postJSON(add.dataset.addUrl, {
            challengeId: options.challengeId,
            credential: credential.toJSON()
          });
        }).then(function (saved) {
          if (!saved.ok) {
            throw new Error(saved.data.error || words(add, "failed", "That passkey could not be added."));
          }
          go(add.dataset.doneUrl);
        });
      }).catch(function (error) {
        add.disabled = false;
        say(box, cancelled(error) ? words(add, "cancelled", "No passkey was added.") : error.message);
      });
    });
  }

  // --- a fresh sign-in -----------------------------------------------------------------

  var again = document.getElementById("passkey-again");
  if (again && supported()) {
    again.hidden = false;
    document.body.dataset.passkeys = "ready";
    again.addEventListener("click", function () {
      var box = document.getElementById("passkey-error");
      say(box, "");
      again.disabled = true;
      postJSON(again.dataset.optionsUrl, {}).then(function (answer) {
        if (!answer.ok) {
          throw new Error(answer.data.error || words(again, "unavailable", "Passkeys are not available."));
        }
        var options = answer.data;
        return navigator.credentials.get({
          publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options.publicKey)
        }).then(function (credential) {
          return postJSON(again.dataset.verifyUrl, {
            challengeId: options.challengeId,
            credential: credential.toJSON(),
            next: again.dataset.next || null
          });
        }).then(function (done) {
          if (!done.ok) {
            throw new Error(done.data.error || words(again, "refused", "That passkey was not accepted."));
          }
          window.location.assign(done.data.redirect);
        });
      }).catch(function (error) {
        again.disabled = false;
        say(box, cancelled(error) ? words(again, "cancelled", "No passkey was used.") : error.message);
      });
    });
  }

  // --- adding a first passkey to finish signing in --------------------------------------

  var enrol = document.getElementById("enrol-passkey");
  if (enrol && !supported()) {
    var unsupported = document.getElementById("passkey-unsupported");
    if (unsupported) unsupported.hidden = false;
  } else if (enrol) {
    enrol.hidden = false;
    document.body.dataset.passkeys = "ready";
    enrol.addEventListener("click", function () {
      var box = document.getElementById("passkey-error");
      say(box, "");
      enrol.disabled = true;
      postJSON(enrol.dataset.optionsUrl, {}).then(function (answer) {
        if (!answer.ok) {
          throw new Error(answer.data.error || words(enrol, "unavailable", "Passkeys are not available."));
        }
        var options = answer.data;
        return navigator.credentials.create({
          publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options.publicKey)
        }).then(function (credential) {
          return postJSON(enrol.dataset.verifyUrl, {
            challengeId: options.challengeId,
            credential: credential.toJSON()
          });
        }).then(function (done) {
          if (!done.ok || !done.data.redirect) {
            throw new Error(done.data.error || words(enrol, "failed", "That passkey could not be added."));
          }
          window.location.assign(done.data.redirect);
        });
      }).catch(function (error) {
        enrol.disabled = false;
        say(box, cancelled(error) ? words(enrol, "cancelled", "No passkey was added.") : error.message);
      });
    });
  }
})();
