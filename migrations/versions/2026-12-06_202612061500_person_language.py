"""a person's language: users.language ("en", "de"), None for the browser's choice

Revision ID: 202612061500
Revises: 202612061100
Create Date: 2026-12-06 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "202612061500"
down_revision = "202612061400"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", recreate="never") as batch:
        batch.add_column(sa.Column("language", sa.String(16), nullable=True))


def downgrade() -> None:
    # ALTER TABLE … DROP COLUMN in place: recreating users would trip its foreign keys
    with op.batch_alter_table("users", recreate="never") as batch:
        batch.drop_column("language")
