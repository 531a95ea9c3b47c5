"""oidc app people and keys: an app for everyone or chosen people; private_key_jwt

``oidc_clients.restricted`` (off for every existing app: they stay open to everyone)
and ``oidc_client_people``, the people chosen for a restricted app (docs/oidc.md,
"Who may use an app"); ``oidc_clients.jwks`` (an app's inline public keys, for
private_key_jwt) and ``oidc_assertion_jtis`` (client assertions already used). Additive.

Revision ID: 202612061800
Revises: 202612061600
Create Date: 2026-12-06 18:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "202612061800"
down_revision = "202612061600"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("oidc_clients", recreate="never") as batch:
        batch.add_column(
            sa.Column("restricted", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch.add_column(sa.Column("jwks", sa.JSON(), nullable=True))
    op.create_table(
        "oidc_client_people",
        sa.Column(
            "tenant_id",
            sa.String(40),
            sa.ForeignKey("tenants.id", name="fk_oidc_client_people_tenant_id_tenants"),
            nullable=False,
        ),
        sa.Column(
            "client_id",
            sa.String(40),
            sa.ForeignKey("oidc_clients.id", name="fk_oidc_client_people_client_id_oidc_clients"),
            nullable=False,
        ),
        sa.Column(
            "user_id",
            sa.String(40),
            sa.ForeignKey("users.id", name="fk_oidc_client_people_user_id_users"),
            nullable=False,
        ),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "user_id", name="pk_oidc_client_people"),
    )
    op.create_index("ix_oidc_client_people_tenant_id", "oidc_client_people", ["tenant_id"])
    op.create_table(
        "oidc_assertion_jtis",
        sa.Column(
            "tenant_id",
            sa.String(40),
            sa.ForeignKey("tenants.id", name="fk_oidc_assertion_jtis_tenant_id_tenants"),
            nullable=False,
        ),
        sa.Column(
            "client_id",
            sa.String(40),
            sa.ForeignKey("oidc_clients.id", name="fk_oidc_assertion_jtis_client_id_oidc_clients"),
            nullable=False,
        ),
        sa.Column("jti_hash", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "jti_hash", name="pk_oidc_assertion_jtis"),
    )
    op.create_index("ix_oidc_assertion_jtis_tenant_id", "oidc_assertion_jtis", ["tenant_id"])
    op.create_index("ix_oidc_assertion_jtis_expires_at", "oidc_assertion_jtis", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_oidc_assertion_jtis_expires_at", table_name="oidc_assertion_jtis")
    op.drop_index("ix_oidc_assertion_jtis_tenant_id", table_name="oidc_assertion_jtis")
    op.drop_table("oidc_assertion_jtis")
    op.drop_index("ix_oidc_client_people_tenant_id", table_name="oidc_client_people")
    op.drop_table("oidc_client_people")
    with op.batch_alter_table("oidc_clients", recreate="never") as batch:
        batch.drop_column("jwks")
        batch.drop_column("restricted")
