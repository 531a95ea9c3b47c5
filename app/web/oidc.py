"""Holdfast as an OpenID Provider: one issuer per tenant, ``{BASE_URL}/oidc/{slug}``.

The protocol is Authlib's (``authlib.oauth2`` and ``authlib.oidc.core``): its
AuthorizationServer, authorization-code grant with the OpenID Connect and PKCE
extensions, refresh-token grant, and RFC 7009 / RFC 7662 endpoints, each hook wired to
Holdfast's core (app.core.oidc_clients, app.core.oidc_grants) in app.web.oidc_server.
This module holds the blueprint: the tenant of each request, the endpoints, and
Holdfast's own rules:

* the Holdfast session is the OP session: ``authorize`` signs in through the ordinary
  pages (``/login``, ``/login/again`` for ``prompt=login`` and ``max_age``), every code
  and token hangs on that session (``sid``) and dies with it;
* PKCE S256 only, and required of public clients already at the authorization request;
* ID tokens are signed by Holdfast's key ring (ES256, the JWKS) on Holdfast's clock;
* request objects (``request``, ``request_uri``) are not supported and refused;
* every app is first party (registered by the tenant's admin): no consent screen.

Endpoints: discovery, ``jwks``, ``authorize``, ``token``, ``userinfo``, ``revoke``,
``introspect``, ``logout``. See docs/oidc.md.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from authlib.common.urls import add_params_to_uri
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import AccessDeniedError
from authlib.oidc.core.errors import (
    LoginRequiredError,
    RequestNotSupportedError,
    RequestURINotSupportedError,
)
from flask import (
    Blueprint,
    Response,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user
from joserfc import jwt as jose_jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import select

from app.core import oidc_access, oidc_clients, oidc_grants
from app.core.oidc_grants import LiveSession
from app.core.sessions import end_session
from app.models import OidcClient, Tenant
from app.web.authentication import current, origin
from app.web.cookies import clear_session_cookie
from app.web.extensions import csrf
from app.web.forms import ActionForm
from app.web.oidc_server import (
    ASSERTION_ALGORITHMS,
    AUTH_METHODS,
    SCOPES,
    Introspection,
    Person,
    Revocation,
    issuer,
    provider,
    user_claims,
)
from app.web.unit_of_work import db, now, services, writing_unit

bp = Blueprint("oidc", __name__, url_prefix="/oidc/<tenant_slug>")
csrf.exempt(bp)  # clients authenticate with secrets or PKCE, never with a cookie

#: the query parameter a re-authentication adds to the authorization request it returns
#: to: the moment from which the sign-in counts as fresh (prompt=login, max_age)
AUTH_AFTER = "hf_auth_after"
#: the query parameter marking an authorization request that comes back from Holdfast's
#: sign-in pages: its answer is a page that refreshes to the app (see :func:`_to_app`)
AFTER_SIGN_IN = "hf_signed_in"


# --- the tenant of each request -------------------------------------------------------------


#: GET endpoints that write (authorize stores the code): their unit of work takes the
#: write lock from its start, as a POST's does (app.web.unit_of_work.writing_unit)
WRITING_GETS = frozenset({"oidc.authorize"})


@bp.url_value_preprocessor
def _tenant(endpoint: str | None, values: dict[str, Any] | None) -> None:
    if endpoint in WRITING_GETS:
        writing_unit()
    slug = (values or {}).pop("tenant_slug", None)
    tenant = None
    if isinstance(slug, str) and len(slug) <= 64:
        tenant = db().scalar(select(Tenant).where(Tenant.slug == slug))
    g.oidc_tenant = tenant


@bp.url_defaults
def _slug(_endpoint: str, values: dict[str, Any]) -> None:
    if "tenant_slug" not in values and g.get("oidc_tenant") is not None:
        values["tenant_slug"] = g.oidc_tenant.slug


@bp.before_request
def _known_tenant() -> Response | None:
    if g.oidc_tenant is None:
        return _json_error("not_found", "No such issuer.", 404)
    return None


def _json_error(code: str, description: str, status: int) -> Response:
    response = jsonify({"error": code, "error_description": description, "code": code})
    response.status_code = status
    return response


def _public(response: Response) -> Response:
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


# --- endpoints ----------------------------------------------------------------------------


@bp.get("/.well-known/openid-configuration")
def discovery() -> Response:
    """The OpenID Provider Metadata of the tenant's issuer (OpenID Connect Discovery 1.0)."""
    base = issuer(g.oidc_tenant)
    auth_methods = AUTH_METHODS
    metadata = {
        "issuer": base,
        "authorization_endpoint": f"{base}/authorize",
        "token_endpoint": f"{base}/token",
        "userinfo_endpoint": f"{base}/userinfo",
        "jwks_uri": f"{base}/jwks",
        "revocation_endpoint": f"{base}/revoke",
        "introspection_endpoint": f"{base}/introspect",
        "scopes_supported": list(SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "token_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_methods_supported": auth_methods,
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
        "revocation_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
        "introspection_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": [
            "sub",
            "iss",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "acr",
            "amr",
            "azp",
            "sid",
            "at_hash",
            "email",
            "email_verified",
            "name",
            "preferred_username",
        ],
        "claims_parameter_supported": False,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "authorization_response_iss_parameter_supported": False,
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "end_session_endpoint": f"{base}/logout",
        "backchannel_logout_supported": True,
        "backchannel_logout_session_supported": True,
        "frontchannel_logout_supported": False,
    }
    response = jsonify(metadata)
    response.cache_control.public = True
    response.cache_control.max_age = 300
    return _public(response)


@bp.get("/jwks")
def jwks() -> Response:
    """The keys that verify ID tokens: the same key ring as ``/.well-known/jwks.json``."""
    response = jsonify(services().keys.jwks())
    response.cache_control.public = True
    response.cache_control.max_age = int(current_app.config["JWKS_MAX_AGE"])
    return _public(response)


@bp.route("/authorize", methods=["GET", "POST"])
def authorize() -> Response | tuple[str, int]:
    """The authorization endpoint (code flow). Signs in through Holdfast's own pages when
    there is no live session of this tenant, or a fresh one is asked for."""
    server = provider()
    params = request.values
    signed_in = _signed_in_here()
    person = None if signed_in is None else Person.of_session(signed_in)
    try:
        grant = server.get_consent_grant(end_user=person)
        redirect_uri = grant.request.payload.redirect_uri
        if "request" in params:
            raise RequestNotSupportedError(redirect_uri=redirect_uri)
        if "request_uri" in params:
            raise RequestURINotSupportedError(redirect_uri=redirect_uri)
        fresh_needed = signed_in is not None and _fresh_sign_in_needed(signed_in, params)
        if fresh_needed and "none" in (params.get("prompt") or "").split():
            raise LoginRequiredError(redirect_uri=redirect_uri)
        if signed_in is not None and not oidc_clients.may_use(
            db(), grant.client.row, signed_in.user.id
        ):
            # Checked after the redirect URI (OpenID Connect Core 3.1.2.6): the app hears
            # access_denied; the person was chosen out of it, or never chosen.
            oidc_access.refuse(db(), grant.client.row, signed_in, now=now(), origin=origin())
            raise AccessDeniedError(
                description="You may not use this app.", redirect_uri=redirect_uri
            )
    except OAuth2Error as error:
        if not error.redirect_uri:
            # No client or redirect URI we may send the person back to: never redirect.
            return render_template(
                "error.html",
                title=_("This sign-in link is not valid"),
                message=error.description or error.error,
            ), 400
        error.state = params.get("state")
        answer = server.handle_error_response(grant_request(), error)
        return _to_app(answer, _("the app"))
    if signed_in is None:
        if current_user.is_authenticated:
            return render_template(
                "error.html",
                title=_("Signed in to another organisation"),
                message=_(
                    "You are signed in to another organisation. Sign out, then sign in "
                    "to %(organisation)s to continue to this app.",
                    organisation=g.oidc_tenant.name,
                ),
            ), 403
        return redirect(url_for("auth.login", next=_come_back(fresh=False)))  # type: ignore[return-value]
    if fresh_needed:
        return redirect(url_for("auth.again", next=_come_back(fresh=True)))  # type: ignore[return-value]
    answer = server.create_authorization_response(grant_user=person, grant=grant)
    return _to_app(answer, grant.client.row.name)


def _to_app(answer: Response, app_name: str) -> Response:
    """``answer`` (a redirect to the app), or, for a request that comes straight from
    Holdfast's sign-in form, a page that refreshes to the same place: browsers hold the
    whole redirect chain of a form submission to the form page's CSP ``form-action
    'self'``, which would block the step to the app."""
    location = answer.headers.get("Location")
    if answer.status_code != 302 or not location or not request.args.get(AFTER_SIGN_IN):
        return answer
    page = render_template("oidc/continue.html", location=location, app_name=app_name)
    return Response(page, 200, content_type="text/html; charset=utf-8")


def grant_request() -> Any:
    return provider().create_oauth2_request(request)


def _signed_in_here() -> LiveSession | None:
    """The request's live Holdfast session, if it belongs to this issuer's tenant."""
    if not current_user.is_authenticated:
        return None
    facts = current_user.current.facts
    if facts.session.tenant_id != g.oidc_tenant.id:
        return None
    return oidc_grants.live_session(db(), facts.session.id, now())


def _fresh_sign_in_needed(signed_in: LiveSession, params: Any) -> bool:
    """Whether ``prompt=login`` or ``max_age`` asks for a sign-in newer than the
    session's last one. After re-authenticating, the request comes back with
    :data:`AUTH_AFTER` in place of ``prompt=login`` (a sign-in from that moment on is
    fresh enough)."""
    authenticated = signed_in.session.authenticated_at
    after = params.get(AUTH_AFTER)
    if after is not None:
        try:
            return authenticated.timestamp() < int(after)
        except ValueError:
            return True
    if "login" in (params.get("prompt") or "").split():
        return True
    max_age = params.get("max_age")
    if max_age is not None:
        try:
            seconds = int(max_age)
        except ValueError:
            return True
        return (now() - authenticated).total_seconds() > max(0, seconds)
    return False


def _come_back(*, fresh: bool) -> str:
    """This authorization request as a local URL to return to after signing in; after a
    fresh sign-in, ``prompt=login`` and ``max_age`` give way to :data:`AUTH_AFTER`."""
    params: list[tuple[str, str]] = [
        (k, str(v))
        for k, v in request.values.items(multi=True)
        if k not in (AFTER_SIGN_IN, *((AUTH_AFTER, "prompt", "max_age") if fresh else ()))
    ]
    if fresh:
        params.append((AUTH_AFTER, str(int(now().timestamp()))))
    params.append((AFTER_SIGN_IN, "1"))
    return f"{request.path}?{urlencode(params)}"


@bp.post("/token")
def token() -> Response:
    """The token endpoint: authorization_code (PKCE) and refresh_token grants."""
    return _public(provider().create_token_response())


@bp.post("/revoke")
def revoke() -> Response:
    """RFC 7009: revoking a refresh token ends the app's sign-in; unknown tokens: 200."""
    return _public(provider().create_endpoint_response(Revocation.ENDPOINT_NAME))


@bp.post("/introspect")
def introspect() -> Response:
    """RFC 7662, for the client the token was issued to."""
    return provider().create_endpoint_response(Introspection.ENDPOINT_NAME)  # type: ignore[no-any-return]


@bp.route("/userinfo", methods=["GET", "POST"])
def userinfo() -> Response:
    """The person's claims for a live access token (``Authorization: Bearer``)."""
    header = request.headers.get("Authorization", "")
    value = header[7:].strip() if header[:7].lower() == "bearer " else ""
    facts = (
        oidc_grants.access_token_facts(db(), services().hasher, g.oidc_tenant.id, value, now())
        if value
        else None
    )
    if facts is None:
        response = _json_error("invalid_token", "The access token is not valid.", 401)
        response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        return _public(response)
    return _public(jsonify(user_claims(facts.signed_in, facts.token.scope)))


# --- RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0) -------------------------

LOGOUT_PARAMS = ("id_token_hint", "client_id", "post_logout_redirect_uri", "state", "ui_locales")


class LogoutRequest:
    """A checked logout request: the app it comes from (if it said) and where to go after."""

    def __init__(self, client: OidcClient | None, target: str | None) -> None:
        self.client = client
        self.target = target


def _logout_request(params: Any) -> LogoutRequest:
    """The app and the return address of a logout request. Raises ValueError (shown on an
    error page, never followed) for a hint that is not ours, a client that does not
    match it, or a post-logout URI the app did not register exactly."""
    tenant = g.oidc_tenant
    client_id = params.get("client_id") or None
    hint = params.get("id_token_hint")
    if hint:
        keys = KeySet.import_key_set(services().keys.jwks())  # type: ignore[arg-type]
        try:
            claims = jose_jwt.decode(hint, keys, algorithms=["ES256"]).claims
        except (JoseError, ValueError) as error:
            raise ValueError(_("The id_token_hint is not a token of this issuer.")) from error
        if claims.get("iss") != issuer(tenant):
            raise ValueError(_("The id_token_hint is not a token of this issuer."))
        audience = claims.get("aud")
        if client_id is not None and client_id != audience:
            raise ValueError(_("client_id does not match the id_token_hint."))
        client_id = audience if isinstance(audience, str) else None
    client = oidc_clients.find_client(db(), tenant.id, client_id) if client_id else None
    if client_id and client is None:
        raise ValueError(_("Unknown app."))
    target = params.get("post_logout_redirect_uri") or None
    if target is not None:
        if client is None:
            raise ValueError(
                _("A post_logout_redirect_uri needs the app's client_id or an id_token_hint.")
            )
        if target not in client.post_logout_redirect_uris:  # exact match: no open redirect
            raise ValueError(_("That post_logout_redirect_uri is not registered for the app."))
        state = params.get("state")
        if state:
            target = add_params_to_uri(target, [("state", state)])
    return LogoutRequest(client, target)


def _logout_error(error: ValueError) -> tuple[str, int]:
    return render_template(
        "error.html", title=_("This sign-out link is not valid"), message=str(error)
    ), 400


def _after_logout(found: LogoutRequest) -> Response:
    if found.target is None:
        return redirect(url_for("auth.login", reason="logout"))  # type: ignore[return-value]
    # A page, not a redirect: after the confirmation form, CSP form-action 'self' would
    # refuse a redirect to the app (see _to_app).
    name = found.client.name if found.client else _("the app")
    page = render_template("oidc/continue.html", location=found.target, app_name=name)
    return Response(page, 200, content_type="text/html; charset=utf-8")


@bp.get("/logout")
def end_session_page() -> Response | tuple[str, int]:
    """The end_session_endpoint: asks the person to confirm (signing out is never a GET),
    or, with no session of this tenant to end, goes straight back to the app."""
    try:
        found = _logout_request(request.args)
    except ValueError as error:
        return _logout_error(error)
    if _signed_in_here() is None:
        return _after_logout(found)
    params = [(name, request.args[name]) for name in LOGOUT_PARAMS if request.args.get(name)]
    page = render_template(
        "oidc/logout.html",
        form=ActionForm(),
        params=params,
        app_name=found.client.name if found.client else None,
    )
    return Response(page, 200, content_type="text/html; charset=utf-8")


@bp.post("/logout")
def end_session_confirmed() -> Response | tuple[str, int]:
    """The confirmation: end the Holdfast session (its apps are signed out through the
    back channel) and return to the app's registered post-logout URI."""
    try:
        found = _logout_request(request.form)
    except ValueError as error:
        return _logout_error(error)
    if not ActionForm().validate_on_submit():
        return _logout_error(ValueError(_("The form expired. Go back to the app and try again.")))
    if _signed_in_here() is not None:
        me = current()
        end_session(db(), me.session, "logout", now=now(), actor_id=me.user.id, origin=origin())
    response = _after_logout(found)
    clear_session_cookie(response)
    return response
