"""The OpenID Provider's protocol engine: Authlib's AuthorizationServer (``authlib.oauth2``
and ``authlib.oidc.core``) wired to Holdfast's core (app.core.oidc_clients,
app.core.oidc_grants). The routes that call it are app.web.oidc.

* Holdfast's rows as Authlib sees them: :class:`App` (a registered client),
  :class:`Person` (who a code or token is for, with the ``sid`` of their Holdfast
  session), :class:`Code` and :class:`Token`;
* the grants: authorization code with PKCE S256 only (:class:`S256Only`, required of
  public clients already at the authorization request) and the OpenID Connect extension,
  refresh token (rotated on every use);
* the RFC 7009 / RFC 7662 endpoints, and ID tokens signed by Holdfast's key ring (ES256,
  the JWKS) on Holdfast's clock;
* :func:`provider`, the server of the running app, answering for the tenant of the
  request (``g.oidc_tenant``, set by app.web.oidc's blueprint).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import ClientMixin, InvalidClientError, InvalidRequestError, grants
from authlib.oauth2.rfc6749.util import scope_to_list
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core import OpenIDCode, OpenIDToken
from authlib.oidc.core.grants.util import create_half_hash
from flask import Flask, current_app, g
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import Key, KeySet
from sqlalchemy import select

from app.core import oidc_clients, oidc_grants
from app.core.oidc_grants import LiveSession, TokenFacts
from app.models import OidcClient, OidcCode, OidcToken, Tenant
from app.web.authentication import origin
from app.web.unit_of_work import db, now, services

SCOPES = ("openid", "profile", "email", "offline_access")
PRIVATE_KEY_JWT = "private_key_jwt"
#: how apps may authenticate at the token, revocation and introspection endpoints
AUTH_METHODS = ["client_secret_basic", "client_secret_post", PRIVATE_KEY_JWT, "none"]
#: the algorithms a private_key_jwt assertion may be signed with (never HS*, never none)
ASSERTION_ALGORITHMS = ["ES256", "ES384", "RS256", "PS256", "EdDSA"]
#: the longest an assertion may live (its exp, from now): bounds how long jtis are kept
ASSERTION_MAX_LIFETIME = timedelta(minutes=10)
ID_TOKEN_LIFETIME = timedelta(minutes=5)
ID_TOKEN_TYPE = "JWT"  # noqa: S105 (a JOSE typ, not a secret)


# --- Holdfast's rows, as Authlib sees them ------------------------------------------------


class App(ClientMixin):
    """A registered app (app.models.OidcClient) as Authlib's client."""

    def __init__(self, row: OidcClient) -> None:
        self.row = row

    def get_client_id(self) -> str:
        return self.row.id

    def get_default_redirect_uri(self) -> None:
        return None  # OpenID Connect requires redirect_uri in every request

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in scope_to_list(scope or "") or [] if s in SCOPES)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.row.redirect_uris  # exact string match

    def check_client_secret(self, client_secret: str) -> bool:
        return oidc_clients.secret_matches(services().hasher, self.row, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.row.jwks is not None:
            return method == PRIVATE_KEY_JWT
        if self.row.is_public:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")


class Person:
    """Who a code or token is for: the person and the Holdfast session (``sid``), with
    the facts of the sign-in the ID token states."""

    def __init__(
        self,
        signed_in: LiveSession,
        *,
        auth_time: datetime,
        amr: list[str],
        acr: str | None,
        nonce: str | None = None,
    ) -> None:
        self.signed_in = signed_in
        self.auth_time = auth_time
        self.amr = amr
        self.acr = acr
        self.nonce = nonce

    @classmethod
    def of_session(cls, signed_in: LiveSession) -> Person:
        amr, acr = oidc_grants.session_amr(signed_in.session)
        return cls(signed_in, auth_time=signed_in.session.authenticated_at, amr=amr, acr=acr)


class Code:
    """An authorization code row as Authlib's (OAuth 2, OpenID Connect and PKCE)."""

    def __init__(self, row: OidcCode) -> None:
        self.row = row
        self.code_challenge = row.code_challenge
        self.code_challenge_method = row.code_challenge_method

    def get_redirect_uri(self) -> str:
        return self.row.redirect_uri

    def get_scope(self) -> str:
        return self.row.scope

    def get_nonce(self) -> str | None:
        return self.row.nonce

    def get_auth_time(self) -> int:
        return int(self.row.auth_time.timestamp())

    def get_acr(self) -> str | None:
        return self.row.acr

    def get_amr(self) -> list[str]:
        return list(self.row.amr)


class Token:
    """A stored token as Authlib's (refresh grant, revocation, introspection)."""

    def __init__(
        self, row: OidcToken, facts: TokenFacts | None, *, client: App, is_refresh: bool
    ) -> None:
        self.row = row
        self.facts = facts  # None: not alive now
        self.client = client
        self.is_refresh = is_refresh

    def check_client(self, client: App) -> bool:
        return bool(client.get_client_id() == self.client.get_client_id())

    def get_scope(self) -> str:
        return self.row.scope

    def get_expires_in(self) -> int:
        return max(0, int((self.row.expires_at - now()).total_seconds()))

    def is_expired(self) -> bool:
        return not self.is_refresh and self.row.expires_at <= now()

    def is_revoked(self) -> bool:
        return self.facts is None


# --- Authlib's grants and endpoints, wired to the core ------------------------------------


class AuthorizationCode(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def save_authorization_code(self, code: str, request: Any) -> None:
        person: Person = request.user
        payload = request.payload
        oidc_grants.issue_code(
            db(),
            services().hasher,
            request.client.row,
            person.signed_in,
            code=code,
            redirect_uri=payload.redirect_uri,
            scope=request.client.get_allowed_scope(payload.scope),
            nonce=payload.data.get("nonce"),
            code_challenge=payload.data.get("code_challenge"),
            code_challenge_method=payload.data.get("code_challenge_method"),
            now=now(),
        )

    def query_authorization_code(self, code: str, client: App) -> Code | None:
        row = oidc_grants.find_code(
            db(), services().hasher, client.row, code, now=now(), origin=origin()
        )
        return None if row is None else Code(row)

    def delete_authorization_code(self, authorization_code: Code) -> None:
        authorization_code.row.used_at = authorization_code.row.used_at or now()

    def authenticate_user(self, authorization_code: Code) -> Person | None:
        row = authorization_code.row
        signed_in = oidc_grants.live_session(db(), row.session_id, now())
        if (
            signed_in is None
            or signed_in.user.id != row.user_id
            or not oidc_clients.may_use(db(), self.request.client.row, row.user_id)
        ):
            row.used_at = now()  # a code of an ended session (or a person no longer
            return None  # allowed to use the app) is spent too
        return Person(
            signed_in, auth_time=row.auth_time, amr=list(row.amr), acr=row.acr, nonce=row.nonce
        )


class RefreshToken(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotated on every use (RFC 9700 §4.14.2)

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        client: App = self.request.client
        facts = oidc_grants.refresh_token_facts(
            db(), services().hasher, client.row, refresh_token, now=now(), origin=origin()
        )
        if facts is None:
            return None
        return Token(facts.token, facts, client=client, is_refresh=True)

    def authenticate_user(self, refresh_token: Token) -> Person | None:
        assert refresh_token.facts is not None
        return Person.of_session(refresh_token.facts.signed_in)

    def revoke_old_credential(self, refresh_token: Token) -> None:
        """Done by the rotation itself (app.core.oidc_grants.rotate_refresh)."""


class S256Only(CodeChallenge):
    """PKCE with S256 only (``plain`` protects nothing a code thief could not read), and
    required of public clients at the authorization request, not only at the token
    endpoint, so a public client never gets a code it could not prove it asked for."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        challenge = data.get("code_challenge")
        if challenge and data.get("code_challenge_method") != "S256":
            raise InvalidRequestError(
                "code_challenge_method must be S256.", redirect_uri=redirect_uri
            )
        if not challenge and grant.request.client.row.is_public:
            raise InvalidRequestError(
                "A public client must send a PKCE code_challenge (S256).",
                redirect_uri=redirect_uri,
            )
        try:
            super().validate_code_challenge(grant, redirect_uri)
        except OAuth2Error as error:
            error.redirect_uri = redirect_uri
            raise


def _id_token(token: dict[str, Any], request: Any) -> str:
    """The ID token for ``token``, signed by the key ring on Holdfast's clock."""
    person: Person = request.user
    client: App = request.client
    moment = now()
    claims: dict[str, Any] = {
        "iss": issuer(g.oidc_tenant),
        "aud": client.get_client_id(),
        "azp": client.get_client_id(),
        "iat": int(moment.timestamp()),
        "exp": int((moment + ID_TOKEN_LIFETIME).timestamp()),
        "auth_time": int(person.auth_time.timestamp()),
        "sid": person.signed_in.session.id,
        "amr": person.amr,
    }
    if person.acr:
        claims["acr"] = person.acr
    if person.nonce and request.authorization_code is not None:
        claims["nonce"] = person.nonce
    access = token.get("access_token")
    if access:
        claims["at_hash"] = create_half_hash(access, "ES256").decode()
    claims.update(user_claims(person.signed_in, token["scope"]))
    return services().keys.sign_claims(claims, typ=ID_TOKEN_TYPE, now=moment)


class IdTokenOnCode(OpenIDCode):
    def exists_nonce(self, nonce: str, request: Any) -> bool:
        """A nonce already used by this client is refused (a replayed request)."""
        return (
            db().scalar(
                select(OidcCode.id)
                .where(OidcCode.client_id == request.client.row.id, OidcCode.nonce == nonce)
                .limit(1)
                .execution_options(all_tenants=True)
            )
            is not None
        )

    def generate_user_info(self, user: Person, scope: str) -> dict[str, Any]:
        return user_claims(user.signed_in, scope)

    def encode_id_token(self, token: dict[str, Any], request: Any) -> str:
        return _id_token(token, request)


class IdTokenOnRefresh(OpenIDToken):
    def generate_user_info(self, user: Person, scope: str) -> dict[str, Any]:
        return user_claims(user.signed_in, scope)

    def encode_id_token(self, token: dict[str, Any], request: Any) -> str:
        return _id_token(token, request)


class Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        return _query_token(token_string, token_type_hint)

    def revoke_token(self, token: Token, request: Any) -> None:
        oidc_grants.revoke_token(
            db(), token.row, refresh_token=token.is_refresh, now=now(), origin=origin()
        )


class Introspection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        return _query_token(token_string, token_type_hint)

    def check_permission(self, token: Token, client: App, request: Any) -> bool:
        return token.check_client(client)

    def introspect_token(self, token: Token) -> dict[str, Any]:
        facts = token.facts
        assert facts is not None
        expires = facts.signed_in.session.absolute_deadline if token.is_refresh else None
        return {
            "active": True,
            "client_id": facts.grant.client_id,
            "scope": token.row.scope,
            "sub": facts.grant.user_id,
            "sid": facts.grant.session_id,
            "token_type": "refresh_token" if token.is_refresh else "Bearer",
            "iat": int(token.row.issued_at.timestamp()),
            "exp": int((expires or token.row.expires_at).timestamp()),
            "iss": issuer(g.oidc_tenant),
            "aud": facts.grant.client_id,
        }


def _query_token(value: str, hint: str | None) -> Token | None:
    """The token ``value`` if it was issued to the client that authenticated this
    request (Authlib asks after authenticating it: :meth:`Provider.query_client`)."""
    client: App | None = g.get("oidc_client")
    if client is None:
        return None
    found = oidc_grants.find_token_of_client(db(), services().hasher, client.row, value, hint)
    if found is None:
        return None
    row, is_refresh = found
    facts = oidc_grants.token_alive(db(), row, is_refresh=is_refresh, now=now())
    return Token(row, facts, client=client, is_refresh=is_refresh)


class PrivateKeyJwt(JWTBearerClientAssertion):
    """private_key_jwt (OpenID Connect Core 9, RFC 7523 §2.2): the app signs an assertion
    with a key whose public half it registered inline (OidcClient.jwks: no jwks_uri is
    ever fetched, so nothing on the request path waits on another server). Authlib finds
    the app by ``sub`` and checks the signature; here: the algorithm (asymmetric only),
    ``iss`` = ``sub`` = the client id, ``aud`` the token endpoint or the issuer, ``exp``
    on Holdfast's clock and at most :data:`ASSERTION_MAX_LIFETIME` ahead, and the
    ``jti`` used once (app.core.oidc_clients.use_assertion_jti)."""

    CLIENT_AUTH_METHOD = PRIVATE_KEY_JWT

    def __init__(self) -> None:
        super().__init__(validate_jti=True, leeway=30)

    def get_audiences(self) -> list[str]:
        base = issuer(g.oidc_tenant)
        return [f"{base}/token", base]

    def resolve_client_public_key(self, client: App) -> KeySet:
        if client.row.jwks is None:
            raise InvalidClientError(description="The client has no registered keys.")
        return KeySet.import_key_set(client.row.jwks)  # type: ignore[arg-type]

    def process_assertion_claims(self, assertion: str, resolve_key: Key | KeySet) -> Any:
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=ASSERTION_ALGORITHMS)
        except (JoseError, ValueError) as error:
            raise InvalidClientError(description="The client assertion is not valid.") from error
        self.verify_claims(token.claims)
        return token.claims

    def verify_claims(self, claims: Any) -> None:
        moment = now()
        registry = jwt.JWTClaimsRegistry(
            now=int(moment.timestamp()),
            leeway=self.leeway,
            iss={"essential": True},
            sub={"essential": True},
            aud={"essential": True, "values": self.get_audiences()},
            exp={"essential": True},
            jti={"essential": True},
        )
        try:
            registry.validate(claims)
        except JoseError as error:
            raise InvalidClientError(description=error.description) from error
        if claims["sub"] != claims["iss"]:
            raise InvalidClientError(description="iss and sub must both be the client id.")
        exp, jti = claims["exp"], claims["jti"]
        latest = moment + ASSERTION_MAX_LIFETIME
        if not isinstance(exp, int) or exp > latest.timestamp():
            raise InvalidClientError(description="The client assertion lives too long.")
        if not isinstance(jti, str) or not jti or len(jti) > 200:
            raise InvalidClientError(description="The client assertion needs a jti.")
        if not self.validate_jti(claims, jti):
            raise InvalidClientError(description="The client assertion was used before.")

    def validate_jti(self, claims: Any, jti: str) -> bool:
        client: App | None = g.get("oidc_client")
        if client is None or client.get_client_id() != claims["sub"]:
            return False
        expires = datetime.fromtimestamp(int(claims["exp"]), UTC)
        return oidc_clients.use_assertion_jti(db(), client.row, jti, expires_at=expires, now=now())


class Provider(AuthorizationServer):
    """Authlib's server, answering for the tenant of the request (``g.oidc_tenant``)."""

    def query_client(self, client_id: str) -> App | None:
        row = oidc_clients.find_client(db(), g.oidc_tenant.id, client_id)
        if row is None:
            return None
        g.oidc_client = App(row)  # for _query_token
        return g.oidc_client  # type: ignore[no-any-return]

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        hasher = services().hasher
        if request.authorization_code is not None:
            oidc_grants.start_grant(
                db(),
                hasher,
                request.authorization_code.row,
                access_token=token["access_token"],
                refresh_token=token.get("refresh_token"),
                expires_in=int(token["expires_in"]),
                now=now(),
                origin=origin(),
            )
        else:
            old: Token = request.refresh_token
            assert old.facts is not None
            oidc_grants.rotate_refresh(
                db(),
                hasher,
                old.facts,
                access_token=token["access_token"],
                refresh_token=token["refresh_token"],
                expires_in=int(token["expires_in"]),
                now=now(),
            )


def make_provider(app: Flask) -> Provider:
    server = Provider()
    server.init_app(app)
    lifetime = int(oidc_grants.ACCESS_LIFETIME.total_seconds())
    server.register_token_generator(
        "default",
        BearerTokenGenerator(
            access_token_generator=_random_token,
            refresh_token_generator=_random_token,
            expires_generator=lambda _client, _grant_type: lifetime,
        ),
    )
    server.register_grant(AuthorizationCode, [S256Only(required=True), IdTokenOnCode()])
    server.register_grant(RefreshToken, [IdTokenOnRefresh()])
    server.register_endpoint(Revocation)
    server.register_endpoint(Introspection)
    server.register_client_auth_method(PRIVATE_KEY_JWT, PrivateKeyJwt())
    return server


def _random_token(*_args: Any, **_kwargs: Any) -> str:
    import secrets

    return secrets.token_urlsafe(32)


def provider() -> Provider:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    server = app.extensions.get("holdfast_oidc")
    if server is None:
        server = app.extensions["holdfast_oidc"] = make_provider(app)
    return server  # type: ignore[no-any-return]


def issuer(tenant: Tenant) -> str:
    """The tenant's issuer identifier: ``{HOLDFAST_BASE_URL}/oidc/{slug}``."""
    return f"{current_app.config['BASE_URL'].rstrip('/')}/oidc/{tenant.slug}"


def user_claims(signed_in: LiveSession, scope: str) -> dict[str, Any]:
    """The person's claims a token of ``scope`` may see (``sub`` always)."""
    scopes = scope_to_list(scope or "") or []
    user = signed_in.user
    claims: dict[str, Any] = {"sub": user.id}
    if "email" in scopes:
        claims["email"] = user.email
        claims["email_verified"] = True  # every sign-in proves the address (an emailed code)
    if "profile" in scopes:
        claims["name"] = user.name or user.email
        claims["preferred_username"] = user.email
    return claims
