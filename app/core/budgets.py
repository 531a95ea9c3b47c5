"""What asking for a sign-in code and checking one may cost: budgets per normalised
address and per client network (HOLDFAST_RATELIMIT_*), counted by app.ratelimit's
counters in the database or Redis, so that they hold across processes and nodes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app.core.errors import N_, RateLimited
from app.ratelimit import Budget, Counters, client_network, parse_limits, spend


@dataclass(frozen=True)
class CodeBudgets:
    """The budgets every way of asking for a sign-in code draws on (the sign-in page, its
    resend button, the fresh sign-in page, ``POST /api/auth/login``), and those every code
    check draws on (an emailed code, an app's code, a recovery code): one each per
    normalised address and per client network."""

    counters: Counters
    per_address: Budget
    per_network: Budget
    checks_per_address: Budget
    checks_per_network: Budget

    @classmethod
    def from_config(cls, config: Any, counters: Counters) -> CodeBudgets:
        """The budgets of HOLDFAST_RATELIMIT_*. Raises ValueError naming the setting."""

        def budget(name: str, setting: str) -> Budget:
            try:
                return Budget(name, parse_limits(config[setting]))
            except ValueError as error:
                raise ValueError(f"HOLDFAST_{setting}: {error}") from error

        return cls(
            counters,
            budget("codes:address", "RATELIMIT_CODES"),
            budget("codes:network", "RATELIMIT_CODES_PER_IP"),
            budget("checks:address", "RATELIMIT_CHECKS"),
            budget("checks:network", "RATELIMIT_CHECKS_PER_IP"),
        )

    def spend_network(self, db: Session, ip: str, *, now: datetime) -> None:
        """One code asked for from ``ip``'s network. Raises RateLimited."""
        self._spend(
            db,
            self.per_network,
            client_network(ip),
            now,
            N_("Too many codes were asked for from your network. Wait a little and try again."),
        )

    def spend_address(self, db: Session, address: str, *, now: datetime) -> None:
        """One code asked for ``address``. Raises RateLimited."""
        self._spend(
            db,
            self.per_address,
            address,
            now,
            N_("Too many codes were asked for this address. Wait a little and try again."),
        )

    def spend_check(self, db: Session, address: str, ip: str, *, now: datetime) -> None:
        """One code check for ``address`` from ``ip`` (network first, then address).
        Raises RateLimited."""
        message = N_("Too many codes were tried. Wait a little and try again.")
        self._spend(db, self.checks_per_network, client_network(ip), now, message)
        self._spend(db, self.checks_per_address, address, now, message)

    def spend_passkey_request(self, db: Session, ip: str, *, now: datetime) -> None:
        """One passkey sign-in challenge asked for from ``ip``'s network, on the network's
        code-check budget (each challenge is a row, and a try). Raises RateLimited."""
        message = N_("Too many sign-in attempts from your network. Wait a little and try again.")
        self._spend(db, self.checks_per_network, client_network(ip), now, message)

    def _spend(self, db: Session, budget: Budget, key: str, now: datetime, message: str) -> None:
        wait = spend(db, self.counters, budget, key, now=now)
        if wait:
            raise RateLimited(message, retry_after=wait)
