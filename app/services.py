"""Everything the app holds for its lifetime, as one object: ``app.extensions["holdfast"]``.

The factory (``app.create_app``) makes it; views reach it through ``services()`` in
app.web (the request's unit of work), CLI commands through ``app.cli.unit.services()``;
workers are handed it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from app.cache import Cache
from app.clock import FrozenClock, SystemClock
from app.core.budgets import CodeBudgets
from app.core.deployment import Deployment
from app.core.deployment import configure as configure_rules
from app.crypto import Hasher
from app.db import Database
from app.mail import Mailer
from app.outbox import BackgroundSender, Outbox
from app.sealing import Sealer
from app.tokens import KeyRing


@dataclass
class Services:
    database: Database
    clock: SystemClock | FrozenClock
    keys: KeyRing
    hasher: Hasher
    #: seals and opens stored secrets under the secret key and its fallbacks (app.sealing)
    sealer: Sealer
    #: talks to the mail relay; only senders use it (app.outbox), never a request
    mailer: Mailer
    #: the mail queue's sealing key and sender address (app.outbox)
    outbox: Outbox
    #: what the security rules need to know (links in mail, GeoIP), see app.core.deployment
    deployment: Deployment
    #: answers fine a few minutes old (the admin charts): Redis when configured (app.cache)
    cache: Cache
    #: what asking for sign-in codes may cost, counted in the database or Redis
    #: (app.ratelimit)
    budgets: CodeBudgets
    #: this web process's own mail sender, started by its first request (app.outbox)
    sender: BackgroundSender | None = None

    def session(self, *, write: bool = False) -> Session:
        db = self.database.session(write=write, outbox=self.outbox)
        configure_rules(db, self.deployment)
        db.info["sealer"] = self.sealer  # the audit chains' pseudonym keys (app.core.audit)
        return db

    def close(self) -> None:
        """Stop the background sender and close every database connection."""
        if self.sender is not None:
            self.sender.stop()
        self.database.dispose()
