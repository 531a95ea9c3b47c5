"""The tamper-evident audit trail: per-tenant hash chains, and verification catching an
edited, a deleted, a reordered, a truncated or an unsealed row."""

from __future__ import annotations

import itertools
import threading
from datetime import timedelta
from typing import Any

import pytest
from alembic import command
from flask import Flask
from sqlalchemy import delete, func, insert, select, text, update

from app import migrate
from app.clock import FrozenClock
from app.core import audit, events
from app.models import AuditHead, Event, Tenant, User, UserSession
from app.services import Services
from testkit.mail import Mailbox
from testkit.rows import Factory
from testkit.web import login


def chain_rows(db: Any, tenant_id: str) -> list[Event]:
    return list(db.scalars(select(Event).where(Event.tenant_id == tenant_id).order_by(Event.seq)))


def verdict_of(services: Services, chain: str) -> audit.Verdict:
    with services.session() as db:
        return audit.verify(db, chain)


def run_verify(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["audit", "verify", *args])


@pytest.fixture
def busy(make: Factory, tenant: Tenant, member: User, client: Any, mailbox: Mailbox) -> Tenant:
    """A tenant whose chain holds a sign-in and a sign-out (about 6 events)."""
    assert login(client, mailbox, member.email).status_code == 302
    page = client.get("/devices")
    from testkit.web import csrf_from

    client.post("/logout", data={"csrf_token": csrf_from(page.text)})
    return tenant


def test_each_tenant_has_its_own_intact_chain(
    app: Flask, services: Services, make: Factory, busy: Tenant
) -> None:
    other = make.tenant("globex")
    make.user("kim@globex.test", other)
    with services.session() as db:
        rows = chain_rows(db, busy.id)
        others = chain_rows(db, other.id)
        head = db.get_one(AuditHead, busy.id)
    kinds = [e.kind for e in rows]
    assert kinds[:2] == ["tenant.created", "user.created"]
    assert "session.created" in kinds and "session.ended" in kinds
    assert [e.seq for e in rows] == list(range(1, len(rows) + 1))
    assert rows[0].prev_hash == audit.GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))
    assert head.last_hash == rows[-1].hash and head.sealed == len(rows)
    # The other tenant's chain starts from its own genesis.
    assert [e.kind for e in others] == ["tenant.created", "user.created"]
    assert others[0].prev_hash == audit.GENESIS
    for chain in (busy.id, other.id):
        verdict = verdict_of(services, chain)
        assert verdict.intact, verdict.problem
    result = run_verify(app)
    assert result.exit_code == 0, result.output
    assert f"acme: {len(rows)} events verified" in result.output
    assert "globex: 2 events verified" in result.output


def test_an_edited_event_is_caught(app: Flask, services: Services, busy: Tenant) -> None:
    with services.session(write=True) as db:
        target = chain_rows(db, busy.id)[2]
        db.execute(
            text("UPDATE events SET kind = 'session.extended' WHERE id = :id"), {"id": target.id}
        )
        db.commit()
    verdict = verdict_of(services, busy.id)
    assert not verdict.intact
    assert verdict.broken_at is not None and verdict.broken_at.id == target.id
    assert "changed after it was written" in (verdict.problem or "")
    assert verdict.checked == 2
    result = run_verify(app, "--tenant", "acme")
    assert result.exit_code == 1
    assert f"event #{target.id}" in result.output and "changed" in result.output


def test_an_edited_detail_or_address_is_caught(services: Services, busy: Tenant) -> None:
    with services.session(write=True) as db:
        rows = chain_rows(db, busy.id)
        created = next(e for e in rows if e.kind == "session.created")
        db.execute(
            update(Event)
            .where(Event.id == created.id)
            .values(details={**created.details, "device_id": "dev_someone_else"})
        )
        db.commit()
    assert verdict_of(services, busy.id).broken_at.id == created.id  # type: ignore[union-attr]
    with services.session(write=True) as db:
        db.execute(update(Event).where(Event.id == created.id).values(details=created.details))
        db.execute(update(Event).where(Event.id == created.id).values(ip="198.51.100.1"))
        db.commit()
    verdict = verdict_of(services, busy.id)
    assert verdict.broken_at is not None and verdict.broken_at.id == created.id


def test_a_deleted_event_is_caught(app: Flask, services: Services, busy: Tenant) -> None:
    with services.session(write=True) as db:
        rows = chain_rows(db, busy.id)
        db.execute(delete(Event).where(Event.id == rows[2].id))
        db.commit()
    verdict = verdict_of(services, busy.id)
    assert verdict.broken_at is not None and verdict.broken_at.id == rows[3].id
    assert "does not link" in (verdict.problem or "")
    result = run_verify(app)
    assert result.exit_code == 1 and f"event #{rows[3].id}" in result.output


def test_reordered_events_are_caught(services: Services, busy: Tenant) -> None:
    with services.session(write=True) as db:
        rows = chain_rows(db, busy.id)
        first, second, third = ((e.id, e.seq, e.hash) for e in rows[:3])
    # Swap the second and third events' places (and their links, to make it look tidy).
    with services.session(write=True) as db:
        db.execute(
            text("UPDATE events SET seq = :seq, prev_hash = :prev WHERE id = :id"),
            [
                {"id": second[0], "seq": -1, "prev": third[2]},
                {"id": third[0], "seq": second[1], "prev": first[2]},
                {"id": second[0], "seq": third[1], "prev": third[2]},
            ],
        )
        db.commit()
    verdict = verdict_of(services, busy.id)
    assert not verdict.intact
    assert verdict.broken_at is not None and verdict.broken_at.id == third[0]
    assert verdict.checked == 1


def test_reordered_timestamps_are_caught(services: Services, busy: Tenant) -> None:
    with services.session(write=True) as db:
        rows = chain_rows(db, busy.id)
        db.execute(
            update(Event).where(Event.id == rows[1].id).values(at=rows[1].at - timedelta(hours=1))
        )
        db.commit()
    verdict = verdict_of(services, busy.id)
    assert verdict.broken_at is not None and verdict.broken_at.id == rows[1].id


def test_deleting_the_newest_events_is_caught(services: Services, busy: Tenant) -> None:
    with services.session(write=True) as db:
        rows = chain_rows(db, busy.id)
        db.execute(delete(Event).where(Event.id == rows[-1].id))
        db.commit()
    verdict = verdict_of(services, busy.id)
    assert not verdict.intact and verdict.broken_at is None
    assert verdict.checked == len(rows) - 1
    assert "newest events were deleted" in (verdict.problem or "")


def test_an_event_written_around_the_trail_is_caught(
    services: Services, clock: FrozenClock, busy: Tenant
) -> None:
    with services.session(write=True) as db:
        db.execute(
            text(
                "INSERT INTO events (tenant_id, at, kind, ip, details) "
                "VALUES (:t, :at, 'user.created', '', '{}')"
            ),
            {"t": busy.id, "at": clock.now().replace(tzinfo=None)},
        )
        db.commit()
    verdict = verdict_of(services, busy.id)
    assert verdict.broken_at is not None and verdict.broken_at.seq is None
    assert "never sealed" in (verdict.problem or "")


def test_bulk_loaded_events_can_be_sealed_by_their_loader(
    services: Services, clock: FrozenClock, busy: Tenant
) -> None:
    """The demo seeder inserts made-up events with Core; it seals them afterwards."""
    with services.session(write=True) as db:
        for number in range(5):
            db.execute(
                insert(Event).values(
                    tenant_id=busy.id,
                    at=clock.now(),
                    kind="code.failed",
                    ip=f"203.0.113.{number}",
                    details={"attempts": number},
                )
            )
        db.commit()
    assert not verdict_of(services, busy.id).intact
    with services.session(write=True) as db:
        assert audit.seal_unsealed(db, busy.id, batch=2) == 5
        db.commit()
    verdict = verdict_of(services, busy.id)
    assert verdict.intact, verdict.problem
    with services.session(write=True) as db:
        events.record(db, "after.bulk", now=clock.now(), tenant_id=busy.id)
        db.commit()
    with services.session(write=True) as db:
        assert audit.seal_unsealed(db, busy.id) == 0
    assert verdict_of(services, busy.id).intact


def test_a_rolled_back_event_leaves_no_trace(services: Services, tenant: Tenant) -> None:
    with services.session(write=True) as db:
        before = db.get_one(AuditHead, tenant.id).last_hash
        events.record(db, "tenant.renamed", now=services.clock.now(), tenant_id=tenant.id)
        db.flush()
        db.rollback()
        events.record(db, "tenant.noted", now=services.clock.now(), tenant_id=tenant.id)
        db.commit()
    with services.session() as db:
        rows = chain_rows(db, tenant.id)
        assert [e.kind for e in rows][-1] == "tenant.noted"
        assert rows[-1].prev_hash == before
    assert verdict_of(services, tenant.id).intact


def test_events_in_a_savepoint_are_sealed_by_the_outer_commit(
    services: Services, tenant: Tenant
) -> None:
    with services.session(write=True) as db:
        with db.begin_nested():
            events.record(db, "inner.kept", now=services.clock.now(), tenant_id=tenant.id)
        try:
            with db.begin_nested():
                events.record(db, "inner.dropped", now=services.clock.now(), tenant_id=tenant.id)
                raise RuntimeError("roll this savepoint back")
        except RuntimeError:
            pass
        events.record(db, "outer", now=services.clock.now(), tenant_id=tenant.id)
        db.commit()
    with services.session() as db:
        kinds = [e.kind for e in chain_rows(db, tenant.id)]
    assert kinds[-2:] == ["inner.kept", "outer"] and "inner.dropped" not in kinds
    assert verdict_of(services, tenant.id).intact


def test_concurrent_writers_never_fork_a_chain(services: Services, tenant: Tenant) -> None:
    writers, each = 4, 8
    start = threading.Barrier(writers)
    failures: list[BaseException] = []

    def write(number: int) -> None:
        try:
            start.wait()
            for step in range(each):
                with services.session(write=True) as db:
                    events.record(
                        db,
                        "load.test",
                        now=services.clock.now(),
                        tenant_id=tenant.id,
                        writer=number,
                        step=step,
                    )
                    events.record(db, "load.pair", now=services.clock.now(), tenant_id=tenant.id)
                    db.commit()
        except BaseException as error:  # reported below
            failures.append(error)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures
    with services.session() as db:
        rows = chain_rows(db, tenant.id)
    assert len(rows) == 1 + writers * each * 2  # tenant.created, then the writers' pairs
    assert [e.seq for e in rows] == list(range(1, len(rows) + 1))
    assert len({e.prev_hash for e in rows}) == len(rows)  # no two events share a parent
    # A transaction's two events stay next to each other in the chain.
    for first, second in zip(rows[1::2], rows[2::2], strict=True):
        assert (first.kind, second.kind) == ("load.test", "load.pair")
    verdict = verdict_of(services, tenant.id)
    assert verdict.intact, verdict.problem


def test_an_event_written_by_a_get_request_chains(
    services: Services,
    clock: FrozenClock,
    tenant: Tenant,
    member: User,
    client: Any,
    mailbox: Mailbox,
) -> None:
    """The hot path marks an idle session ended during a GET (a deferred transaction)."""
    assert login(client, mailbox, member.email).status_code == 302
    clock.advance(hours=2)
    page = client.get("/devices")
    assert page.status_code == 302 and "reason=idle_expired" in page.location
    with services.session() as db:
        rows = chain_rows(db, tenant.id)
        ended = db.scalar(select(UserSession.end_reason))
    assert ended == "idle_expired"
    assert rows[-1].kind == "session.ended" and rows[-1].details["reason"] == "idle_expired"
    assert verdict_of(services, tenant.id).intact


def test_events_without_a_tenant_have_their_own_chain(
    app: Flask, services: Services, client: Any
) -> None:
    from testkit.web import request_code

    request_code(client, "nobody@nowhere.test")
    request_code(client, "nobody-else@nowhere.test")
    with services.session() as db:
        rows = list(db.scalars(select(Event).where(Event.tenant_id.is_(None)).order_by(Event.seq)))
    assert [e.kind for e in rows] == ["code.requested", "code.requested"]
    assert verdict_of(services, audit.NO_TENANT).intact
    assert "(no tenant): 2 events verified" in run_verify(app).output


def test_pseudonyms_and_networks() -> None:
    key = "ab" * 32
    alias = audit.pseudonym(key, "usr_abc")
    assert audit.PSEUDONYM.match(alias)
    assert audit.pseudonym(key, alias) == alias
    assert audit.pseudonym("cd" * 32, "usr_abc") != alias
    assert audit.network("203.0.113.77") == "203.0.113.0/24"
    assert audit.network("203.0.113.0/24") == "203.0.113.0/24"
    assert audit.network("2001:db8:1234:5678::1") == "2001:db8:1234::/48"
    assert audit.network("::ffff:192.0.2.9") == "192.0.2.0/24"
    assert audit.network("not an address") == ""
    assert audit.network("") == ""


def test_upgrade_seals_events_written_before_the_chain_existed(
    services: Services, make: Factory, busy: Tenant
) -> None:
    """Upgrading a database that has events but no chain yet seals them in order."""
    engine = services.database.engine
    before = verdict_of(services, busy.id).checked
    config = migrate.alembic_config(engine)
    config.attributes["sealer"] = services.sealer
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "202611230927")
    migrate.upgrade(engine, sealer=services.sealer)
    verdict = verdict_of(services, busy.id)
    assert verdict.intact, verdict.problem
    assert verdict.checked == before
    with services.session() as db:
        assert db.scalar(select(func.count()).select_from(Event).where(Event.hash.is_(None))) == 0
