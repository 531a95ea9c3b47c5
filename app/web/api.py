"""The JSON API under /api: sign-in in two steps, the caller's own sessions, and the
tenant-admin routes, as thin views: read the input with its declaration
(app.web.api_shapes), call the core, answer with the serialiser declared beside it.
``app.web.openapi`` publishes the same declarations as OpenAPI 3.1.

Authentication is ``Authorization: Bearer <token>`` or the ``holdfast_session`` cookie
(``app.web.authentication`` reads either); cookie writes obey the API's own CSRF rule
(app.web.api_csrf). Fields are camelCase; every answer that is not a success is
``{"error", "code"}`` JSON (with ``"field"`` for validation_error) and the status of the
error class, for any input: bodies are parsed and type-checked (app.web.json_input,
app.web.api_fields) before the core sees them. docs/api.md describes the API for people.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, g, jsonify, request
from flask_login import current_user, login_required

from app.core import admin, codes, policy, retention, sessions, signin
from app.core.access import require_admin
from app.core.errors import (
    InvalidSession,
    MfaRequired,
    SessionLimitReached,
    TenantChoiceRequired,
    ValidationError,
)
from app.core.passkey_rules import PasskeyEnrolmentRequired
from app.core.sessions import Current
from app.core.totp import require_for_admin
from app.models import Tenant
from app.web import api_shapes as shapes
from app.web import openapi
from app.web.api_answers import limit_answer, session_length, signed_in
from app.web.api_csrf import guard, has_bearer
from app.web.api_fields import read_query
from app.web.authentication import current, origin
from app.web.cookies import DEVICE_COOKIE, SESSION_COOKIE, clear_session_cookie
from app.web.extensions import csrf
from app.web.json_input import public_id
from app.web.session_status import iso, live_status, seconds_until
from app.web.unit_of_work import db, now, services

bp = Blueprint("api", __name__, url_prefix="/api")
bp.register_blueprint(openapi.bp)
csrf.exempt(bp)
csrf.exempt(openapi.bp)
guard(bp)


def _no_content() -> Response:
    return Response(status=204)


def _forget_cookie_if_used(response: Response) -> Response:
    """The caller ended its own session: a cookie client's cookie goes with it."""
    if not has_bearer() and request.cookies.get(SESSION_COOKIE):
        clear_session_cookie(response)
    return response


# --- sign-in -------------------------------------------------------------------------------


@bp.post("/auth/login")
def login() -> tuple[Response, int]:
    """Send a one-time code. 202 for any well-formed address, known or not."""
    body = shapes.LOGIN.read()
    challenge = codes.request_code(
        db(),
        services().hasher,
        body["email"],
        now=now(),
        origin=origin(),
        budgets=services().budgets,
        product=current_app.config["PRODUCT_NAME"],
    )
    return jsonify(challengeId=challenge.id), 202


@bp.post("/auth/verify")
def verify() -> Response | tuple[Response, int]:
    """Exchange the code for a session and its token.

    ``deviceId`` is the client's own long-lived secret for its install (stored only as a
    hash, like the browser's device cookie); without one, a same-origin browser's device
    cookie is used, and failing that a new value is made and returned as ``deviceId`` for
    the client to keep and send next time. In ``deny`` mode at the session limit the
    answer is 409 with the live ``sessions``; repeat the same code with ``endSessionId``.
    An address with accounts in several organisations answers 409
    ``tenant_choice_required`` with its ``tenants``; repeat the same code with
    ``tenantId``. Where a second factor is needed the answer is 401 ``mfa_required``
    with an ``mfaChallengeId`` to answer at ``POST /api/auth/verify/mfa`` (403
    ``mfa_enrolment_required`` for an admin who must first add an app, on the web; 403
    ``passkey_enrolment_required`` with a ``stepId`` where the tenant requires passkeys
    and the person has none: app.web.passkeys adds it).
    """
    body = shapes.VERIFY.read()
    try:
        result = signin.sign_in(
            db(),
            services().hasher,
            body["challengeId"],
            body["code"],
            now=now(),
            origin=origin(),
            budgets=services().budgets,
            device_cookie=body["deviceId"] or request.cookies.get(DEVICE_COOKIE),
            device_name=body["deviceName"],
            device_kind=body["deviceType"],
            expires_in=session_length(body["expiresIn"]),
            extend_on_activity=body["extendOnActivity"],
            end_session_id=body["endSessionId"],
            tenant_id=body["tenantId"],
        )
    except SessionLimitReached as error:
        return limit_answer(error)
    except TenantChoiceRequired as error:
        return jsonify(shapes.tenant_choice_error(error)), error.status
    except MfaRequired as error:
        answer = jsonify(shapes.mfa_required_error(error))
        answer.headers["WWW-Authenticate"] = 'Bearer realm="holdfast"'
        return answer, error.status
    except PasskeyEnrolmentRequired as error:
        return jsonify(shapes.passkey_enrolment_error(error)), error.status
    return signed_in(result, cookie_wanted=not body["deviceId"])


@bp.post("/auth/verify/mfa")
def verify_mfa() -> Response | tuple[Response, int]:
    """The second step of a sign-in that needs one: ``mfaChallengeId`` (from the 401
    ``mfa_required`` answer of POST /api/auth/verify) with the authenticator app's
    ``code`` or a ``recoveryCode`` of theirs. 201 as POST /api/auth/verify,
    for the session and device the first step asked for. Wrong codes count (five end the
    step: sign in again); ``endSessionId`` as in deny mode."""
    body = shapes.VERIFY_MFA.read()
    if (body["code"] is None) == (body["recoveryCode"] is None):
        raise ValidationError("Send either code or recoveryCode.", field="code")
    try:
        result = signin.complete_mfa(
            db(),
            services().hasher,
            body["mfaChallengeId"],
            code=body["code"],
            recovery_code=body["recoveryCode"],
            now=now(),
            origin=origin(),
            budgets=services().budgets,
            device_cookie=request.cookies.get(DEVICE_COOKIE),
            end_session_id=body["endSessionId"],
        )
    except SessionLimitReached as error:
        return limit_answer(error)
    except PasskeyEnrolmentRequired as error:
        return jsonify(shapes.passkey_enrolment_error(error)), error.status
    return signed_in(result, cookie_wanted=True)


# --- the caller's session ------------------------------------------------------------------


@bp.get("/auth/session")
def session_status() -> Response | tuple[Response, int]:
    """Whether the caller's session is live and when it ends. A status check is not
    activity (app.web.authentication.PASSIVE_ENDPOINTS): polling never keeps a session alive."""
    if not current_user.is_authenticated:
        error = g.get("auth_error") or InvalidSession("Sign in to continue", reason="signed_out")
        return jsonify(valid=False, error=error.message, code=error.code), 401
    return jsonify(live_status(current()))


@bp.post("/auth/session/extend")
@login_required
def extend() -> Response:
    """Activity: the hot path has moved the idle deadline (at most once a minute, like
    every request, and never for a session created with extendOnActivity false). Answers
    a fresh token for the same session and the deadline now in force."""
    me = current()
    token = services().keys.sign(
        user_id=me.user.id,
        tenant_id=me.tenant.id,
        session_id=me.session.id,
        now=now(),
        expires_at=me.absolute_deadline,
    )
    return jsonify(
        token=token, expiresAt=iso(me.expires_at), expiresIn=seconds_until(me.expires_at)
    )


@bp.post("/auth/logout")
@login_required
def logout() -> Response:
    me = current()
    sessions.end_session(
        db(), me.session, "logout", now=now(), actor_id=me.user.id, origin=origin()
    )
    return _forget_cookie_if_used(_no_content())


@bp.get("/auth/sessions")
@login_required
def own_sessions() -> Response:
    """The caller's live sessions, the current device first, then by recent activity."""
    me = current()
    items = [
        shapes.session_item(session, view.device, expires_at=view.expires[session.id], me=me)
        for view in sessions.devices_of(db(), me, now=now())
        for session in view.sessions
    ]
    return jsonify(sessions=items)


@bp.delete("/auth/sessions/others")
@login_required
def end_other_sessions() -> Response:
    ended = sessions.end_other_sessions(db(), current(), now=now(), origin=origin())
    return jsonify(revoked=len(ended))


@bp.delete("/auth/sessions/<session_id>")
@login_required
def end_own_session(session_id: str) -> Response:
    """End one of the caller's sessions (its own current one counts as signing out).
    Another person's session id answers 404, as an unknown one does."""
    me = current()
    ended = sessions.end_own_session(db(), me, public_id(session_id), now=now(), origin=origin())
    response = _no_content()
    return _forget_cookie_if_used(response) if ended.id == me.session.id else response


# --- tenant admins -------------------------------------------------------------------------


def _admin() -> Current:
    """The signed-in admin. Raises Forbidden (403, a member) or FreshSignInRequired (401
    fresh_login_required: the code was entered over 15 minutes ago; an API client signs
    in again to get a fresh session)."""
    me = current()
    require_admin(me, now())
    require_for_admin(me)  # the tenant may require an authenticator app for admins
    return me


@bp.get("/admin/sessions")
@login_required
def admin_sessions() -> Response:
    """The tenant's sessions, filtered, newest first, a page at a time (keyset cursor)."""
    me = _admin()
    query = read_query(shapes.ADMIN_SESSIONS_QUERY)
    cursor, limit = query.pop("cursor", None), query.pop("limit")
    filters = admin.SessionFilters(**query)
    page = admin.search_sessions(db(), filters, now=now(), cursor=cursor, limit=limit)
    items = [shapes.admin_session_item(row, me) for row in page.rows]
    return jsonify(sessions=items, nextCursor=page.next_cursor)


@bp.delete("/admin/sessions/<session_id>")
@login_required
def admin_end_session(session_id: str) -> Response:
    """End any session of the tenant (another tenant's id answers 404)."""
    me = _admin()
    ended = admin.end_session_as_admin(db(), me, public_id(session_id), now=now(), origin=origin())
    response = _no_content()
    return _forget_cookie_if_used(response) if ended.id == me.session.id else response


@bp.delete("/admin/users/<user_id>/sessions")
@login_required
def admin_end_user_sessions(user_id: str) -> Response:
    """End every live session of one person of the tenant; ``{revoked: n}``."""
    me = _admin()
    ended = admin.end_user_sessions(db(), me, public_id(user_id), now=now(), origin=origin())
    response = jsonify(revoked=len(ended))
    if any(session.id == me.session.id for session in ended):
        _forget_cookie_if_used(response)
    return response


@bp.get("/admin/policy")
@login_required
def get_policy() -> Response:
    return jsonify(policy.as_dict(_admin().tenant))


@bp.put("/admin/policy")
@login_required
def put_policy() -> Response:
    """Change any subset of the policy (all or nothing); answers the whole policy. An
    unknown or out-of-range field is 422 validation_error naming it."""
    me = _admin()
    changes = shapes.POLICY.read()
    policy.update(db(), me.tenant, changes, now=now(), actor_id=me.user.id, origin=origin())
    return jsonify(policy.as_dict(me.tenant))


def _retention_answer(tenant: Tenant) -> Response:
    periods = retention.settings(tenant)
    return jsonify({retention.API_NAMES[name]: days for name, days in periods.items()})


@bp.get("/admin/retention")
@login_required
def get_retention() -> Response:
    """The tenant's retention periods in days (what ``holdfast purge`` applies)."""
    return _retention_answer(_admin().tenant)


@bp.put("/admin/retention")
@login_required
def put_retention() -> Response:
    """Change any subset of the retention periods (whole days, 1 to 3650; all or
    nothing); answers all three. Audited as ``policy.changed``, like the policy; the next
    ``holdfast purge`` applies them. An unknown or out-of-range field is 422
    validation_error naming it."""
    me = _admin()
    changes = shapes.RETENTION.read()
    try:
        retention.update_settings(
            db(), me.tenant, changes, now=now(), actor_id=me.user.id, origin=origin()
        )
    except ValidationError as problem:
        problem.field = retention.API_NAMES.get(problem.field or "", problem.field)
        raise
    return _retention_answer(me.tenant)
