"""The OpenAPI words of the apps operations (app.web.api_apps: a tenant admin's OpenID
Connect apps), as app.web.api_operations writes those of the rest of the API;
``app.web.openapi`` lists them after the other admin operations. Bodies and answer
shapes come from app.web.app_shapes."""

from __future__ import annotations

from app.web import app_shapes as shapes
from app.web.api_operations import (
    ADMIN,
    BODY_ERRORS,
    COOKIE_WRITE,
    SIGNED_IN,
    Answer,
    Operation,
    error,
)

TAG = "Tenant admin"
NO_APP = error("not_found: no such app in this tenant (or it was removed).")
APP_ID = "An app (client id) of the admin's tenant."

#: the public ids a path may carry: parameter name -> description, by operation id
PATH_IDS: dict[str, str | dict[str, str]] = {
    "adminGetApp": APP_ID,
    "adminUpdateApp": APP_ID,
    "adminRemoveApp": APP_ID,
    "adminRotateAppSecret": APP_ID,
    "adminListAppSignIns": APP_ID,
    "adminEndAppSignIn": {"clientId": APP_ID, "grantId": "One of the app's live sign-ins."},
}

OPERATIONS = (
    Operation(
        "apps_api.list_apps",
        "adminListApps",
        TAG,
        "The tenant's apps (OpenID Connect clients)",
        SIGNED_IN,
        {"200": Answer("By name.", shapes.APP_LIST), **ADMIN},
    ),
    Operation(
        "apps_api.create_app",
        "adminCreateApp",
        TAG,
        "Register an app",
        SIGNED_IN,
        {
            "201": Answer("Registered; clientSecret is shown only here.", shapes.APP_CREATED),
            **BODY_ERRORS,
            **ADMIN,
        },
        description="Like `holdfast oidc client add`. A confidential app (public false, the "
        "default) gets a secret, returned once; only a keyed hash is kept. restricted and "
        "people choose who may use it (everyone by default). Audited (oidc.client_added).",
        body=shapes.NEW_APP,
    ),
    Operation(
        "apps_api.get_app",
        "adminGetApp",
        TAG,
        "One app",
        SIGNED_IN,
        {"200": Answer("The app.", "App"), **ADMIN, "404": NO_APP},
    ),
    Operation(
        "apps_api.update_app",
        "adminUpdateApp",
        TAG,
        "Change an app's name, URIs or people",
        SIGNED_IN,
        {"200": Answer("The app after the change.", "App"), **BODY_ERRORS, **ADMIN, "404": NO_APP},
        description="Any subset; all or nothing. Whether the app is public is fixed at "
        "registration (sending public is refused). Taking people off the list, or "
        "restricting the app, ends their sign-ins at once (tokens die, back-channel "
        "logout sent). Audited (oidc.client_changed, oidc.client_people_changed).",
        body=shapes.CHANGE_APP,
    ),
    Operation(
        "apps_api.remove_app",
        "adminRemoveApp",
        TAG,
        "Remove an app",
        SIGNED_IN,
        {
            "204": Answer("Removed."),
            **ADMIN,
            "404": NO_APP,
            "415": COOKIE_WRITE["415"],
        },
        description="Every sign-in to it ends (its tokens stop working; the app is still "
        "sent their back-channel logout tokens) and its client id is refused from now on. "
        "Audited (oidc.client_removed).",
    ),
    Operation(
        "apps_api.rotate_secret",
        "adminRotateAppSecret",
        TAG,
        "Make a new secret for a confidential app",
        SIGNED_IN,
        {
            "200": Answer("The new secret, shown only here.", shapes.SECRET),
            **ADMIN,
            "404": NO_APP,
            "415": COOKIE_WRITE["415"],
            "422": error("validation_error: a public app has no secret (field secret)."),
        },
        description="The old secret stops working at once. Audited (oidc.client_secret_rotated).",
    ),
    Operation(
        "apps_api.list_sign_ins",
        "adminListAppSignIns",
        TAG,
        "The app's live sign-ins",
        SIGNED_IN,
        {"200": Answer("Newest first.", shapes.SIGN_IN_LIST), **ADMIN, "404": NO_APP},
    ),
    Operation(
        "apps_api.end_sign_in",
        "adminEndAppSignIn",
        TAG,
        "Sign one person out of the app",
        SIGNED_IN,
        {
            "204": Answer("Ended; the app gets its back-channel logout."),
            **ADMIN,
            "404": error("not_found: no such app, or no such live sign-in to it."),
            "415": COOKIE_WRITE["415"],
        },
        description="That sign-in's tokens die; the Holdfast session and its other apps "
        "stay. Audited (oidc.signed_out).",
    ),
)
