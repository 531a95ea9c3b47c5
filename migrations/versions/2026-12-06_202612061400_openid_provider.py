"""openid provider: registered apps, authorization codes, grants and tokens

Holdfast as the OpenID Provider of a tenant's apps (docs/oidc.md): ``oidc_clients``
(the apps, secrets as keyed hashes), ``oidc_codes`` (single-use authorization codes),
``oidc_grants`` (an app signed in through one Holdfast session) and ``oidc_tokens``
(access and refresh tokens, keyed hashes only) and ``oidc_logout_deliveries``
(back-channel logout tokens on their way out). Additive: no existing table changes.

Revision ID: 202612061400
Revises: 202612061100
Create Date: 2026-12-06 14:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "202612061400"
down_revision = "202612061300"
branch_labels = None
depends_on = None


def _tenant(table: str) -> sa.Column:
    return sa.Column(
        "tenant_id",
        sa.String(40),
        sa.ForeignKey("tenants.id", name=f"fk_{table}_tenant_id_tenants"),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "oidc_clients",
        sa.Column("id", sa.String(40), nullable=False),
        _tenant("oidc_clients"),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=True),
        sa.Column("redirect_uris", sa.JSON(), nullable=False),
        sa.Column("post_logout_redirect_uris", sa.JSON(), nullable=False),
        sa.Column("backchannel_logout_uri", sa.String(2000), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(40), nullable=True),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_oidc_clients"),
    )
    op.create_index("ix_oidc_clients_tenant_id", "oidc_clients", ["tenant_id"])

    op.create_table(
        "oidc_codes",
        sa.Column("id", sa.String(40), nullable=False),
        _tenant("oidc_codes"),
        sa.Column("code_hash", sa.String(64), nullable=False),
        sa.Column(
            "client_id",
            sa.String(40),
            sa.ForeignKey("oidc_clients.id", name="fk_oidc_codes_client_id_oidc_clients"),
            nullable=False,
        ),
        sa.Column(
            "user_id",
            sa.String(40),
            sa.ForeignKey("users.id", name="fk_oidc_codes_user_id_users"),
            nullable=False,
        ),
        sa.Column("session_id", sa.String(40), nullable=False),
        sa.Column("redirect_uri", sa.String(2000), nullable=False),
        sa.Column("scope", sa.String(500), nullable=False),
        sa.Column("nonce", sa.String(500), nullable=True),
        sa.Column("code_challenge", sa.String(128), nullable=True),
        sa.Column("code_challenge_method", sa.String(10), nullable=True),
        sa.Column("auth_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("amr", sa.JSON(), nullable=False),
        sa.Column("acr", sa.String(100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_oidc_codes"),
        sa.UniqueConstraint("code_hash", name="uq_oidc_codes_code_hash"),
    )
    op.create_index("ix_oidc_codes_tenant_id", "oidc_codes", ["tenant_id"])
    op.create_index("ix_oidc_codes_client_id", "oidc_codes", ["client_id"])
    op.create_index("ix_oidc_codes_session_id", "oidc_codes", ["session_id"])

    op.create_table(
        "oidc_grants",
        sa.Column("id", sa.String(40), nullable=False),
        _tenant("oidc_grants"),
        sa.Column(
            "client_id",
            sa.String(40),
            sa.ForeignKey("oidc_clients.id", name="fk_oidc_grants_client_id_oidc_clients"),
            nullable=False,
        ),
        sa.Column(
            "user_id",
            sa.String(40),
            sa.ForeignKey("users.id", name="fk_oidc_grants_user_id_users"),
            nullable=False,
        ),
        sa.Column("session_id", sa.String(40), nullable=False),
        sa.Column("code_id", sa.String(40), nullable=True),
        sa.Column("scope", sa.String(500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(30), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_oidc_grants"),
    )
    op.create_index("ix_oidc_grants_tenant_id", "oidc_grants", ["tenant_id"])
    op.create_index("ix_oidc_grants_client_id", "oidc_grants", ["client_id"])
    op.create_index("ix_oidc_grants_session_id", "oidc_grants", ["session_id"])
    op.create_index("ix_oidc_grants_code_id", "oidc_grants", ["code_id"])

    op.create_table(
        "oidc_tokens",
        sa.Column("id", sa.String(40), nullable=False),
        _tenant("oidc_tokens"),
        sa.Column(
            "grant_id",
            sa.String(40),
            sa.ForeignKey("oidc_grants.id", name="fk_oidc_tokens_grant_id_oidc_grants"),
            nullable=False,
        ),
        sa.Column("access_hash", sa.String(64), nullable=False),
        sa.Column("refresh_hash", sa.String(64), nullable=True),
        sa.Column("scope", sa.String(500), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_oidc_tokens"),
        sa.UniqueConstraint("access_hash", name="uq_oidc_tokens_access_hash"),
        sa.UniqueConstraint("refresh_hash", name="uq_oidc_tokens_refresh_hash"),
    )
    op.create_index("ix_oidc_tokens_tenant_id", "oidc_tokens", ["tenant_id"])
    op.create_index("ix_oidc_tokens_grant_id", "oidc_tokens", ["grant_id"])

    op.create_table(
        "oidc_logout_deliveries",
        sa.Column("id", sa.String(40), nullable=False),
        _tenant("oidc_logout_deliveries"),
        sa.Column(
            "client_id",
            sa.String(40),
            sa.ForeignKey(
                "oidc_clients.id", name="fk_oidc_logout_deliveries_client_id_oidc_clients"
            ),
            nullable=False,
        ),
        sa.Column("session_id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("jti", sa.String(40), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(300), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_oidc_logout_deliveries"),
    )
    op.create_index("ix_oidc_logout_deliveries_tenant_id", "oidc_logout_deliveries", ["tenant_id"])
    op.create_index("ix_oidc_logout_deliveries_client_id", "oidc_logout_deliveries", ["client_id"])
    op.create_index(
        "ix_oidc_logout_deliveries_session_id", "oidc_logout_deliveries", ["session_id"]
    )
    op.create_index(
        "ix_oidc_logout_deliveries_due", "oidc_logout_deliveries", ["status", "next_attempt_at"]
    )


def downgrade() -> None:
    op.drop_table("oidc_logout_deliveries")
    op.drop_table("oidc_tokens")
    op.drop_table("oidc_grants")
    op.drop_table("oidc_codes")
    op.drop_table("oidc_clients")
