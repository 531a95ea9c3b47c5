"""passkeys and sign-in links: WebAuthn credentials, their challenges, the sign-in method

* ``passkeys``: a person's WebAuthn credentials (public key, sign counter, backup flags).
* ``passkey_challenges``: one ceremony's single-use challenge (5 minutes).
* ``sessions.sign_in_method``: how each session was signed in (code, app, recovery,
  passkey, link); None for sessions from before this revision.
* ``challenges.link_hash``: the sign-in link sent beside the code.
* ``tenants.allow_passkeys`` (on) and ``require_passkeys`` (off).

All additive: the previous release runs on this schema.

Revision ID: 202612061300
Revises: 202612061100
Create Date: 2026-12-06 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "202612061300"
down_revision = "202612061100"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "passkeys",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("credential_id", sa.String(length=1400), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("sign_count", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("aaguid", sa.String(length=36), nullable=False),
        sa.Column("transports", sa.JSON(), nullable=False),
        sa.Column("backup_eligible", sa.Boolean(), nullable=False),
        sa.Column("backed_up", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_device_id", sa.String(length=40), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_device_id", sa.String(length=40), nullable=True),
        sa.Column("tenant_id", sa.String(length=40), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_passkeys_tenant_id_tenants"
        ),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_passkeys_user_id_users"),
        sa.PrimaryKeyConstraint("id", name="pk_passkeys"),
        sa.UniqueConstraint("credential_id", name="uq_passkeys_credential_id"),
    )
    op.create_index("ix_passkeys_user_id", "passkeys", ["user_id"])
    op.create_index("ix_passkeys_tenant_id", "passkeys", ["tenant_id"])
    op.create_table(
        "passkey_challenges",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("purpose", sa.String(length=10), nullable=False),
        sa.Column("challenge", sa.LargeBinary(), nullable=False),
        sa.Column("rp_id", sa.String(length=253), nullable=False),
        sa.Column("origin", sa.String(length=300), nullable=False),
        sa.Column("tenant_id", sa.String(length=40), nullable=True),
        sa.Column("user_id", sa.String(length=40), nullable=True),
        sa.Column("session_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("consumed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_passkey_challenges_tenant_id_tenants"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_passkey_challenges_user_id_users"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_passkey_challenges"),
    )
    op.create_index("ix_passkey_challenges_expires_at", "passkey_challenges", ["expires_at"])
    with op.batch_alter_table("sessions", recreate="never") as batch:
        batch.add_column(sa.Column("sign_in_method", sa.String(length=20), nullable=True))
    with op.batch_alter_table("challenges", recreate="never") as batch:
        batch.add_column(sa.Column("link_hash", sa.String(length=64), nullable=True))
    with op.batch_alter_table("tenants", recreate="never") as batch:
        batch.add_column(
            sa.Column("allow_passkeys", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
        batch.add_column(
            sa.Column("require_passkeys", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("tenants", recreate="never") as batch:
        batch.drop_column("require_passkeys")
        batch.drop_column("allow_passkeys")
    with op.batch_alter_table("challenges", recreate="never") as batch:
        batch.drop_column("link_hash")
    with op.batch_alter_table("sessions", recreate="never") as batch:
        batch.drop_column("sign_in_method")
    op.drop_index("ix_passkey_challenges_expires_at", table_name="passkey_challenges")
    op.drop_table("passkey_challenges")
    op.drop_index("ix_passkeys_tenant_id", table_name="passkeys")
    op.drop_index("ix_passkeys_user_id", table_name="passkeys")
    op.drop_table("passkeys")
