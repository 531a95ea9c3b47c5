"""The tenant admin's apps (Holdfast as their OpenID Provider, docs/oidc.md): register
one (its secret shown once), rotate a secret, see each app's active sign-ins and end
them (the app gets its back-channel logout)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, redirect, render_template, request, url_for

from app.core import backchannel, oidc_clients
from app.core.errors import ValidationError
from app.web.access import admin_required
from app.web.authentication import current, origin
from app.web.forms import ActionForm
from app.web.unit_of_work import db, now, services

bp = Blueprint("admin_apps", __name__)


def _issuer() -> str:
    return f"{current_app.config['BASE_URL'].rstrip('/')}/oidc/{current().tenant.slug}"


def _lines(name: str) -> list[str]:
    return [line.strip() for line in request.form.get(name, "").splitlines() if line.strip()]


def _page(error: ValidationError | None = None, status: int = 200) -> tuple[str, int]:
    tenant_id = current().tenant.id
    apps = [
        (client, backchannel.active_sign_ins(db(), client))
        for client in oidc_clients.clients_of(db(), tenant_id)
    ]
    page = render_template(
        "admin/apps.html",
        apps=apps,
        issuer=_issuer(),
        action=ActionForm(),
        error=error,
        values=request.form if error else {},
    )
    return page, status


@bp.get("/admin/apps")
@admin_required
def apps() -> tuple[str, int]:
    return _page()


@bp.post("/admin/apps")
@admin_required
def add_app() -> tuple[str, int]:
    if not ActionForm().validate_on_submit():
        return _page(ValidationError("This form expired. Try again."), 400)
    me = current()
    try:
        made = oidc_clients.add_client(
            db(),
            services().hasher,
            me.tenant,
            name=request.form.get("name", ""),
            redirect_uris=_lines("redirect_uris"),
            public=bool(request.form.get("public")),
            post_logout_redirect_uris=_lines("post_logout_uris"),
            backchannel_logout_uri=request.form.get("backchannel_logout_uri", "").strip() or None,
            now=now(),
            actor_id=me.user.id,
            origin=origin(),
        )
    except ValidationError as problem:
        return _page(problem, 422)
    page = render_template(
        "admin/apps_created.html", client=made.client, secret=made.secret, issuer=_issuer()
    )
    return page, 200


@bp.post("/admin/apps/<client_id>/secret")
@admin_required
def rotate_secret(client_id: str) -> tuple[str, int] | Response:
    if not ActionForm().validate_on_submit():
        return redirect(url_for("admin_apps.apps"))  # type: ignore[return-value]
    me = current()
    client = oidc_clients.tenant_client(db(), me.tenant.id, client_id)
    secret = oidc_clients.rotate_secret(
        db(), services().hasher, client, now=now(), actor_id=me.user.id, origin=origin()
    )
    page = render_template(
        "admin/apps_created.html", client=client, secret=secret, issuer=_issuer(), rotated=True
    )
    return page, 200


@bp.post("/admin/apps/<client_id>/sign-ins/<grant_id>/end")
@admin_required
def end_sign_in(client_id: str, grant_id: str) -> Response:
    if ActionForm().validate_on_submit():
        me = current()
        client = oidc_clients.tenant_client(db(), me.tenant.id, client_id)
        backchannel.end_sign_in_as_admin(
            db(), client, grant_id, now=now(), admin_id=me.user.id, origin=origin()
        )
    return redirect(url_for("admin_apps.apps"))  # type: ignore[return-value]
