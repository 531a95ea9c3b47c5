"""security monitoring: alerts, "This wasn't me" links, TOTP, binding policy

Revision ID: 202611230927
Revises: 202611230911
Create Date: 2026-11-23 09:27:59.067082
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "202611230927"
down_revision = "202611230911"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("severity", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=True),
        sa.Column("session_id", sa.String(length=40), nullable=True),
        sa.Column("ip", sa.String(length=45), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("acknowledged_by", sa.String(length=40), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sa.String(length=40), nullable=True),
        sa.Column("dedupe_key", sa.String(length=120), nullable=True),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_alerts_tenant_id_tenants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_alerts_dedupe_key")),
    )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_alerts_tenant_created", ["tenant_id", "created_at", "id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_alerts_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(
            "ix_alerts_tenant_status", ["tenant_id", "status", "created_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_alerts_user_id"), ["user_id"], unique=False)

    op.create_table(
        "not_me_tokens",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("session_id", sa.String(length=40), nullable=False),
        sa.Column("device_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_not_me_tokens_tenant_id_tenants")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_not_me_tokens_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_not_me_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_not_me_tokens_token_hash")),
    )
    with op.batch_alter_table("not_me_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_not_me_tokens_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_not_me_tokens_user_id"), ["user_id"], unique=False)

    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("token_refused_at", sa.DateTime(timezone=True), nullable=True)
        )

    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("ip_change", sa.String(length=10), server_default="allow", nullable=False)
        )
        batch_op.add_column(
            sa.Column("ua_change", sa.String(length=10), server_default="allow", nullable=False)
        )
        batch_op.add_column(
            sa.Column(
                "require_totp_for_admins", sa.Boolean(), server_default=sa.false(), nullable=False
            )
        )
        batch_op.add_column(
            sa.Column("notify_high_alerts", sa.Boolean(), server_default=sa.true(), nullable=False)
        )

    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("totp_secret", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("totp_enabled_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("totp_last_step", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("failed_codes", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch_op.add_column(
            sa.Column("code_sign_in_after", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("code_sign_in_after")
        batch_op.drop_column("failed_codes")
        batch_op.drop_column("totp_last_step")
        batch_op.drop_column("totp_enabled_at")
        batch_op.drop_column("totp_secret")

    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("notify_high_alerts")
        batch_op.drop_column("require_totp_for_admins")
        batch_op.drop_column("ua_change")
        batch_op.drop_column("ip_change")

    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_column("token_refused_at")

    with op.batch_alter_table("not_me_tokens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_not_me_tokens_user_id"))
        batch_op.drop_index(batch_op.f("ix_not_me_tokens_tenant_id"))

    op.drop_table("not_me_tokens")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alerts_user_id"))
        batch_op.drop_index("ix_alerts_tenant_status")
        batch_op.drop_index(batch_op.f("ix_alerts_tenant_id"))
        batch_op.drop_index("ix_alerts_tenant_created")

    op.drop_table("alerts")
