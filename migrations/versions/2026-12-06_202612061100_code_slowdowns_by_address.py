"""code slow-downs by address: the run of wrong codes moves from the account to the address

The slow-down after many wrong codes was kept on the account (``users.failed_codes``,
``users.code_sign_in_after``), so an unknown address was never slowed down and the
answer told which addresses have accounts. It is now kept per normalised address, known
or not, in ``code_slowdowns`` under a keyed hash of the address (app.core.code_checks).
A slow-down in progress at the upgrade is forgotten (it is at most an hour long).

Revision ID: 202612061100
Revises: 202612061000
Create Date: 2026-12-06 11:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "202612061100"
down_revision = "202612061000"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "code_slowdowns",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("checks_after", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_code_slowdowns"),
    )
    op.create_index("ix_code_slowdowns_updated_at", "code_slowdowns", ["updated_at"])
    with op.batch_alter_table("users", recreate="never") as batch:
        batch.drop_column("failed_codes")
        batch.drop_column("code_sign_in_after")


def downgrade() -> None:
    with op.batch_alter_table("users", recreate="never") as batch:
        batch.add_column(sa.Column("code_sign_in_after", sa.DateTime(timezone=True)))
        batch.add_column(
            sa.Column("failed_codes", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
    op.drop_index("ix_code_slowdowns_updated_at", table_name="code_slowdowns")
    op.drop_table("code_slowdowns")
