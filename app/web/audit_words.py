"""The audit log in words: one sentence per event ("Sam ended the session on Safari on
iPhone"), with people's names, device names and app names instead of ids.

Every rule is in :data:`SENTENCES`, keyed by event kind: a sentence, or (where the words
depend on a detail, such as why a session ended) a function of the event choosing one.
A kind with no rule reads :data:`FALLBACK`, which names the kind, so a new event is never
hidden. The sentences are translated (Flask-Babel, ``lazy_gettext``); their placeholders
are filled with escaped values, and people become links when the caller gives a way to
link them. The CSV export and the event page keep the raw fields."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

from flask_babel import LazyString
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup, escape

from app.core.alerts import TITLES
from app.core.audit_log import EventNames
from app.models import Device, Event, User
from app.web.templating import device_name

Rule: TypeAlias = LazyString | Callable[[Event], LazyString]
#: how a person is shown: the person and the text to show; None = plain text
PersonLink: TypeAlias = Callable[[User, str], Markup] | None


def _by(detail: str, sentences: Mapping[Any, LazyString], other: LazyString) -> Rule:
    """A rule choosing its sentence by one of the event's details."""

    def choose(event: Event) -> LazyString:
        return sentences.get(event.details.get(detail), other)

    return choose


SESSION_ENDED = {
    "logout": _l("%(subject)s signed out on %(device)s"),
    "revoked_by_user": _l("%(actor)s ended the session on %(device)s"),
    "revoked_by_admin": _l("%(actor)s ended %(subject)s's session on %(device)s"),
    "limit_evicted": _l(
        "%(subject)s's session on %(device)s was ended by a newer sign-in, at the session limit"
    ),
    "idle_expired": _l("%(subject)s's session on %(device)s ended after a period of inactivity"),
    "lifetime_expired": _l("%(subject)s's session on %(device)s reached its maximum length"),
    "suspicious": _l("%(subject)s's session on %(device)s was ended as suspicious"),
    "keys_rotated": _l("%(subject)s's session on %(device)s ended when the signing keys changed"),
    "user_erased": _l("%(subject)s's session on %(device)s ended when the account was erased"),
    "disabled": _l("%(subject)s's session on %(device)s ended: the account is disabled"),
}

SENTENCES: dict[str, Rule] = {
    "session.created": _l("%(actor)s signed in on %(device)s"),
    "session.ended": _by("reason", SESSION_ENDED, _l("%(subject)s's session on %(device)s ended")),
    "session.reauthenticated": _l("%(actor)s confirmed it was them on %(device)s"),
    "code.requested": _by(
        "known",
        {False: _l("A sign-in code was asked for an email nobody has")},
        _l("A sign-in code was sent to %(subject)s"),
    ),
    "code.failed": _l("A wrong sign-in code was entered for %(subject)s"),
    "tenant.created": _l("%(actor)s created the tenant %(name)s"),
    "user.created": _by(
        "role",
        {"admin": _l("%(actor)s added %(subject)s as an admin")},
        _l("%(actor)s added %(subject)s"),
    ),
    "user.role_changed": _by(
        "new",
        {"admin": _l("%(actor)s made %(subject)s an admin")},
        _l("%(actor)s made %(subject)s a member"),
    ),
    "user.disabled": _l("%(actor)s disabled %(subject)s's account"),
    "user.enabled": _l("%(actor)s enabled %(subject)s's account again"),
    "user.sessions_ended": _l("%(actor)s ended all of %(subject)s's sessions (%(count)s)"),
    "user.language_changed": _l("%(actor)s changed their language"),
    "user.data_exported": _l("%(actor)s downloaded their data"),
    "user.erased": _l("%(actor)s erased a person's account"),
    "device.trusted": _l("%(actor)s trusted %(device)s"),
    "device.untrusted": _l("%(actor)s stopped trusting %(device)s"),
    "device.renamed": _l("%(actor)s renamed %(old)s to %(new)s"),
    "device.removed": _l("%(actor)s removed %(device)s and signed it out"),
    "devices.untrusted": _l("%(actor)s stopped trusting %(subject)s's devices (%(count)s)"),
    "sign_in.disowned": _l("%(actor)s reported that the sign-in on %(device)s was not them"),
    "policy.changed": _l("%(actor)s changed the policy: %(changes)s"),
    "keys.rotated": _l("%(actor)s changed the signing keys"),
    "secrets.resealed": _l("%(actor)s sealed the stored secrets with a new key"),
    "alert.raised": _l("Holdfast raised an alert about %(subject)s: %(alert)s"),
    "alert.acknowledged": _l("%(actor)s acknowledged the alert “%(alert)s” about %(subject)s"),
    "alert.resolved": _l("%(actor)s resolved the alert “%(alert)s” about %(subject)s"),
    "mfa.challenged": _l("%(subject)s was asked for a second step"),
    "mfa.failed": _l("A wrong second-step code was entered for %(subject)s"),
    "totp.enrolment_started": _l("%(actor)s began adding an authenticator app"),
    "totp.enabled": _l("%(actor)s added an authenticator app"),
    "totp.accepted": _l("%(actor)s entered a code from their authenticator app"),
    "totp.removed": _l("%(actor)s removed their authenticator app"),
    "recovery_codes.made": _l("%(actor)s made new recovery codes"),
    "recovery_code.used": _l("%(actor)s used a recovery code (%(left)s left)"),
    "passkey.added": _l("%(actor)s added the passkey “%(name)s”"),
    "passkey.used": _l("%(actor)s signed in with a passkey"),
    "passkey.renamed": _l("%(actor)s renamed a passkey to “%(name)s”"),
    "passkey.removed": _l("%(actor)s removed the passkey “%(name)s”"),
    "passkey.cloned": _l("A copy of a passkey of %(subject)s was used"),
    "oidc.signed_in": _l("%(actor)s signed in to %(app)s"),
    "oidc.signed_out": _l("%(subject)s was signed out of %(app)s"),
    "oidc.token_revoked": _l("%(app)s gave up a token of %(subject)s"),
    "oidc.code_replayed": _l("%(app)s used a sign-in code of %(subject)s twice"),
    "oidc.refresh_replayed": _l("%(app)s used an old refresh token of %(subject)s"),
    "oidc.client_added": _l("%(actor)s added the app %(name)s"),
    "oidc.client_secret_rotated": _l("%(actor)s made a new secret for %(app)s"),
    "oidc.client_changed": _l("%(actor)s changed the settings of the app %(name)s"),
    "oidc.client_people_changed": _by(
        "restricted",
        {True: _l("%(actor)s chose who may use the app %(name)s")},
        _l("%(actor)s opened the app %(name)s to everyone"),
    ),
    "oidc.client_removed": _l("%(actor)s removed the app %(name)s"),
    "oidc.access_denied": _l("%(actor)s was refused the app %(name)s: not chosen for it"),
    "webhook.created": _l("%(actor)s added a webhook to %(url)s"),
    "webhook.deleted": _l("%(actor)s deleted the webhook to %(url)s"),
    "webhook.retried": _l("%(actor)s sent a webhook delivery again"),
    "report.downloaded": _l(
        "%(actor)s downloaded the %(report)s report (%(first_day)s to %(last_day)s)"
    ),
}
#: an event kind with no rule above: still said, with its kind
FALLBACK = _l("%(actor)s: %(kind)s")


def _only(detail: str, sentences: Mapping[Any, LazyString]) -> Callable[[Event], Any]:
    """A rule that applies only for some values of a detail (None otherwise: the next
    table decides)."""

    def choose(event: Event) -> LazyString | None:
        return sentences.get(event.details.get(detail))

    return choose


# The sentences a person reads about themselves on their own page: "You ended the
# session…", never their own name (Google's and GitHub's activity pages say "you" too).
# The admin's audit log keeps the sentences above, about others.

#: the viewer did it to themselves
BY_YOU_TO_YOU: dict[str, Rule | Callable[[Event], Any]] = {
    "session.ended": _only(
        "reason", {"revoked_by_admin": _l("You ended your session on %(device)s")}
    ),
    "user.sessions_ended": _l("You ended all of your sessions (%(count)s)"),
    "devices.untrusted": _l("You stopped trusting your devices (%(count)s)"),
}
#: the viewer did it (to someone else, or to nobody in particular)
BY_YOU: dict[str, Rule | Callable[[Event], Any]] = {
    "session.created": _l("You signed in on %(device)s"),
    "session.ended": _only(
        "reason", {"revoked_by_admin": _l("You ended %(subject)s's session on %(device)s")}
    ),
    "session.reauthenticated": _l("You confirmed it was you on %(device)s"),
    "tenant.created": _l("You created the tenant %(name)s"),
    "user.created": _by(
        "role",
        {"admin": _l("You added %(subject)s as an admin")},
        _l("You added %(subject)s"),
    ),
    "user.role_changed": _by(
        "new",
        {"admin": _l("You made %(subject)s an admin")},
        _l("You made %(subject)s a member"),
    ),
    "user.disabled": _l("You disabled %(subject)s's account"),
    "user.enabled": _l("You enabled %(subject)s's account again"),
    "user.sessions_ended": _l("You ended all of %(subject)s's sessions (%(count)s)"),
    "user.language_changed": _l("You changed your language"),
    "user.data_exported": _l("You downloaded your data"),
    "user.erased": _l("You erased a person's account"),
    "device.trusted": _l("You trusted %(device)s"),
    "device.untrusted": _l("You stopped trusting %(device)s"),
    "device.renamed": _l("You renamed %(old)s to %(new)s"),
    "device.removed": _l("You removed %(device)s and signed it out"),
    "devices.untrusted": _l("You stopped trusting %(subject)s's devices (%(count)s)"),
    "sign_in.disowned": _l("You reported that the sign-in on %(device)s was not you"),
    "policy.changed": _l("You changed the policy: %(changes)s"),
    "keys.rotated": _l("You changed the signing keys"),
    "secrets.resealed": _l("You sealed the stored secrets with a new key"),
    "alert.acknowledged": _l("You acknowledged the alert “%(alert)s” about %(subject)s"),
    "alert.resolved": _l("You resolved the alert “%(alert)s” about %(subject)s"),
    "totp.enrolment_started": _l("You began adding an authenticator app"),
    "totp.enabled": _l("You added an authenticator app"),
    "totp.accepted": _l("You entered a code from your authenticator app"),
    "totp.removed": _l("You removed your authenticator app"),
    "recovery_codes.made": _l("You made new recovery codes"),
    "recovery_code.used": _l("You used a recovery code (%(left)s left)"),
    "passkey.added": _l("You added the passkey “%(name)s”"),
    "passkey.used": _l("You signed in with a passkey"),
    "passkey.renamed": _l("You renamed a passkey to “%(name)s”"),
    "passkey.removed": _l("You removed the passkey “%(name)s”"),
    "oidc.signed_in": _l("You signed in to %(app)s"),
    "oidc.client_added": _l("You added the app %(name)s"),
    "oidc.client_secret_rotated": _l("You made a new secret for %(app)s"),
    "webhook.created": _l("You added a webhook to %(url)s"),
    "webhook.deleted": _l("You deleted the webhook to %(url)s"),
    "webhook.retried": _l("You sent a webhook delivery again"),
    "report.downloaded": _l("You downloaded the %(report)s report (%(first_day)s to %(last_day)s)"),
}
#: it was done to the viewer (by someone else, by Holdfast, or by themselves)
TO_YOU: dict[str, Rule | Callable[[Event], Any]] = {
    "session.ended": _by(
        "reason",
        {
            "logout": _l("You signed out on %(device)s"),
            "revoked_by_user": _l("You ended the session on %(device)s"),
            "revoked_by_admin": _l("%(actor)s ended your session on %(device)s"),
            "limit_evicted": _l(
                "Your session on %(device)s was ended by a newer sign-in, at the session limit"
            ),
            "idle_expired": _l("Your session on %(device)s ended after a period of inactivity"),
            "lifetime_expired": _l("Your session on %(device)s reached its maximum length"),
            "suspicious": _l("Your session on %(device)s was ended as suspicious"),
            "keys_rotated": _l("Your session on %(device)s ended when the signing keys changed"),
            "disabled": _l("Your session on %(device)s ended: your account is disabled"),
        },
        _l("Your session on %(device)s ended"),
    ),
    "code.requested": _l("A sign-in code was sent to you"),
    "code.failed": _l("A wrong sign-in code was entered for you"),
    "user.created": _by(
        "role",
        {"admin": _l("%(actor)s added you as an admin")},
        _l("%(actor)s added you"),
    ),
    "user.role_changed": _by(
        "new",
        {"admin": _l("%(actor)s made you an admin")},
        _l("%(actor)s made you a member"),
    ),
    "user.disabled": _l("%(actor)s disabled your account"),
    "user.enabled": _l("%(actor)s enabled your account again"),
    "user.sessions_ended": _l("%(actor)s ended all of your sessions (%(count)s)"),
    "devices.untrusted": _l("%(actor)s stopped trusting your devices (%(count)s)"),
    "alert.raised": _l("Holdfast raised an alert about you: %(alert)s"),
    "alert.acknowledged": _l("%(actor)s acknowledged the alert “%(alert)s” about you"),
    "alert.resolved": _l("%(actor)s resolved the alert “%(alert)s” about you"),
    "mfa.challenged": _l("You were asked for a second step"),
    "mfa.failed": _l("A wrong second-step code was entered for you"),
    "passkey.cloned": _l("A copy of one of your passkeys was used"),
    "oidc.signed_out": _l("You were signed out of %(app)s"),
    "oidc.token_revoked": _l("%(app)s gave up one of your tokens"),
    "oidc.code_replayed": _l("%(app)s used one of your sign-in codes twice"),
    "oidc.refresh_replayed": _l("%(app)s used an old refresh token of yours"),
}


def _apply(rule: Any, event: Event) -> LazyString | None:
    return rule(event) if callable(rule) and not isinstance(rule, LazyString) else rule


def _sentence(event: Event, viewer_id: str | None) -> LazyString:
    """The rule's sentence for ``event``: about the viewer in the second person when
    they did it or it was done to them, else the audit log's (third person)."""
    tables: list[Mapping[str, Any]] = []
    if viewer_id is not None:
        by_you = event.actor_id == viewer_id and event.details.get("by") != "operator"
        to_you = event.subject_id == viewer_id
        if by_you and to_you:
            tables.append(BY_YOU_TO_YOU)
        if to_you:
            tables.append(TO_YOU)
        if by_you:
            tables.append(BY_YOU)
    for table in tables:
        chosen = _apply(table.get(event.kind), event)
        if chosen is not None:
            return chosen
    chosen = _apply(SENTENCES.get(event.kind, FALLBACK), event)
    return chosen if chosen is not None else FALLBACK


def in_words(
    event: Event, names: EventNames, link: PersonLink = None, *, viewer_id: str | None = None
) -> Markup:
    """The event as one sentence in the page's language, HTML-escaped (people linked
    with ``link`` when given). With ``viewer_id`` (the person reading about their own
    account) it says "You…" where they did it or it was done to them. Never raises for
    unknown kinds or odd details."""
    return escape(str(_sentence(event, viewer_id))) % _values(event, names, link)


def _values(event: Event, names: EventNames, link: PersonLink) -> dict[str, Any]:
    details = event.details
    device = names.device_of(event)
    values: dict[str, Any] = {
        "actor": _actor(event, names, link),
        "subject": _person(event.subject_id, names, link, _("someone")),
        "device": device_name(device) if device else _("a device"),
        "app": names.apps.get(str(details.get("client_id")), _("an app")),
        "kind": Markup("<code>%s</code>") % event.kind,
        "alert": _(TITLES[str(details.get("alert_kind"))])
        if details.get("alert_kind") in TITLES
        else str(details.get("alert_kind", "")),
        "changes": ", ".join(
            str(name).replace("_", " ") for name in (details.get("changes") or {})
        ),
    }
    for key in ("name", "url", "report", "first_day", "last_day"):
        values[key] = str(details.get(key, ""))
    for key in ("count", "left"):
        values[key] = details.get(key, "")
    if event.kind == "device.renamed":  # no name: the one made from its browser and OS
        made = device_name(Device(browser=device.browser, os=device.os)) if device else None
        values["old"] = details.get("old") or made or _("the unnamed device")
        values["new"] = details.get("new") or made or _("no name")
    return values


def _actor(event: Event, names: EventNames, link: PersonLink) -> Any:
    if event.details.get("by") == "operator":
        return _("An operator")
    return _person(event.actor_id, names, link, "Holdfast")


def _person(user_id: str | None, names: EventNames, link: PersonLink, nobody: str) -> Any:
    """A person by name (else email); an id that names nobody any more (erased) is said
    as such, never shown raw."""
    if not user_id:
        return nobody
    user = names.people.get(user_id)
    if user is None:
        return _("an erased person")
    shown = user.name or user.email
    return link(user, shown) if link else shown
