"""GDPR: a person downloads all their data (and nobody else's); an admin erases a person,
leaving exactly the pseudonymous audit trail, and the chain still verifies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from app.clock import FrozenClock
from app.core import admin as admin_core
from app.core import alerts, audit
from app.core.events import Origin
from app.core.session_check import check_session
from app.db import scope_to_tenant
from app.models import (
    Alert,
    Challenge,
    Device,
    Event,
    NotMeToken,
    Tenant,
    User,
    UserSession,
)
from app.services import Services
from testkit.mail import Mailbox
from testkit.rows import Factory
from testkit.values import UA_IPAD
from testkit.web import csrf_from, login

SAM_IP, SAM_TABLET_IP, KIM_IP, ADA_IP = "203.0.113.5", "203.0.113.99", "198.51.100.7", "192.0.2.200"


def from_address(app: Flask, ip: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = ip
    return client


@contextmanager
def acting_as(services: Services, clock: FrozenClock, client: FlaskClient) -> Iterator[Any]:
    """The client's live session as the core sees it, on a write session (committed)."""
    cookie = client.get_cookie("holdfast_session")
    assert cookie is not None
    claims = services.keys.verify(cookie.value, clock.now())
    with services.session(write=True) as db:
        scope_to_tenant(db, claims.tenant_id)
        current = check_session(db, claims, now=clock.now(), touch=False)
        yield db, current
        db.commit()


@pytest.fixture
def people(
    app: Flask,
    services: Services,
    make: Factory,
    clock: FrozenClock,
    mailbox: Mailbox,
    tenant: Tenant,
) -> dict[str, Any]:
    """Sam signs in on a laptop and a trusted tablet; Kim on her laptop; Ada (admin) ends
    Sam's tablet session; an alert is raised about Sam."""
    sam = make.user("sam@acme.test", tenant, name="Sam Sample")
    kim = make.user("kim@acme.test", tenant)
    ada = make.user("ada@acme.test", tenant, role="admin")
    clients = {
        "sam": from_address(app, SAM_IP),
        "tablet": from_address(app, SAM_TABLET_IP),
        "kim": from_address(app, KIM_IP),
        "ada": from_address(app, ADA_IP),
    }
    assert login(clients["sam"], mailbox, sam.email).status_code == 302
    assert (
        login(clients["tablet"], mailbox, sam.email, trust=True, user_agent=UA_IPAD).status_code
        == 302
    )
    assert login(clients["kim"], mailbox, kim.email).status_code == 302
    assert login(clients["ada"], mailbox, ada.email).status_code == 302
    page = clients["tablet"].get("/devices")
    assert page.status_code == 200
    with services.session() as db:
        tablet_session = db.scalars(
            select(UserSession)
            .where(UserSession.user_id == sam.id)
            .order_by(UserSession.created_at.desc(), UserSession.ip.desc())
        ).first()
        assert tablet_session is not None and tablet_session.ip == SAM_TABLET_IP
    with acting_as(services, clock, clients["ada"]) as (db, me):
        admin_core.end_session_as_admin(
            db, me, tablet_session.id, now=clock.now(), origin=Origin(ip=ADA_IP)
        )
    with services.session(write=True) as db:
        alerts.raise_alert(
            db,
            "new_device",
            "low",
            tenant_id=tenant.id,
            now=clock.now(),
            summary="Sam signed in on a new device",
            user_id=sam.id,
            session_id=tablet_session.id,
            origin=Origin(ip=SAM_TABLET_IP),
        )
        db.commit()
    return {"sam": sam, "kim": kim, "ada": ada, "clients": clients, "tenant": tenant}


def ids_of(db: Session, user: User) -> dict[str, set[str]]:
    return {
        "sessions": set(db.scalars(select(UserSession.id).where(UserSession.user_id == user.id))),
        "devices": set(db.scalars(select(Device.id).where(Device.user_id == user.id))),
        "challenges": set(db.scalars(select(Challenge.id).where(Challenge.user_id == user.id))),
        "alerts": set(db.scalars(select(Alert.id).where(Alert.user_id == user.id))),
    }


# --- the data download --------------------------------------------------------------------


def test_the_download_holds_everything_about_the_person_and_nothing_else(
    services: Services, people: dict[str, Any]
) -> None:
    sam, kim, ada = people["sam"], people["kim"], people["ada"]
    client = people["clients"]["sam"]
    with services.session() as db:
        mine, hers, admins = ids_of(db, sam), ids_of(db, kim), ids_of(db, ada)
        my_events = db.scalar(
            select(func.count())
            .select_from(Event)
            .where(or_(Event.actor_id == sam.id, Event.subject_id == sam.id))
        )
    page = client.get("/account/data")
    assert page.status_code == 200 and 'id="download-data"' in page.text
    response = client.post("/account/data", data={"csrf_token": csrf_from(page.text)})
    assert response.status_code == 200
    assert response.headers["Content-Disposition"].startswith("attachment; filename=")
    text = response.get_data(as_text=True)
    data = json.loads(text)

    assert data["person"]["id"] == sam.id and data["person"]["email"] == sam.email
    assert data["person"]["name"] == "Sam Sample"
    assert data["organisation"]["name"] == "Acme"
    assert {d["id"] for d in data["devices"]} == mine["devices"]
    assert {s["id"] for s in data["sessions"]} == mine["sessions"] and len(mine["sessions"]) == 2
    assert {c["id"] for c in data["signInCodes"]} == mine["challenges"]
    assert {a["id"] for a in data["alerts"]} == mine["alerts"] and len(mine["alerts"]) >= 1
    assert {s["ip"] for s in data["sessions"]} == {SAM_IP, SAM_TABLET_IP}
    assert any(d["trustedUntil"] for d in data["devices"])
    assert len(data["events"]) == my_events
    kinds = [e["kind"] for e in data["events"]]
    assert kinds.count("session.created") == 2 and "device.trusted" in kinds
    assert "alert.raised" in kinds and "user.created" in kinds
    ended = next(e for e in data["events"] if e["kind"] == "session.ended")
    assert ended["by"] == "administrator" and ended["to"] == "you" and "ip" not in ended
    assert ended["details"]["reason"] == "revoked_by_admin"

    # Nothing about Kim or Ada: no email, id, session, device or address of theirs.
    for other in (kim, ada):
        assert other.email not in text and other.id not in text
    for found in (hers, admins):
        for value in set().union(*found.values()):
            assert value not in text
    assert KIM_IP not in text and ADA_IP not in text
    # No secrets either.
    for secret_field in ("code_hash", "cookie_hash", "totp_secret", "codeHash", "cookieHash"):
        assert secret_field not in text

    with services.session() as db:
        last = db.scalars(select(Event).order_by(Event.id.desc())).first()
    assert last is not None and last.kind == "user.data_exported"
    assert last.actor_id == last.subject_id == sam.id


def test_the_download_needs_a_signed_in_person_and_a_form(
    app: Flask, people: dict[str, Any]
) -> None:
    stranger = app.test_client()
    assert stranger.get("/account/data").status_code == 302
    assert stranger.post("/account/data").status_code in (302, 400)
    client = people["clients"]["sam"]
    assert client.post("/account/data").status_code == 400  # no CSRF token
    assert client.get("/account/data.json").status_code == 404


# --- erasure ------------------------------------------------------------------------------


def table_counts(db: Session) -> dict[str, int]:
    def count(model: Any) -> int:
        return db.scalar(select(func.count()).select_from(model)) or 0

    return {
        "users": count(User),
        "sessions": count(UserSession),
        "devices": count(Device),
        "challenges": count(Challenge),
        "events": count(Event),
        "alerts": count(Alert),
        "not_me_tokens": count(NotMeToken),
    }


def test_an_admin_erases_a_person(services: Services, people: dict[str, Any]) -> None:
    sam, kim, ada = people["sam"], people["kim"], people["ada"]
    admin = people["clients"]["ada"]
    with services.session() as db:
        before = table_counts(db)
        mine, hers = ids_of(db, sam), ids_of(db, kim)
        live = db.scalar(
            select(func.count())
            .select_from(UserSession)
            .where(UserSession.user_id == sam.id, UserSession.ended_at.is_(None))
        )
        my_events = db.scalar(
            select(func.count())
            .select_from(Event)
            .where(or_(Event.actor_id == sam.id, Event.subject_id == sam.id))
        )
        my_not_me = db.scalar(
            select(func.count()).select_from(NotMeToken).where(NotMeToken.user_id == sam.id)
        )
        sam_row = db.get_one(User, sam.id)
        sam_row.totp_secret = b"sealed-secret-bytes"
        db.commit()
    assert live == 1

    page = admin.get(f"/admin/users/{sam.id}/erase")
    assert page.status_code == 200 and sam.email in page.text
    token = csrf_from(page.text)
    wrong = admin.post(
        f"/admin/users/{sam.id}/erase", data={"csrf_token": token, "confirm": kim.email}
    )
    assert wrong.status_code == 422 and "exactly" in wrong.text
    with services.session() as db:
        assert table_counts(db) == before

    done = admin.post(
        f"/admin/users/{sam.id}/erase", data={"csrf_token": token, "confirm": sam.email.upper()}
    )
    assert done.status_code == 200, done.text
    with services.session() as db:
        key = audit.chain_key(db, people["tenant"].id)
        alias = audit.pseudonym(key, sam.id)
        assert alias in done.text
        after = table_counts(db)
        assert after == {
            "users": before["users"] - 1,
            "sessions": before["sessions"] - len(mine["sessions"]),
            "devices": before["devices"] - len(mine["devices"]),
            "challenges": before["challenges"] - len(mine["challenges"]),
            # the live session's session.ended, and user.erased
            "events": before["events"] + live + 1,
            "alerts": before["alerts"],
            "not_me_tokens": before["not_me_tokens"] - my_not_me,
        }
        assert db.get(User, sam.id) is None
        # Kim is untouched.
        assert ids_of(db, kim) == hers and db.get(User, kim.id) is not None

        every = list(db.scalars(select(Event)))
        text = json.dumps(
            [[e.actor_id, e.subject_id, e.session_id, e.ip, e.details] for e in every]
        )
        assert sam.id not in text and sam.email not in text
        for value in set().union(*mine.values()) - mine["alerts"]:
            assert value not in text
        assert SAM_IP not in text and SAM_TABLET_IP not in text
        assert "203.0.113.0/24" in text
        theirs = [e for e in every if alias in (e.actor_id, e.subject_id)]
        assert len(theirs) == my_events + live + 1
        erased = every[-1]
        assert erased.kind == "user.erased" and erased.actor_id == ada.id
        assert erased.subject_id == alias and erased.details["pseudonym"] == alias
        assert erased.details["deleted"]["sessions"] == len(mine["sessions"])
        ended = [e for e in theirs if e.kind == "session.ended"]
        assert "user_erased" in {e.details["reason"] for e in ended}
        # Events by Ada about Sam keep Ada, and her address.
        by_ada = next(e for e in ended if e.details["reason"] == "revoked_by_admin")
        assert by_ada.actor_id == ada.id and by_ada.ip == ADA_IP
        kept = list(db.scalars(select(Alert).where(Alert.id.in_(mine["alerts"]))))
        assert len(kept) == len(mine["alerts"])
        assert {a.user_id for a in kept} == {alias}
        assert {a.ip for a in kept} == {"203.0.113.0/24"}
        assert SAM_TABLET_IP not in json.dumps([a.details for a in kept])
        verdict = audit.verify(db, people["tenant"].id)
        assert verdict.intact, verdict.problem

    # Sam is signed out everywhere, and a second erasure finds nobody.
    assert people["clients"]["sam"].get("/devices").status_code == 302
    again = admin.post(
        f"/admin/users/{sam.id}/erase", data={"csrf_token": token, "confirm": sam.email}
    )
    assert again.status_code == 404
    with services.session() as db:
        assert table_counts(db) == after


def test_erasure_is_refused_for_oneself_members_and_other_tenants(
    app: Flask, services: Services, make: Factory, mailbox: Mailbox, people: dict[str, Any]
) -> None:
    ada, sam = people["ada"], people["sam"]
    admin = people["clients"]["ada"]
    globex = make.tenant("globex")
    outsider = make.user("zed@globex.test", globex)
    with services.session() as db:
        before = table_counts(db)
    page = admin.get(f"/admin/users/{ada.id}/erase")
    assert page.status_code == 200 and "cannot erase your own account" in page.text
    own = admin.post(
        f"/admin/users/{ada.id}/erase",
        data={"csrf_token": csrf_from(page.text), "confirm": ada.email},
    )
    assert own.status_code == 422 and "Ask another admin" in own.text
    assert admin.get(f"/admin/users/{outsider.id}/erase").status_code == 404
    member = people["clients"]["kim"]
    assert member.get(f"/admin/users/{sam.id}/erase").status_code == 403
    no_csrf = admin.post(f"/admin/users/{sam.id}/erase", data={"confirm": sam.email})
    assert no_csrf.status_code == 400
    with services.session() as db:
        assert table_counts(db) == before
