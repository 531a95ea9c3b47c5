"""admin console indexes: live and ended sessions, events by kind

What the admin dashboard and sessions explorer need to stay quick at a million sessions
(bench/admin.py measures it):

* ``ix_sessions_live``: live sessions only (partial, ``ended_at IS NULL``), holding every
  column the live figures, the live-by-device pies and the explorer's live page read, so
  those are index-only range scans over the live rows, not over every session kept.
* ``ix_sessions_ended``: ended sessions by when they ended (partial), for the
  session-length chart; partial so the planner never takes it for the live queries.
* ``ix_events_tenant_kind_at``: the audit log's kind filter and "failed codes today".

Revision ID: 202611231025
Revises: 202611230941
Create Date: 2026-11-23 10:25:32.550791
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "202611231025"
down_revision = "202611230941"
branch_labels = None
depends_on = None

LIVE = sa.text("ended_at IS NULL")
ENDED = sa.text("ended_at IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_tenant_kind_at", ["tenant_id", "kind", "at"], unique=False)

    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_sessions_ended",
            ["tenant_id", "ended_at", "created_at"],
            unique=False,
            sqlite_where=ENDED,
            postgresql_where=ENDED,
        )
        batch_op.create_index(
            "ix_sessions_live",
            [
                "tenant_id",
                "idle_deadline",
                "absolute_deadline",
                "last_seen_at",
                "created_at",
                "user_id",
                "device_id",
                "id",
            ],
            unique=False,
            sqlite_where=LIVE,
            postgresql_where=LIVE,
        )


def downgrade() -> None:
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_sessions_live")
        batch_op.drop_index("ix_sessions_ended")

    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_tenant_kind_at")
