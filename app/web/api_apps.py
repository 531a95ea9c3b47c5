"""The tenant admin's apps over the JSON API (/api/admin/apps): the same as the Apps
pages (app.web.admin_apps) and ``holdfast oidc client``, as thin views over
app.core.oidc_clients, oidc_access and backchannel. Inputs are read with the
declarations of app.web.app_shapes; errors are the API's ``{"error", "code", "field"}``,
with the API's field names."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Blueprint, Response, current_app, jsonify
from flask_login import login_required

from app.core import backchannel, oidc_access, oidc_clients
from app.core.access import require_admin
from app.core.errors import ValidationError
from app.core.sessions import Current
from app.core.totp import require_for_admin
from app.models import OidcClient
from app.web import app_shapes as shapes
from app.web.api_csrf import guard
from app.web.authentication import current, origin
from app.web.extensions import csrf
from app.web.json_input import public_id
from app.web.unit_of_work import db, now, services

bp = Blueprint("apps_api", __name__, url_prefix="/api/admin/apps")
csrf.exempt(bp)
guard(bp)


def _admin() -> Current:
    """The signed-in admin (as app.web.api's admin routes: a fresh sign-in, the tenant's
    authenticator-app rule). Raises Forbidden or FreshSignInRequired."""
    me = current()
    require_admin(me, now())
    require_for_admin(me)
    return me


def _issuer(me: Current) -> str:
    return f"{current_app.config['BASE_URL'].rstrip('/')}/oidc/{me.tenant.slug}"


def _app(me: Current, client_id: str) -> OidcClient:
    return oidc_clients.tenant_client(db(), me.tenant.id, public_id(client_id))


def _answer(me: Current, client: OidcClient, **extra: Any) -> dict[str, Any]:
    people = oidc_clients.chosen_people(db(), client)
    return {**shapes.app_item(client, people, _issuer(me)), **extra}


@contextmanager
def _api_fields() -> Iterator[None]:
    """The core's field names (redirect_uri…) as the API's (redirectUris…)."""
    try:
        yield
    except ValidationError as problem:
        problem.field = shapes.API_FIELDS.get(problem.field or "", problem.field)
        raise


@bp.get("")
@login_required
def list_apps() -> Response:
    me = _admin()
    apps = [_answer(me, client) for client in oidc_clients.clients_of(db(), me.tenant.id)]
    return jsonify(apps=apps)


@bp.post("")
@login_required
def create_app() -> tuple[Response, int]:
    """Register an app; its secret (a confidential app) is in this answer only."""
    me = _admin()
    body = shapes.NEW_APP.read()
    if body["people"] is not None:  # checked first: a refusal must register nothing
        oidc_access.check_people(db(), me.tenant.id, body["people"])
    with _api_fields():
        made = oidc_clients.add_client(
            db(),
            services().hasher,
            me.tenant,
            name=body["name"],
            redirect_uris=body["redirectUris"],
            public=bool(body["public"]),
            post_logout_redirect_uris=body["postLogoutUris"] or (),
            backchannel_logout_uri=body["backchannelLogoutUri"] or None,
            jwks=body["jwks"],
            now=now(),
            actor_id=me.user.id,
            origin=origin(),
        )
        if body["restricted"] or body["people"] is not None:
            oidc_access.set_people(
                db(),
                made.client,
                restricted=bool(body["restricted"]),
                user_ids=body["people"],
                now=now(),
                actor_id=me.user.id,
                origin=origin(),
            )
    return jsonify(_answer(me, made.client, clientSecret=made.secret)), 201


@bp.get("/<client_id>")
@login_required
def get_app(client_id: str) -> Response:
    me = _admin()
    return jsonify(_answer(me, _app(me, client_id)))


@bp.patch("/<client_id>")
@login_required
def update_app(client_id: str) -> Response:
    """Change any subset of name, URIs and people; all or nothing (the request's
    transaction rolls back on the first refusal)."""
    me = _admin()
    client = _app(me, client_id)
    body = shapes.CHANGE_APP.read()
    if body["public"] is not None:
        raise ValidationError("Whether an app is public is fixed at registration.", field="public")
    if body["people"] is not None:  # checked first: a refusal must change nothing
        oidc_access.check_people(db(), me.tenant.id, body["people"])
    backchannel_uri = body["backchannelLogoutUri"]
    with _api_fields():
        oidc_clients.change_client(
            db(),
            client,
            name=body["name"],
            redirect_uris=body["redirectUris"],
            post_logout_redirect_uris=body["postLogoutUris"],
            backchannel_logout_uri=backchannel_uri or None,
            clear_backchannel=backchannel_uri == "",
            jwks=body["jwks"],
            now=now(),
            actor_id=me.user.id,
            origin=origin(),
        )
        if body["restricted"] is not None or body["people"] is not None:
            oidc_access.set_people(
                db(),
                client,
                restricted=client.restricted if body["restricted"] is None else body["restricted"],
                user_ids=body["people"],
                now=now(),
                actor_id=me.user.id,
                origin=origin(),
            )
    return jsonify(_answer(me, client))


@bp.delete("/<client_id>")
@login_required
def remove_app(client_id: str) -> Response:
    me = _admin()
    client = _app(me, client_id)
    oidc_access.remove_client(db(), client, now=now(), actor_id=me.user.id, origin=origin())
    return Response(status=204)


@bp.post("/<client_id>/secret")
@login_required
def rotate_secret(client_id: str) -> Response:
    me = _admin()
    client = _app(me, client_id)
    secret = oidc_clients.rotate_secret(
        db(), services().hasher, client, now=now(), actor_id=me.user.id, origin=origin()
    )
    return jsonify(clientId=client.id, clientSecret=secret)


@bp.get("/<client_id>/sign-ins")
@login_required
def list_sign_ins(client_id: str) -> Response:
    me = _admin()
    client = _app(me, client_id)
    items = [shapes.sign_in_item(item) for item in backchannel.active_sign_ins(db(), client)]
    return jsonify(signIns=items)


@bp.delete("/<client_id>/sign-ins/<grant_id>")
@login_required
def end_sign_in(client_id: str, grant_id: str) -> Response:
    me = _admin()
    client = _app(me, client_id)
    backchannel.end_sign_in_as_admin(
        db(), client, public_id(grant_id), now=now(), admin_id=me.user.id, origin=origin()
    )
    return Response(status=204)
