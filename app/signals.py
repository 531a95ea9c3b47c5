"""What low code announces and higher code listens to (blinker signals, as Flask's own).

The store and the core send these without knowing who listens; the app factory connects
the listeners (the metrics in app.web.ops). Each is sent with the app's
:class:`~app.db.Database` as sender, so two apps in one process (the tests) hear only
their own.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

#: a transaction's audit events were sealed into their chains, just before it commits
#: (``db``: the session, still open for more rows; ``events``: the Event rows)
events_sealed = _signals.signal("events-sealed")
#: a transaction that recorded audit events committed; ``events``: the Event rows
events_committed = _signals.signal("events-committed")
#: a sender tried a batch of queued mail; ``outcomes`` (app.outbox.Outcome) and
#: ``settled`` (the OutboxMessage rows of the attempts that failed, as written down)
mail_attempted = _signals.signal("mail-attempted")
#: a rate-limit budget refused a request; ``budget``: its name
rate_limited = _signals.signal("rate-limited")
