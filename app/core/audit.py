"""The tamper-evident audit trail: every tenant's events form a hash chain.

Each event carries ``seq`` (its place in its tenant's chain), ``prev_hash`` (the hash of
the event before it) and ``hash`` = SHA-256 over ``prev_hash`` and the event's *sealed
form* (a canonical JSON of its fields, described below). Editing an event breaks its own
hash; deleting or reordering events breaks the link of the event after them; deleting the
newest events leaves the chain's head (``audit_heads.last_hash``) pointing at nothing.
:func:`verify` walks a chain and names the first broken link.

**Sealing happens at commit.** :func:`app.core.events.record` only adds the event and
notes it in the session; just before the outermost commit, :func:`seal_pending` locks
the head row of each chain it writes to (``SELECT … FOR UPDATE``, in sorted order so two
transactions never deadlock on heads), numbers and hashes the events in the order they
were recorded, and moves the heads. Concurrent writers of one tenant therefore queue for
a few milliseconds at commit and never fork the chain, and the lock is held only while
committing. On SQLite every write transaction already holds the database's single write
lock; a GET request (deferred transaction) that ends an expired session takes that lock
at its first write, and SQLite refuses the write outright if another transaction
committed since the request's snapshot, so it can never chain onto a stale head either.

**Why erasure and anonymisation keep the chain valid.** Personal values are sealed only
through the forms that erasure and retention turn them into, so those rewrites never
change a hash, while any other edit does:

* identifiers and every other string in an event (actor, subject, session, the strings
  in ``details``) are sealed as their *pseudonym*, ``anon_`` + HMAC-SHA256 under the
  chain's random key (truncated to 128 bits). Erasure replaces a person's values with
  exactly those pseudonyms. Someone editing the table can only make the same replacement
  (hide a value), never substitute another value; and the pseudonyms cannot be computed
  or reversed without the key, so knowing a former user id or guessing an email does not
  re-identify an erased person's events from outside the database.
* IP addresses are sealed as their network (IPv4 /24, IPv6 /48), the form retention cuts
  them to after ``ip_anonymise_days``. The host part is deliberately not covered: any
  stored hash over the full address would let anyone holding the table recover an
  anonymised address by trying the 256 possible last octets.

Re-sealing the chain after an erasure was the alternative; it was rejected because a
re-seal would also launder any tampering done before it, and would rewrite every later
event of a busy tenant.

**Retention** deletes the oldest events from the front of a chain and stores the hash of
the last deleted one as the head's ``anchor_hash``: verification starts there.

**The pseudonym key is sealed** (``audit_heads.pseudonym_key_sealed``, app.sealing, the
chain as its context): a dump of the database alone cannot compute a pseudonym from a
guessed id or address. It opens with the Sealer the database session carries
(``db.info["sealer"]``, set by ``Services.session``), under the secret key or a fallback.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.models import AuditHead, Event
from app.sealing import PSEUDONYM_KEY, Sealer, Unsealable

#: prev_hash of a chain's first event
GENESIS = "0" * 64
#: the chain of events that belong to no tenant (e.g. a code asked for an unknown email)
NO_TENANT = "-"
PSEUDONYM = re.compile(r"^anon_[0-9a-f]{32}$")
#: the events of a transaction still to seal, in the order they were recorded
PENDING = "holdfast_unsealed_events"
#: the version of the sealed form, part of every hash
FORM_VERSION = 1
BATCH = 1000


def chain_of(tenant_id: str | None) -> str:
    return tenant_id or NO_TENANT


def pseudonym(key: str, value: str) -> str:
    """``value``'s pseudonym in the chain whose key is ``key`` (a pseudonym is its own)."""
    if PSEUDONYM.match(value):
        return value
    digest = hmac.new(bytes.fromhex(key), value.encode(), hashlib.sha256).hexdigest()
    return f"anon_{digest[:32]}"


def network(ip: str) -> str:
    """An address cut to its network: ``203.0.113.0/24`` or ``2001:db8:1::/48``. A
    network stays as it is, so cutting twice changes nothing; anything that is not an
    address becomes empty."""
    text = (ip or "").strip()
    if not text:
        return ""
    try:
        if "/" in text:
            net = ipaddress.ip_network(text, strict=False)
            return str(net)
        address = ipaddress.ip_address(text)
    except ValueError:
        return ""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def _masked(key: str, value: Any) -> Any:
    if isinstance(value, str):
        return pseudonym(key, value)
    if isinstance(value, dict):
        return {name: _masked(key, item) for name, item in value.items()}
    if isinstance(value, list):
        return [_masked(key, item) for item in value]
    return value


def sealed_form(event: Event, key: str) -> bytes:
    """The canonical bytes an event's hash covers (see the module docstring)."""
    at = event.at.astimezone(UTC).isoformat(timespec="microseconds")
    form = {
        "v": FORM_VERSION,
        "tenant": event.tenant_id,
        "seq": event.seq,
        "at": at,
        "kind": event.kind,
        "actor": _masked(key, event.actor_id),
        "subject": _masked(key, event.subject_id),
        "session": _masked(key, event.session_id),
        "ip": network(event.ip),
        "details": _masked(key, event.details or {}),
    }
    return json.dumps(form, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def event_hash(prev_hash: str, event: Event, key: str) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + sealed_form(event, key)).hexdigest()


# --- sealing ------------------------------------------------------------------------------


def note_unsealed(db: Session, event: Event) -> None:
    """Seal ``event`` when ``db`` commits (called by events.record)."""
    db.info.setdefault(PENDING, []).append(event)


@dataclass
class Head:
    chain: str
    last_hash: str
    anchor_hash: str
    #: the pseudonym key as stored: open it with :func:`open_key`
    sealed_key: bytes
    sealed: int


def sealer_of(db: Session) -> Sealer:
    """The Sealer of ``db`` (``db.info["sealer"]``). Raises RuntimeError without one."""
    sealer = db.info.get("sealer")
    if sealer is None:
        raise RuntimeError("this database session has no sealer: make it with Services.session")
    return sealer  # type: ignore[no-any-return]


def seal_key(db: Session, chain: str, key: str) -> bytes:
    """A chain's pseudonym key (hex) sealed for its head row."""
    return sealer_of(db).seal(PSEUDONYM_KEY, bytes.fromhex(key), chain)


def open_key(db: Session, chain: str, sealed_key: bytes) -> str:
    """A chain's pseudonym key (hex) from its head row. Raises app.sealing.Unsealable."""
    return sealer_of(db).open(PSEUDONYM_KEY, sealed_key, chain).hex()


def lock_head(db: Session, chain: str) -> Head:
    """The chain's head, locked until the transaction ends (created on first use, with a
    new random pseudonym key)."""
    query = (
        select(
            AuditHead.last_hash,
            AuditHead.anchor_hash,
            AuditHead.pseudonym_key_sealed,
            AuditHead.sealed,
        )
        .where(AuditHead.chain == chain)
        .with_for_update()
    )
    with db.no_autoflush:
        row = db.execute(query).one_or_none()
        if row is None:
            db.execute(
                _insert_ignoring_conflict(db).values(
                    chain=chain,
                    last_hash=GENESIS,
                    anchor_hash=GENESIS,
                    pseudonym_key_sealed=seal_key(db, chain, secrets.token_hex(32)),
                    sealed=0,
                    purged=0,
                )
            )
            row = db.execute(query).one()
    return Head(chain, row.last_hash, row.anchor_hash, row.pseudonym_key_sealed, row.sealed)


def chain_key(db: Session, chain: str) -> str:
    """The chain's pseudonym key (it never changes, so no lock is needed to read it; a
    chain without a head yet gets one). Raises app.sealing.Unsealable."""
    sealed = db.scalar(select(AuditHead.pseudonym_key_sealed).where(AuditHead.chain == chain))
    if sealed is None:
        sealed = lock_head(db, chain).sealed_key
    return open_key(db, chain, sealed)


def _insert_ignoring_conflict(db: Session) -> Any:
    # A first event of a new tenant on two nodes at once: one inserts, the other waits
    # for it and then locks the row it made.
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = postgresql if db.get_bind().dialect.name == "postgresql" else sqlite
    return dialect.insert(AuditHead).on_conflict_do_nothing(index_elements=["chain"])


def seal_pending(db: Session) -> list[Event]:
    """Number, link and hash the events recorded in this transaction (the before-commit
    hook in app.core.events runs it). Returns the events it sealed."""
    pending: list[Event] = db.info.pop(PENDING, [])
    events = [e for e in pending if e in db and e.hash is None]
    if not events:
        return []
    by_chain: dict[str, list[Event]] = {}
    for event in events:
        by_chain.setdefault(chain_of(event.tenant_id), []).append(event)
    with db.no_autoflush:
        for chain in sorted(by_chain):
            head = lock_head(db, chain)
            key = open_key(db, chain, head.sealed_key)
            last = head.last_hash
            for number, event in enumerate(by_chain[chain], start=head.sealed + 1):
                event.seq = number
                event.prev_hash = last
                event.hash = last = event_hash(last, event, key)
            db.execute(
                update(AuditHead)
                .where(AuditHead.chain == chain)
                .values(last_hash=last, sealed=AuditHead.sealed + len(by_chain[chain]))
                .execution_options(synchronize_session=False)
            )
    return events


def seal_unsealed(db: Session, chain: str, *, batch: int = BATCH) -> int:
    """For bulk loaders that insert events with Core statements (the demo seeder): seal
    the chain's unsealed rows onto its head, oldest id first. Returns how many. Never
    call it on a request path or from an operator command: it would equally seal rows
    that someone slipped in around the trail, which verification exists to catch."""
    head = lock_head(db, chain)
    key = open_key(db, chain, head.sealed_key)
    where = Event.tenant_id.is_(None) if chain == NO_TENANT else Event.tenant_id == chain
    last, number, total = head.last_hash, head.sealed, 0
    while True:
        rows = list(
            db.scalars(
                select(Event)
                .where(where, Event.seq.is_(None))
                .order_by(Event.id)
                .limit(batch)
                .execution_options(all_tenants=True)
            )
        )
        if not rows:
            break
        for event in rows:
            number += 1
            event.seq = number
            event.prev_hash = last
            event.hash = last = event_hash(last, event, key)
        db.flush()
        total += len(rows)
    if total:
        db.execute(
            update(AuditHead)
            .where(AuditHead.chain == chain)
            .values(last_hash=last, sealed=number)
            .execution_options(synchronize_session=False)
        )
    return total


def forget_pending(db: Session) -> None:
    db.info.pop(PENDING, None)


# --- verification -------------------------------------------------------------------------


@dataclass
class Verdict:
    """What :func:`verify` found for one chain."""

    chain: str
    checked: int = 0
    #: the first event that does not verify (None: the chain is intact)
    broken_at: Event | None = None
    problem: str | None = None
    head_hash: str | None = None
    purged: int = 0

    @property
    def intact(self) -> bool:
        return self.problem is None


def _chain_events(db: Session, chain: str) -> Iterator[Event]:
    tenant = None if chain == NO_TENANT else chain
    where = Event.tenant_id.is_(None) if tenant is None else Event.tenant_id == tenant
    after: tuple[int, int] | None = None
    while True:
        query = select(Event).where(where).execution_options(all_tenants=True)
        # Unsealed rows (seq NULL) sort first, so they are reported, never skipped.
        if after is not None:
            last_seq, last_id = after
            query = query.where(
                (Event.seq > last_seq) | ((Event.seq == last_seq) & (Event.id > last_id))
            )
        rows = list(
            db.scalars(query.order_by(Event.seq.asc().nulls_first(), Event.id).limit(BATCH))
        )
        yield from rows
        if len(rows) < BATCH:
            return
        if rows[-1].seq is None:  # a whole batch of unsealed rows: the walk stops there
            return
        after = (rows[-1].seq, rows[-1].id)


def verify(db: Session, chain: str) -> Verdict:
    """Walk one chain from its anchor and report the first broken link: an unsealed row,
    a row whose link does not follow from the one before it (a row before it deleted or
    moved), a row whose contents no longer match its hash (edited), or a head that points
    past the last row (the newest rows deleted)."""
    head = db.execute(select(AuditHead).where(AuditHead.chain == chain)).scalar_one_or_none()
    verdict = Verdict(chain=chain)
    expected = GENESIS
    key = ""
    if head is not None:
        expected = head.anchor_hash
        verdict.head_hash, verdict.purged = head.last_hash, head.purged
        try:
            key = open_key(db, chain, head.pseudonym_key_sealed)
        except Unsealable as error:
            verdict.problem = f"the chain's pseudonym key cannot be opened: {error}"
            return verdict
    position = head.purged if head is not None else 0
    for event in _chain_events(db, chain):
        position += 1
        if head is None or event.hash is None or event.seq is None:
            verdict.broken_at = event
            verdict.problem = (
                f"event #{event.id} ({event.kind}) was never sealed: it was written "
                "around the audit trail"
            )
            return verdict
        if event.seq != position or event.prev_hash != expected:
            verdict.broken_at = event
            verdict.problem = (
                f"event #{event.id} ({event.kind}, position {event.seq}) does not link to "
                "the event before it: an event was deleted or moved here"
            )
            return verdict
        if event_hash(expected, event, key) != event.hash:
            verdict.broken_at = event
            verdict.problem = (
                f"event #{event.id} ({event.kind}, position {event.seq}) was changed "
                "after it was written: its contents no longer match its hash"
            )
            return verdict
        expected = event.hash
        verdict.checked += 1
    if head is not None and head.last_hash != expected:
        verdict.problem = (
            f"the chain ends after {verdict.checked} events but its head names a later "
            f"event ({head.last_hash[:12]}…): the newest events were deleted"
        )
    return verdict


def chains(db: Session, tenant_id: str | None = None) -> list[str]:
    """Every chain with a head or events, or just ``tenant_id``'s."""
    if tenant_id is not None:
        return [tenant_id]
    found = set(db.scalars(select(AuditHead.chain)))
    found.update(
        chain_of(t)
        for t in db.scalars(select(Event.tenant_id).distinct().execution_options(all_tenants=True))
    )
    return sorted(found)
