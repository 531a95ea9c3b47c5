"""Webhooks: a tenant admin's endpoints, and the queue of signed deliveries to them.

* **Queued with the event.** When a transaction that recorded an event of one of
  :data:`KINDS` commits, the same commit adds one delivery per endpoint of the tenant that
  asked for that kind (:func:`enqueue`, run by the hook in app.core.events). Nothing is
  sent from inside a request: the ``holdfast worker`` command sends them.
* **Signed.** The body is JSON; the ``Holdfast-Signature`` header is
  ``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" under the endpoint's secret>``
  (the scheme Stripe made familiar: a receiver checks the MAC and refuses old
  timestamps, so a captured delivery cannot be replayed later). ``Holdfast-Delivery``
  names the delivery, ``Holdfast-Event`` the kind; the body's ``id`` names the event and
  is the same for every endpoint and every retry, for de-duplication.
* **Retried with backoff.** Anything but a 2xx answer (redirects are not followed) is a
  failed attempt; the next one waits 1, 2, 4, … minutes (at most 6 hours), and after
  :data:`MAX_ATTEMPTS` attempts (about 8.5 hours) the delivery is marked failed. The
  worker always takes the delivery that has been due longest, so one endpoint that keeps
  failing only ever costs one attempt per backoff step and never holds up the others.
* **No reaching inside.** A URL whose host resolves to a loopback, private, link-local,
  shared, multicast or reserved address is refused when it is registered and again when
  each delivery is sent (the connection goes to the address that was checked, so a DNS
  answer that changes in between cannot redirect it), unless the deployment sets
  ``HOLDFAST_WEBHOOK_ALLOW_PRIVATE``. Without that setting URLs must be https. The
  refusal says only that the address is not allowed or not reachable: never the address
  a name resolved to, nor whether it was private, missing from DNS or too slow to
  resolve, so registering URLs cannot map internal DNS. Each lookup has
  ``DNS_TIMEOUT`` seconds, in a thread of its own, so a dead resolver holds up nothing
  but the one registration (or delivery) that asked. The HTTP side of it:
  app.webhook_transport.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.core import events
from app.core.errors import N_, NotFound, ValidationError
from app.core.events import Origin
from app.core.sessions import Current
from app.crypto import Hasher
from app.dns import Resolver
from app.models import Event, WebhookDelivery, WebhookEndpoint, new_id
from app.sealing import WEBHOOK_SECRET, Unsealable
from app.webhook_transport import DNS_TIMEOUT, SEND_TIMEOUT, Outcome, post, reachable

log = logging.getLogger(__name__)

#: the event kinds an endpoint can ask for
KINDS = ("session.created", "session.ended", "device.trusted", "alert.raised", "policy.changed")
KIND_LABELS = {
    "session.created": N_("A person signed in (a session started)"),
    "session.ended": N_("A session ended (signed out, revoked, expired or evicted)"),
    "device.trusted": N_("A person trusted a device"),
    "alert.raised": N_("A suspicious-activity alert was raised"),
    "policy.changed": N_("The session or retention policy changed"),
}
MAX_ENDPOINTS = 10
MAX_URL = 2000
MAX_ATTEMPTS = 10
FIRST_DELAY = timedelta(minutes=1)
LONGEST_DELAY = timedelta(hours=6)
#: a claimed delivery is due again after this if its worker died mid-attempt
LEASE = timedelta(seconds=60)
SIGNATURE_HEADER = "Holdfast-Signature"
#: how old a signature timestamp a receiver should accept (see verify_signature)
TOLERANCE = timedelta(minutes=5)

#: the one answer for a host that does not resolve in time, or resolves to an address
#: webhooks may not reach
UNREACHABLE = N_(
    "That address is not allowed or not reachable. Webhooks go only to hosts on the "
    "public internet that can be found by DNS."
)


# --- endpoints ----------------------------------------------------------------------------


@dataclass
class NewEndpoint:
    endpoint: WebhookEndpoint
    #: the signing secret, shown to the admin once
    secret: str


def check_url(
    url: str,
    *,
    allow_private: bool,
    resolve: Resolver = socket.getaddrinfo,
    timeout: float = DNS_TIMEOUT,
) -> tuple[str, str, int]:
    """The URL cleaned up, its host and port. Raises ValidationError (field ``url``) for
    anything but a plain http(s) URL whose host resolves, within ``timeout`` seconds, to
    public addresses only (see :data:`UNREACHABLE`: the answer never says which)."""
    url = (url or "").strip()
    if not url:
        raise ValidationError(N_("Enter the URL to send events to."), field="url")
    if len(url) > MAX_URL:
        raise ValidationError(
            N_("A URL is at most %(most)s characters."), words={"most": MAX_URL}, field="url"
        )
    if re.search(r"\s", url):
        raise ValidationError(N_("A URL cannot contain spaces."), field="url")
    parts = urlsplit(url)
    schemes = ("http", "https") if allow_private else ("https",)
    if parts.scheme.lower() not in schemes:
        raise ValidationError(
            N_("The URL must start with https://.")
            if not allow_private
            else N_("The URL must start with http:// or https://."),
            field="url",
        )
    try:
        port = parts.port
    except ValueError:
        raise ValidationError(
            N_("The URL's port is not a number from 1 to 65535."), field="url"
        ) from None
    host = parts.hostname
    if not host:
        raise ValidationError(N_("The URL needs a host name."), field="url")
    if parts.username is not None or parts.password is not None:
        raise ValidationError(
            N_("Leave user names and passwords out of the URL: deliveries are signed instead."),
            field="url",
        )
    if parts.fragment:
        raise ValidationError(N_("A webhook URL cannot have a #fragment."), field="url")
    port = port or (443 if parts.scheme.lower() == "https" else 80)
    if reachable(host, port, allow_private=allow_private, timeout=timeout, resolve=resolve) is None:
        # One answer for "not found", "too slow" and "private": telling them apart (and
        # naming the address) would let an admin map the internal network through DNS.
        raise ValidationError(UNREACHABLE, field="url")
    return url, host, port


def check_kinds(kinds: Iterable[str]) -> list[str]:
    chosen = [kind for kind in KINDS if kind in set(kinds)]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValidationError(
            N_("Unknown event kind: %(kind)s. Choose from %(kinds)s."),
            words={"kind": sorted(unknown)[0], "kinds": ", ".join(KINDS)},
            field="kinds",
        )
    if not chosen:
        raise ValidationError(N_("Choose at least one kind of event to send."), field="kinds")
    return chosen


def add_endpoint(
    db: Session,
    hasher: Hasher,
    admin: Current,
    url: str,
    kinds: Iterable[str],
    *,
    now: datetime,
    origin: Origin,
    allow_private: bool,
    resolve: Resolver = socket.getaddrinfo,
) -> NewEndpoint:
    """Register a URL for some event kinds, with a new signing secret (returned once).
    Raises ValidationError (``url``, ``kinds``, or the per-tenant limit)."""
    chosen = check_kinds(list(kinds))
    url, _host, _port = check_url(url, allow_private=allow_private, resolve=resolve)
    count = db.scalar(select(func.count()).select_from(WebhookEndpoint)) or 0
    if count >= MAX_ENDPOINTS:
        raise ValidationError(
            N_("A tenant can have at most %(most)s webhook endpoints. Delete one first."),
            words={"most": MAX_ENDPOINTS},
            field="url",
        )
    secret = "whsec_" + secrets.token_urlsafe(32)
    endpoint_id = new_id("whk")
    endpoint = WebhookEndpoint(
        id=endpoint_id,
        tenant_id=admin.tenant.id,
        url=url,
        kinds=chosen,
        secret_encrypted=_seal(hasher, endpoint_id, secret),
        created_at=now,
        created_by=admin.user.id,
    )
    db.add(endpoint)
    db.flush()
    events.record(
        db,
        "webhook.created",
        now=now,
        tenant_id=admin.tenant.id,
        origin=origin,
        actor_id=admin.user.id,
        session_id=admin.session.id,
        endpoint_id=endpoint.id,
        url=url,
        kinds=chosen,
    )
    return NewEndpoint(endpoint, secret)


def tenant_endpoint(db: Session, endpoint_id: str) -> WebhookEndpoint:
    """An endpoint of the admin's tenant (the session is tenant-scoped), or NotFound."""
    endpoint = db.get(WebhookEndpoint, endpoint_id) if isinstance(endpoint_id, str) else None
    if endpoint is None:
        raise NotFound(N_("No such webhook endpoint"))
    return endpoint


def remove_endpoint(
    db: Session, admin: Current, endpoint_id: str, *, now: datetime, origin: Origin
) -> WebhookEndpoint:
    """Delete an endpoint with its deliveries (queued ones are never sent)."""
    endpoint = tenant_endpoint(db, endpoint_id)
    dropped = db.execute(
        delete(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint.id)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    db.delete(endpoint)
    db.flush()
    events.record(
        db,
        "webhook.deleted",
        now=now,
        tenant_id=endpoint.tenant_id,
        origin=origin,
        actor_id=admin.user.id,
        session_id=admin.session.id,
        endpoint_id=endpoint.id,
        url=endpoint.url,
        deliveries_dropped=dropped,
    )
    return endpoint


def retry_delivery(
    db: Session, admin: Current, delivery_id: str, *, now: datetime, origin: Origin
) -> WebhookDelivery:
    """Queue a failed (or waiting) delivery to go out on the worker's next pass, with a
    fresh set of attempts. A delivered one is left alone. Raises NotFound."""
    delivery = db.get(WebhookDelivery, delivery_id) if isinstance(delivery_id, str) else None
    if delivery is None:
        raise NotFound(N_("No such delivery"))
    if delivery.status == "delivered":
        return delivery
    delivery.status = "pending"
    delivery.attempts = 0
    delivery.next_attempt_at = now
    events.record(
        db,
        "webhook.retried",
        now=now,
        tenant_id=delivery.tenant_id,
        origin=origin,
        actor_id=admin.user.id,
        session_id=admin.session.id,
        endpoint_id=delivery.endpoint_id,
        delivery_id=delivery.id,
    )
    db.flush()
    return delivery


def endpoints(db: Session) -> list[WebhookEndpoint]:
    """The tenant's endpoints, oldest first."""
    return list(
        db.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.created_at, WebhookEndpoint.id))
    )


def recent_deliveries(
    db: Session, endpoint_ids: Iterable[str], *, limit: int = 20
) -> dict[str, list[WebhookDelivery]]:
    """The newest ``limit`` deliveries of each endpoint, newest first."""
    shown: dict[str, list[WebhookDelivery]] = {}
    for endpoint_id in endpoint_ids:
        shown[endpoint_id] = list(
            db.scalars(
                select(WebhookDelivery)
                .where(WebhookDelivery.endpoint_id == endpoint_id)
                .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
                .limit(limit)
            )
        )
    return shown


# --- queueing -----------------------------------------------------------------------------


def queue_deliveries(_database: object, *, db: Session, events: list[Event]) -> None:
    """The listener of :data:`app.signals.events_sealed` (connected by the app factory):
    queue the just-sealed events' deliveries in the committing transaction."""
    enqueue(db, events)


def enqueue(db: Session, sealed: list[Event]) -> list[WebhookDelivery]:
    """Queue a delivery of each just-sealed event for every endpoint of its tenant that
    asked for its kind."""
    wanted = [e for e in sealed if e.kind in KINDS and e.tenant_id is not None]
    if not wanted:
        return []
    tenants = {e.tenant_id for e in wanted}
    subscribed: dict[str, list[WebhookEndpoint]] = {}
    for endpoint in db.scalars(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.tenant_id.in_(tenants))
        .execution_options(all_tenants=True)
    ):
        subscribed.setdefault(endpoint.tenant_id, []).append(endpoint)
    queued = []
    for event in wanted:
        for endpoint in subscribed.get(event.tenant_id or "", []):
            if event.kind not in endpoint.kinds:
                continue
            delivery = WebhookDelivery(
                id=new_id("whd"),
                tenant_id=event.tenant_id,
                endpoint_id=endpoint.id,
                event_id=event.id,
                kind=event.kind,
                body=body_of(event),
                status="pending",
                attempts=0,
                created_at=event.at,
                next_attempt_at=event.at,
            )
            db.add(delivery)
            queued.append(delivery)
    return queued


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _camel_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {_camel(str(key)): _camel_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_camel_keys(item) for item in value]
    return value


def body_of(event: Event) -> str:
    """The JSON a delivery of ``event`` carries (camelCase, like the API)."""
    data = _camel_keys(event.details or {})
    data.update(
        actorId=event.actor_id,
        subjectId=event.subject_id,
        sessionId=event.session_id,
        ip=event.ip or None,
    )
    payload = {
        "id": f"evt_{(event.hash or '')[:32]}",
        "type": event.kind,
        "createdAt": event.at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "tenantId": event.tenant_id,
        "data": data,
    }
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


# --- signing ------------------------------------------------------------------------------


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Holdfast-Signature`` header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(secret: str, header: str, body: bytes, *, now: datetime) -> bool:
    """What a receiver does: the MAC matches and the timestamp is recent."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields.get("t", ""))
    except ValueError:
        return False
    if abs(now.timestamp() - timestamp) > TOLERANCE.total_seconds():
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


def _seal(hasher: Hasher, endpoint_id: str, secret: str) -> bytes:
    return hasher.sealer.seal(WEBHOOK_SECRET, secret.encode(), endpoint_id)


def endpoint_secret(hasher: Hasher, endpoint: WebhookEndpoint) -> str | None:
    """The endpoint's signing secret (app.sealing: opened under the secret key or a
    fallback), or None when it cannot be opened (a secret key that is gone, or a row
    edited by hand)."""
    try:
        return hasher.sealer.open(WEBHOOK_SECRET, endpoint.secret_encrypted, endpoint.id).decode()
    except Unsealable as error:
        log.error("webhook endpoint %s: %s", endpoint.id, error)
        return None


# --- sending (the worker) -----------------------------------------------------------------


@dataclass
class Claimed:
    """A delivery a worker took, with what it needs to send it outside any transaction."""

    delivery_id: str
    url: str
    secret: str | None
    body: str
    kind: str


def claim_next(db: Session, hasher: Hasher, *, now: datetime) -> Claimed | None:
    """Take the delivery that has been due longest, across tenants: on PostgreSQL with
    ``FOR UPDATE SKIP LOCKED`` (workers on several nodes never take the same one); on
    SQLite the write transaction takes the database lock, so workers go one at a time.
    The claim moves the delivery's due time past :data:`LEASE`; commit it before sending."""
    query = (
        select(WebhookDelivery)
        .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
        .limit(1)
        .execution_options(all_tenants=True)
    )
    if db.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    delivery = db.scalars(query).first()
    if delivery is None:
        return None
    delivery.next_attempt_at = now + LEASE
    endpoint = db.get(WebhookEndpoint, delivery.endpoint_id)
    db.flush()
    return Claimed(
        delivery_id=delivery.id,
        url=endpoint.url if endpoint else "",
        secret=endpoint_secret(hasher, endpoint) if endpoint else None,
        body=delivery.body,
        kind=delivery.kind,
    )


def send(
    claimed: Claimed,
    *,
    now: datetime,
    allow_private: bool,
    timeout: float = SEND_TIMEOUT,
    resolve: Resolver = socket.getaddrinfo,
) -> Outcome:
    """POST one delivery, signed (app.webhook_transport). Never raises: every failure is
    an Outcome with an error."""
    if claimed.secret is None:
        return Outcome(error="the endpoint's secret cannot be read (was the secret key changed?)")
    body = claimed.body.encode()
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(claimed.secret, int(now.timestamp()), body),
        "Holdfast-Delivery": claimed.delivery_id,
        "Holdfast-Event": claimed.kind,
    }
    return post(
        claimed.url, body, headers, allow_private=allow_private, timeout=timeout, resolve=resolve
    )


def backoff(attempts: int) -> timedelta:
    """How long to wait after the ``attempts``-th failed attempt: 1, 2, 4, … minutes."""
    return min(FIRST_DELAY * (2 ** max(0, attempts - 1)), LONGEST_DELAY)


def settle(
    db: Session, claimed: Claimed, outcome: Outcome, *, now: datetime
) -> WebhookDelivery | None:
    """Write down an attempt: delivered, due again after the backoff, or failed for good
    after MAX_ATTEMPTS. None if the delivery is gone (its endpoint was deleted)."""
    delivery = db.get(WebhookDelivery, claimed.delivery_id)
    if delivery is None:
        return None
    record_attempt(delivery, outcome, now=now)
    db.flush()
    return delivery


def record_attempt(delivery: Any, outcome: Outcome, *, now: datetime) -> None:
    """Count one attempt on a queued delivery row (a webhook's, or an OpenID back-channel
    logout's: app.core.backchannel): delivered, due again after :func:`backoff`, or
    failed for good after MAX_ATTEMPTS."""
    delivery.attempts += 1
    delivery.last_attempt_at = now
    delivery.response_status = outcome.status
    if outcome.delivered:
        delivery.status = "delivered"
        delivery.delivered_at = now
        delivery.last_error = None
    else:
        delivery.last_error = (outcome.error or f"HTTP {outcome.status}")[:300]
        if delivery.attempts >= MAX_ATTEMPTS:
            delivery.status = "failed"
        else:
            delivery.next_attempt_at = now + backoff(delivery.attempts)
