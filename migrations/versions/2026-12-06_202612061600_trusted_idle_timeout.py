"""trusted idle timeout: tenants.trusted_idle_timeout, and in the hot path's policy index

A session on a trusted device ends after ``trusted_idle_timeout`` seconds without a
request instead of the tenant's ``idle_timeout`` (the longer of the two applies, see
app.core.sessions.idle_timeout). Every tenant, existing ones included, starts at 8 hours:
trusting a device is what a person does to stay signed in on it, and 30 idle minutes
contradicted that (issue 23). The hot path reads the column, so it joins the covering
index ``ix_tenants_session_policy`` (see the 2026-11-23 covering indexes revision), which
is made again with it.

Revision ID: 202612061600
Revises: 202612061500
Create Date: 2026-12-06 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "202612061600"
down_revision = "202612061500"
branch_labels = None
depends_on = None

POLICY_INDEX = "ix_tenants_session_policy"
COLUMNS = [
    "id",
    "idle_timeout",
    "absolute_lifetime",
    "extend_on_activity",
    "trusted_lifetime",
    "trusted_outlives_absolute",
    "ip_change",
    "ua_change",
]


def upgrade() -> None:
    # ALTER TABLE … ADD COLUMN in place: recreating tenants would trip its foreign keys
    with op.batch_alter_table("tenants", recreate="never") as batch:
        batch.add_column(
            sa.Column(
                "trusted_idle_timeout",
                sa.Integer(),
                nullable=False,
                server_default=sa.text("28800"),
            )
        )
    op.drop_index(POLICY_INDEX, table_name="tenants")
    op.create_index(POLICY_INDEX, "tenants", [*COLUMNS, "trusted_idle_timeout"], unique=False)


def downgrade() -> None:
    op.drop_index(POLICY_INDEX, table_name="tenants")
    op.create_index(POLICY_INDEX, "tenants", COLUMNS, unique=False)
    with op.batch_alter_table("tenants", recreate="never") as batch:
        batch.drop_column("trusted_idle_timeout")
