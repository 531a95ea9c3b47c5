"""audit hash chain, retention settings, webhook endpoints and deliveries

Events already in the database are sealed into their tenants' chains here, oldest first,
so `holdfast audit verify` passes right after the upgrade.

Revision ID: 202611230941
Revises: 202611230927
Create Date: 2026-11-23 09:41:59
"""

from __future__ import annotations

import secrets
from datetime import UTC
from types import SimpleNamespace

import sqlalchemy as sa
from alembic import op

revision = "202611230941"
down_revision = "202611230927"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ALTER TABLE on SQLite: recreating tables that others point at would trip the
    # foreign keys once they hold rows.
    with op.batch_alter_table("tenants", schema=None, recreate="never") as batch_op:
        batch_op.add_column(
            sa.Column(
                "sessions_retention_days",
                sa.Integer(),
                server_default=sa.text("90"),
                nullable=False,
            )
        )
        batch_op.add_column(
            sa.Column(
                "events_retention_days", sa.Integer(), server_default=sa.text("365"), nullable=False
            )
        )
        batch_op.add_column(
            sa.Column(
                "ip_anonymise_days", sa.Integer(), server_default=sa.text("30"), nullable=False
            )
        )

    with op.batch_alter_table("events", schema=None, recreate="never") as batch_op:
        batch_op.add_column(sa.Column("seq", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("prev_hash", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("hash", sa.String(length=64), nullable=True))
        batch_op.create_index("ix_events_tenant_seq", ["tenant_id", "seq"], unique=True)
        batch_op.create_index("ix_events_actor_id", ["actor_id"], unique=False)

    op.create_table(
        "audit_heads",
        sa.Column("chain", sa.String(length=40), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.Column("anchor_hash", sa.String(length=64), nullable=False),
        sa.Column("pseudonym_key", sa.String(length=64), nullable=False),
        sa.Column("sealed", sa.Integer(), nullable=False),
        sa.Column("purged", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("chain", name=op.f("pk_audit_heads")),
    )

    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("kinds", sa.JSON(), nullable=False),
        sa.Column("secret_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=40), nullable=True),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_webhook_endpoints_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
    )
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_webhook_endpoints_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("endpoint_id", sa.String(length=40), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=50), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(length=300), nullable=True),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoints.id"],
            name=op.f("fk_webhook_deliveries_endpoint_id_webhook_endpoints"),
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_webhook_deliveries_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_deliveries")),
    )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_webhook_deliveries_due", ["status", "next_attempt_at"], unique=False
        )
        batch_op.create_index(
            "ix_webhook_deliveries_endpoint", ["endpoint_id", "created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_webhook_deliveries_event_id"), ["event_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_webhook_deliveries_tenant_id"), ["tenant_id"], unique=False
        )

    _seal_existing_events()


def _seal_existing_events() -> None:
    """Chain the events written before this revision, per tenant, in id order."""
    from app.core import audit

    connection = op.get_bind()
    events = sa.table(
        "events",
        sa.column("id", sa.Integer),
        sa.column("tenant_id", sa.String),
        sa.column("at", sa.DateTime(timezone=True)),
        sa.column("kind", sa.String),
        sa.column("actor_id", sa.String),
        sa.column("subject_id", sa.String),
        sa.column("session_id", sa.String),
        sa.column("ip", sa.String),
        sa.column("details", sa.JSON),
        sa.column("seq", sa.Integer),
        sa.column("prev_hash", sa.String),
        sa.column("hash", sa.String),
    )
    heads = sa.table(
        "audit_heads",
        sa.column("chain", sa.String),
        sa.column("last_hash", sa.String),
        sa.column("anchor_hash", sa.String),
        sa.column("pseudonym_key", sa.String),
        sa.column("sealed", sa.Integer),
        sa.column("purged", sa.Integer),
    )
    tenant_ids = [row[0] for row in connection.execute(sa.select(events.c.tenant_id).distinct())]
    for tenant_id in tenant_ids:
        where = (
            events.c.tenant_id.is_(None) if tenant_id is None else events.c.tenant_id == tenant_id
        )
        key = secrets.token_hex(32)
        last, count = audit.GENESIS, 0
        rows = connection.execute(sa.select(events).where(where).order_by(events.c.id)).all()
        for row in rows:
            count += 1
            at = row.at if row.at.tzinfo else row.at.replace(tzinfo=UTC)
            event = SimpleNamespace(**{**row._asdict(), "at": at, "seq": count})
            digest = audit.event_hash(last, event, key)  # type: ignore[arg-type]
            connection.execute(
                sa.update(events)
                .where(events.c.id == row.id)
                .values(seq=count, prev_hash=last, hash=digest)
            )
            last = digest
        connection.execute(
            sa.insert(heads).values(
                chain=audit.chain_of(tenant_id),
                last_hash=last,
                anchor_hash=audit.GENESIS,
                pseudonym_key=key,
                sealed=count,
                purged=0,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_deliveries_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_webhook_deliveries_event_id"))
        batch_op.drop_index("ix_webhook_deliveries_endpoint")
        batch_op.drop_index("ix_webhook_deliveries_due")
    op.drop_table("webhook_deliveries")
    with op.batch_alter_table("webhook_endpoints", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_endpoints_tenant_id"))
    op.drop_table("webhook_endpoints")
    op.drop_table("audit_heads")
    # Plain ALTER TABLE … DROP COLUMN (SQLite 3.35+): recreating these tables would trip
    # the foreign keys that point at them.
    with op.batch_alter_table("events", schema=None, recreate="never") as batch_op:
        batch_op.drop_index("ix_events_actor_id")
        batch_op.drop_index("ix_events_tenant_seq")
        batch_op.drop_column("hash")
        batch_op.drop_column("prev_hash")
        batch_op.drop_column("seq")
    with op.batch_alter_table("tenants", schema=None, recreate="never") as batch_op:
        batch_op.drop_column("ip_anonymise_days")
        batch_op.drop_column("events_retention_days")
        batch_op.drop_column("sessions_retention_days")
