"""The ``holdfast worker``: sends queued mail (app.outbox), webhook deliveries
(app.core.webhooks) and back-channel logout tokens (app.core.backchannel), off every
request path.

While it runs it reports a heartbeat, and the web processes leave the mail queue to it
(without a worker they send it themselves). Each webhook delivery takes three steps,
each its own short transaction or none: claim it (a write transaction that moves its due
time past a lease and commits), send it (no transaction open while waiting on the
network, so SQLite's write lock is never held across an HTTP call), and write down the
outcome; mail goes the same way (app.outbox). Run one worker per node on PostgreSQL
(claims use ``FOR UPDATE SKIP LOCKED``) or one in all on SQLite. ``--once`` sends what is
due now and exits (tests, cron); without it the worker polls every ``interval`` seconds
until SIGINT or SIGTERM, finishing the delivery in hand first.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

from app import outbox
from app.clock import utcnow
from app.core import backchannel, webhooks

log = logging.getLogger(__name__)


def allow_private(config: Any) -> bool:
    """HOLDFAST_WEBHOOK_ALLOW_PRIVATE read as a boolean (false unless set)."""
    value = config.get("WEBHOOK_ALLOW_PRIVATE", False)
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def deliver_due(
    services: Any,
    *,
    private_ok: bool,
    timeout: float = webhooks.SEND_TIMEOUT,
    stop: threading.Event | None = None,
    resolve: Callable[..., Any] | None = None,
) -> int:
    """Send every delivery due now, one at a time; returns how many were attempted."""
    attempted = 0
    extra = {"resolve": resolve} if resolve is not None else {}
    while stop is None or not stop.is_set():
        with services.session(write=True) as db:
            claimed = webhooks.claim_next(db, services.hasher, now=services.clock.now())
            db.commit()
        if claimed is None:
            break
        outcome = webhooks.send(
            claimed, now=services.clock.now(), allow_private=private_ok, timeout=timeout, **extra
        )
        with services.session(write=True) as db:
            delivery = webhooks.settle(db, claimed, outcome, now=services.clock.now())
            db.commit()
        attempted += 1
        if delivery is not None and delivery.status != "delivered":
            log.warning(
                "webhook delivery %s to %s failed (attempt %s): %s",
                claimed.delivery_id,
                claimed.url,
                delivery.attempts,
                delivery.last_error,
            )
    return attempted


def deliver_logouts(
    services: Any,
    *,
    private_ok: bool,
    timeout: float = webhooks.SEND_TIMEOUT,
    stop: threading.Event | None = None,
) -> int:
    """End the expired sessions that still have apps signed in, then send every
    back-channel logout token due now (app.core.backchannel), one at a time, as webhook
    deliveries go; returns how many were attempted."""
    with services.session(write=True) as db:
        backchannel.end_expired_sessions(db, now=services.clock.now())
        db.commit()
    base_url = services.deployment.base_url

    def sign(claims: dict[str, Any], now: Any) -> str:
        return services.keys.sign_claims(  # type: ignore[no-any-return]
            claims, typ=backchannel.LOGOUT_TOKEN_TYPE, now=now
        )

    attempted = 0
    while stop is None or not stop.is_set():
        with services.session(write=True) as db:
            claimed = backchannel.claim_next(db, now=services.clock.now(), base_url=base_url)
            db.commit()
        if claimed is None:
            break
        outcome = backchannel.send(
            claimed, sign, now=services.clock.now(), allow_private=private_ok, timeout=timeout
        )
        with services.session(write=True) as db:
            delivery = backchannel.settle(db, claimed, outcome, now=services.clock.now())
            db.commit()
        attempted += 1
        if delivery is not None and delivery.status != "delivered":
            log.warning(
                "back-channel logout %s to %s failed (attempt %s): %s",
                claimed.delivery_id,
                claimed.url,
                delivery.attempts,
                delivery.last_error,
            )
    return attempted


def report(services: Any, name: str) -> None:
    """Say this worker is running (the web processes then leave the mail to it)."""
    with services.session(write=True) as db:
        outbox.report_worker(db, name)
        db.commit()


def run(services: Any, *, private_ok: bool, interval: float = 2.0) -> None:
    """Deliver mail and webhooks until SIGINT/SIGTERM, polling every ``interval`` seconds
    when idle and reporting a heartbeat every few seconds."""
    stop = threading.Event()
    name = outbox.worker_name()

    def _stop(_signum: int, _frame: Any) -> None:
        stop.set()

    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, _stop)
    log.info("worker %s started", name)
    reported = None
    while not stop.is_set():
        try:
            if reported is None or utcnow() - reported >= outbox.HEARTBEAT_EVERY:
                report(services, name)
                reported = utcnow()
            outbox.deliver_due(services, stop=stop)
            deliver_due(services, private_ok=private_ok, stop=stop)
            deliver_logouts(services, private_ok=private_ok, stop=stop)
        except Exception:  # a database outage: keep the worker alive and try again
            log.exception("worker pass failed")
        stop.wait(interval)
    try:
        with services.session(write=True) as db:
            outbox.worker_gone(db, name)
            db.commit()
    except Exception:
        log.exception("could not withdraw the worker's heartbeat")
    log.info("worker %s stopped", name)
