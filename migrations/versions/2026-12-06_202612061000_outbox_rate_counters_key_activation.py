"""outbox, rate counters, worker heartbeats, staged signing keys

* ``outbox``: mail leaves through a durable queue written in the same transaction as what
  caused it, and is delivered after commit by ``holdfast worker`` or a web process's
  background sender, never inside a request (app.outbox).
* ``rate_counters``: the code-request budgets, counted where every worker process and
  node sees the same number (app.ratelimit), instead of in each process's memory.
* ``worker_heartbeats``: a running ``holdfast worker`` reports here; while one does, the
  web processes leave the outbox to it.
* ``signing_keys.active_from``: a rotated-in key is published before it signs (app.tokens).

Revision ID: 202612061000
Revises: 202612060945
Create Date: 2026-12-06 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "202612061000"
down_revision = "202612060945"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("tenant_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("to_address", sa.String(320), nullable=False),
        sa.Column("subject", sa.String(300), nullable=False),
        sa.Column("body_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("message_id", sa.String(250), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("give_up_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(300), nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], name="fk_outbox_tenant_id_tenants"),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
    )
    op.create_index("ix_outbox_due", "outbox", ["status", "next_attempt_at"])
    op.create_index("ix_outbox_tenant_created", "outbox", ["tenant_id", "created_at"])
    op.create_index("ix_outbox_tenant_id", "outbox", ["tenant_id"])

    op.create_table(
        "rate_counters",
        sa.Column("key", sa.String(400), nullable=False),
        sa.Column("window_start", sa.Integer(), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", "window_start", name="pk_rate_counters"),
    )
    op.create_index("ix_rate_counters_expires_at", "rate_counters", ["expires_at"])

    op.create_table(
        "worker_heartbeats",
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_worker_heartbeats"),
    )

    with op.batch_alter_table("signing_keys", recreate="never") as batch:
        batch.add_column(sa.Column("active_from", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("signing_keys", recreate="never") as batch:
        batch.drop_column("active_from")
    op.drop_table("worker_heartbeats")
    op.drop_index("ix_rate_counters_expires_at", table_name="rate_counters")
    op.drop_table("rate_counters")
    op.drop_index("ix_outbox_tenant_id", table_name="outbox")
    op.drop_index("ix_outbox_tenant_created", table_name="outbox")
    op.drop_index("ix_outbox_due", table_name="outbox")
    op.drop_table("outbox")
