"""Taking an app away: choosing which people may use it, and removing it. Both end the
sign-ins that are no longer allowed, at once, like any ended sign-in: their tokens die
and each app with a back-channel URI gets its logout token through the outbox
(app.core.backchannel).

* **Who may use an app.** An app is for everyone of the tenant (the default, as in
  Keycloak, authentik and Clerk without an access policy) or only for the people chosen
  for it (authentik's "policy bindings", Keycloak's client roles, reduced to a list).
  The check is made at the authorization request (``access_denied`` to the app) and on
  every use of a token (app.core.oidc_grants), so nothing outlives a change.
* **Removing an app** keeps its row (``removed_at``) for the audit trail: its client id
  is refused everywhere from then on, its sign-ins end, and it is still sent the logout
  tokens of the sign-ins its removal ended, so it can drop its own sessions too.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.core import backchannel, events
from app.core.errors import N_, ValidationError
from app.core.events import Origin
from app.core.oidc_grants import LiveSession
from app.models import OidcClient, OidcClientPerson, OidcGrant, User

MAX_PEOPLE = 1000


def set_people(
    db: Session,
    client: OidcClient,
    *,
    restricted: bool,
    user_ids: Iterable[str] | None = None,
    now: datetime,
    actor_id: str | None = None,
    origin: Origin = events.SYSTEM,
) -> list[OidcGrant]:
    """Open ``client`` to everyone of its tenant (``restricted`` False) or only to the
    people chosen; ``user_ids`` replaces the list of chosen people (None keeps it: it is
    kept while the app is open to everyone). The sign-ins of people who may no longer
    use the app end now. Records ``oidc.client_people_changed`` when anything changed.
    Returns the grants ended. Raises ValidationError (``people``) for an id that is not
    a person of the app's tenant, or too many."""
    chosen = {
        row.user_id
        for row in db.scalars(
            select(OidcClientPerson)
            .where(OidcClientPerson.client_id == client.id)
            .execution_options(all_tenants=True)
        )
    }
    wanted = chosen if user_ids is None else check_people(db, client.tenant_id, user_ids)
    added, removed = sorted(wanted - chosen), sorted(chosen - wanted)
    if removed:
        db.execute(
            delete(OidcClientPerson)
            .where(OidcClientPerson.client_id == client.id, OidcClientPerson.user_id.in_(removed))
            .execution_options(synchronize_session=False, all_tenants=True)
        )
    for user_id in added:
        db.add(
            OidcClientPerson(
                tenant_id=client.tenant_id, client_id=client.id, user_id=user_id, added_at=now
            )
        )
    was_restricted = client.restricted
    client.restricted = restricted
    db.flush()
    ended: list[OidcGrant] = []
    if restricted:
        signed_in = set(
            db.scalars(
                select(OidcGrant.user_id)
                .where(OidcGrant.client_id == client.id, OidcGrant.ended_at.is_(None))
                .distinct()
                .execution_options(all_tenants=True)
            )
        )
        ended = backchannel.sign_out_of_client(
            db, client, "access_removed", now=now, user_ids=signed_in - wanted
        )
    if added or removed or was_restricted != restricted:
        events.record(
            db,
            "oidc.client_people_changed",
            now=now,
            tenant_id=client.tenant_id,
            origin=origin,
            actor_id=actor_id,
            client_id=client.id,
            name=client.name,
            restricted=restricted,
            added=added,
            removed=removed,
            sign_ins_ended=len(ended),
        )
    return ended


def check_people(db: Session, tenant_id: str, user_ids: Iterable[str]) -> set[str]:
    """``user_ids`` as a set, if each is a person of ``tenant_id``: a caller that changes
    other things first checks here, so a refusal leaves everything as it was. Raises
    ValidationError (``people``)."""
    wanted = set(user_ids)
    if len(wanted) > MAX_PEOPLE:
        raise ValidationError(
            N_("Choose at most %(max)s people."), words={"max": MAX_PEOPLE}, field="people"
        )
    if any(not isinstance(user_id, str) or len(user_id) > 40 for user_id in wanted):
        raise ValidationError(N_("That is not a person of this organisation."), field="people")
    known = set(
        db.scalars(
            select(User.id)
            .where(User.tenant_id == tenant_id, User.id.in_(list(wanted)))
            .execution_options(all_tenants=True)
        )
    )
    unknown = sorted(wanted - known)
    if unknown:
        raise ValidationError(
            N_("%(id)s is not a person of this organisation."),
            words={"id": unknown[0]},
            field="people",
        )
    return wanted


def remove_client(
    db: Session,
    client: OidcClient,
    *,
    now: datetime,
    actor_id: str | None = None,
    origin: Origin = events.SYSTEM,
) -> list[OidcGrant]:
    """Remove ``client``: its id is refused from now on (authorization, tokens,
    introspection, logout), every sign-in to it ends and its tokens die; the logout
    tokens of those sign-ins are still sent to it. Records ``oidc.client_removed``.
    Returns the grants ended. Removing a removed app changes nothing."""
    if client.removed_at is not None:
        return []
    ended = backchannel.sign_out_of_client(db, client, "app_removed", now=now)
    client.removed_at = now
    db.flush()
    events.record(
        db,
        "oidc.client_removed",
        now=now,
        tenant_id=client.tenant_id,
        origin=origin,
        actor_id=actor_id,
        client_id=client.id,
        name=client.name,
        sign_ins_ended=len(ended),
    )
    return ended


def refuse(
    db: Session, client: OidcClient, signed_in: LiveSession, *, now: datetime, origin: Origin
) -> None:
    """Record that ``signed_in``'s person asked to sign in to ``client`` and may not
    (``oidc.access_denied``); the protocol answers the app ``access_denied``."""
    events.record(
        db,
        "oidc.access_denied",
        now=now,
        tenant_id=client.tenant_id,
        origin=origin,
        actor_id=signed_in.user.id,
        subject_id=signed_in.user.id,
        session_id=signed_in.session.id,
        client_id=client.id,
        name=client.name,
    )
