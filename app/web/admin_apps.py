"""The tenant admin's apps (Holdfast as their OpenID Provider, docs/oidc.md): register
one (its secret shown once), and on each app's own page choose who may use it, make a
new secret, see its active sign-ins and end them (the app gets its back-channel logout),
and remove it."""

from __future__ import annotations

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _

from app.core import backchannel, oidc_access, oidc_clients
from app.core.errors import N_, ValidationError
from app.models import OidcClient
from app.web.access import admin_required
from app.web.authentication import current, origin
from app.web.forms import ActionForm
from app.web.i18n import said
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
        error=said(error) if error else None,
        values=request.form if error else {},
    )
    return page, status


def _client(client_id: str) -> OidcClient:
    return oidc_clients.tenant_client(db(), current().tenant.id, client_id)


@bp.get("/admin/apps")
@admin_required
def apps() -> tuple[str, int]:
    return _page()


@bp.post("/admin/apps")
@admin_required
def add_app() -> tuple[str, int]:
    if not ActionForm().validate_on_submit():
        return _page(ValidationError(N_("This form expired. Try again.")), 400)
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


def _app_page(
    client: OidcClient, *, error: ValidationError | None = None, status: int = 200
) -> tuple[str, int]:
    chosen = {person.id for person in oidc_clients.chosen_people(db(), client)}
    if error is not None:
        chosen = set(request.form.getlist("people"))
    page = render_template(
        "admin/app.html",
        client=client,
        sign_ins=backchannel.active_sign_ins(db(), client),
        people=oidc_clients.people_to_choose(db(), client.tenant_id),
        chosen=chosen,
        restricted=(request.form.get("who") == "chosen") if error else client.restricted,
        issuer=_issuer(),
        action=ActionForm(),
        error=said(error) if error else None,
    )
    return page, status


@bp.get("/admin/apps/<client_id>")
@admin_required
def app_page(client_id: str) -> tuple[str, int]:
    """One app: who may use it, its secret, its active sign-ins, removing it."""
    return _app_page(_client(client_id))


@bp.post("/admin/apps/<client_id>/people")
@admin_required
def set_people(client_id: str) -> tuple[str, int] | Response:
    """Everyone of the tenant, or only the people ticked; the sign-ins of people who may
    no longer use the app end (with their back-channel logout)."""
    client = _client(client_id)
    if not ActionForm().validate_on_submit():
        expired = ValidationError(N_("This form expired. Try again."))
        return _app_page(client, error=expired, status=400)
    me = current()
    try:
        oidc_access.set_people(
            db(),
            client,
            restricted=request.form.get("who") == "chosen",
            user_ids=request.form.getlist("people"),
            now=now(),
            actor_id=me.user.id,
            origin=origin(),
        )
    except ValidationError as problem:
        return _app_page(client, error=problem, status=422)
    flash(_("Saved. People who may no longer use the app were signed out of it."))
    return redirect(url_for("admin_apps.app_page", client_id=client.id))  # type: ignore[return-value]


@bp.post("/admin/apps/<client_id>/remove")
@admin_required
def remove_app(client_id: str) -> Response:
    """Remove the app (asked to confirm in the page's dialog, naming the app)."""
    client = _client(client_id)
    if ActionForm().validate_on_submit():
        me = current()
        oidc_access.remove_client(db(), client, now=now(), actor_id=me.user.id, origin=origin())
        flash(_("%(app)s was removed. Its sign-ins have ended.", app=client.name))
        return redirect(url_for("admin_apps.apps"))  # type: ignore[return-value]
    return redirect(url_for("admin_apps.app_page", client_id=client.id))  # type: ignore[return-value]


@bp.post("/admin/apps/<client_id>/secret")
@admin_required
def rotate_secret(client_id: str) -> tuple[str, int] | Response:
    if not ActionForm().validate_on_submit():
        return redirect(url_for("admin_apps.apps"))  # type: ignore[return-value]
    me = current()
    client = _client(client_id)
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
    client = _client(client_id)
    if ActionForm().validate_on_submit():
        me = current()
        backchannel.end_sign_in_as_admin(
            db(), client, grant_id, now=now(), admin_id=me.user.id, origin=origin()
        )
    if request.args.get("from") == "app":
        return redirect(url_for("admin_apps.app_page", client_id=client.id))  # type: ignore[return-value]
    return redirect(url_for("admin_apps.apps"))  # type: ignore[return-value]
