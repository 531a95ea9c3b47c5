"""memberships and a second factor: one account per tenant and address, MFA steps,
recovery codes

* ``users.email`` is unique per tenant instead of across the deployment (the unique
  constraint on ``email`` gives way to a unique index on ``(tenant_id, email)``), with
  a plain index on ``email`` for sign-in, which looks an address up in every tenant. Existing rows keep
  working as they are: each address has at most one account so far.
* ``mfa_challenges``: the second step of a sign-in (the authenticator app's code, a
  recovery code, or adding an app where the tenant requires one).
* ``recovery_codes``: ten single-use codes per person, stored as keyed hashes.

On SQLite the users table is rebuilt (batch mode) to drop its unique constraint;
app.migrate switches foreign-key enforcement off around it, as SQLite prescribes.
Downgrading fails while an address has accounts in two tenants (the address would no
longer be unique): erase or rename one of them first. The previous release runs on this
schema until an address gets a second account.

Revision ID: 202612060945
Revises: 202612060900
Create Date: 2026-12-06 09:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "202612060945"
down_revision = "202612060900"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The initial schema made uq_users_email a table constraint; this revision's
    # downgrade puts it back as a unique index (no table rebuild): drop whichever it is.
    inspector = sa.inspect(op.get_bind())
    if "uq_users_email" in {c["name"] for c in inspector.get_unique_constraints("users")}:
        with op.batch_alter_table("users", schema=None) as batch_op:
            batch_op.drop_constraint("uq_users_email", type_="unique")
    elif "uq_users_email" in {i["name"] for i in inspector.get_indexes("users")}:
        op.drop_index("uq_users_email", table_name="users")
    op.create_index("ix_users_tenant_email", "users", ["tenant_id", "email"], unique=True)
    op.create_index("ix_users_email", "users", ["email"], unique=False)

    op.create_table(
        "mfa_challenges",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("purpose", sa.String(length=10), nullable=False),
        sa.Column("session_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("consumed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ip", sa.String(length=45), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("device_hash", sa.String(length=64), nullable=True),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_mfa_challenges_tenant_id_tenants")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_mfa_challenges_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mfa_challenges")),
    )
    with op.batch_alter_table("mfa_challenges", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mfa_challenges_tenant_id"), ["tenant_id"])
        batch_op.create_index(batch_op.f("ix_mfa_challenges_user_id"), ["user_id"])

    op.create_table(
        "recovery_codes",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name=op.f("fk_recovery_codes_tenant_id_tenants")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_recovery_codes_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recovery_codes")),
        sa.UniqueConstraint("user_id", "code_hash", name="uq_recovery_codes_user_code"),
    )
    with op.batch_alter_table("recovery_codes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_recovery_codes_tenant_id"), ["tenant_id"])
        batch_op.create_index(batch_op.f("ix_recovery_codes_user_id"), ["user_id"])


def downgrade() -> None:
    op.drop_table("recovery_codes")
    op.drop_table("mfa_challenges")
    op.drop_index("ix_users_email", table_name="users")
    op.drop_index("ix_users_tenant_email", table_name="users")
    # A unique index rather than the original table constraint: the same rule, without
    # rebuilding the table (which SQLite cannot do while foreign keys are enforced).
    op.create_index("uq_users_email", "users", ["email"], unique=True)
