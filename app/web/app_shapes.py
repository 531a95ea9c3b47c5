"""What the apps routes of the JSON API (app.web.api_apps) read and answer, declared as
app.web.api_shapes declares the rest of the API: request bodies read with
``DECLARATION.read()``, answer schemas beside their serialisers, all published by
``app.web.openapi``."""

from __future__ import annotations

from typing import Any

from app.core import oidc_access, oidc_clients
from app.core.backchannel import ActiveSignIn
from app.models import OidcClient, User
from app.web.api_fields import DATE_TIME, Body, Field, ref
from app.web.api_shapes import obj
from app.web.session_status import iso

#: the API's names of the fields the core names in its ValidationErrors
API_FIELDS = {
    "redirect_uri": "redirectUris",
    "post_logout_uri": "postLogoutUris",
    "backchannel_logout_uri": "backchannelLogoutUri",
}

# --- request bodies --------------------------------------------------------------------------

_URIS = {"description": "Exact URIs: https, or http on localhost; no fragment."}
NAME = Field("name", str, max_length=oidc_clients.MAX_NAME, doc={"examples": ["Grafana"]})
REDIRECT_URIS = Field(
    "redirectUris",
    list,
    max_length=oidc_clients.MAX_URI,
    max_items=oidc_clients.MAX_URIS,
    doc=_URIS,
)
POST_LOGOUT_URIS = Field(
    "postLogoutUris",
    list,
    max_length=oidc_clients.MAX_URI,
    max_items=oidc_clients.MAX_URIS,
    doc=_URIS,
)
BACKCHANNEL_URI = Field(
    "backchannelLogoutUri",
    str,
    max_length=oidc_clients.MAX_URI,
    doc={"description": 'Where logout tokens are POSTed. In a change, "" removes it.'},
)
RESTRICTED = Field(
    "restricted",
    bool,
    doc={"description": "true: only the people in people may use the app; false: everyone."},
)
PEOPLE = Field(
    "people",
    list,
    max_length=40,
    max_items=oidc_access.MAX_PEOPLE,
    doc={
        "description": "Ids of the tenant's people chosen for the app (replaces the list; "
        "kept while the app is open to everyone)."
    },
)

JWKS = Field(
    "jwks",
    dict,
    doc={
        "description": 'The app\'s public keys as a JWK Set ({"keys": [...]}, 1 to 10 EC, RSA '
        "or OKP keys, no private part): it then authenticates with private_key_jwt and has "
        "no secret. In a change: new keys for an app registered with keys."
    },
)

NEW_APP = Body(
    Field("name", str, required=True, max_length=oidc_clients.MAX_NAME),
    Field(
        "redirectUris",
        list,
        required=True,
        max_length=oidc_clients.MAX_URI,
        max_items=oidc_clients.MAX_URIS,
        doc=_URIS,
    ),
    POST_LOGOUT_URIS,
    BACKCHANNEL_URI,
    Field(
        "public",
        bool,
        doc={
            "description": "true: a browser or native app (no secret, PKCE S256 required). "
            "Fixed at registration."
        },
    ),
    RESTRICTED,
    PEOPLE,
    JWKS,
)

CHANGE_APP = Body(
    NAME,
    REDIRECT_URIS,
    POST_LOGOUT_URIS,
    BACKCHANNEL_URI,
    RESTRICTED,
    PEOPLE,
    JWKS,
    Field(
        "public",
        bool,
        doc={"description": "Refused: whether an app is public is fixed at registration."},
    ),
)

# --- answers -----------------------------------------------------------------------------------

_URI_LIST = {"type": "array", "items": {"type": "string"}}
PERSON = obj({"id": {"type": "string"}, "email": {"type": "string"}})
APP = obj(
    {
        "clientId": {"type": "string", "examples": ["app_3f2a…"]},
        "name": {"type": "string"},
        "public": {"type": "boolean"},
        "tokenEndpointAuthMethod": {
            "type": "string",
            "enum": ["client_secret_basic", "private_key_jwt", "none"],
            "description": "client_secret_basic also allows client_secret_post.",
        },
        "redirectUris": _URI_LIST,
        "postLogoutUris": _URI_LIST,
        "backchannelLogoutUri": {"type": ["string", "null"]},
        "restricted": {"type": "boolean"},
        "people": {"type": "array", "items": ref("AppPerson")},
        "createdAt": DATE_TIME,
        "issuer": {"type": "string"},
    }
)
APP_CREATED = {
    "allOf": [
        ref("App"),
        obj(
            {
                "clientSecret": {
                    "type": ["string", "null"],
                    "description": "Shown only here (null for a public app).",
                }
            }
        ),
    ]
}
APP_LIST = obj({"apps": {"type": "array", "items": ref("App")}})
SECRET = obj({"clientId": {"type": "string"}, "clientSecret": {"type": "string"}})
SIGN_IN = obj(
    {
        "id": {"type": "string", "description": "The sign-in (grant) id, oag_…"},
        "userId": {"type": "string"},
        "email": {"type": "string"},
        "sessionId": {"type": "string", "description": "The Holdfast session (the sid)."},
        "since": DATE_TIME,
    }
)
SIGN_IN_LIST = obj({"signIns": {"type": "array", "items": ref("AppSignIn")}})

SCHEMAS = {"App": APP, "AppPerson": PERSON, "AppSignIn": SIGN_IN}


def app_item(client: OidcClient, people: list[User], issuer: str) -> dict[str, Any]:
    return {
        "clientId": client.id,
        "name": client.name,
        "public": client.is_public,
        "tokenEndpointAuthMethod": client.auth_method,
        "redirectUris": list(client.redirect_uris),
        "postLogoutUris": list(client.post_logout_redirect_uris),
        "backchannelLogoutUri": client.backchannel_logout_uri,
        "restricted": client.restricted,
        "people": [{"id": person.id, "email": person.email} for person in people],
        "createdAt": iso(client.created_at),
        "issuer": issuer,
    }


def sign_in_item(item: ActiveSignIn) -> dict[str, Any]:
    return {
        "id": item.grant_id,
        "userId": item.user_id,
        "email": item.email,
        "sessionId": item.session_id,
        "since": iso(item.since),
    }
