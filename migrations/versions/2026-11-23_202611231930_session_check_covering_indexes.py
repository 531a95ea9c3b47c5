"""session check covering indexes: the hot path's joins answered from indexes alone

The one statement every validation runs (app.core.sessions.SESSION_FACTS) joins the
session row with its person, tenant and device by primary key. These indexes hold ``id``
and then exactly the columns that statement reads from each table, so SQLite answers the
three joins from the indexes alone, without the second descent into each table (a
lookup 13 → 10 µs on the benchmark machine). They are small (one entry per person,
tenant and device) and change only when those columns do: an email, a role, a disabled
flag, a policy, a device's trust. PostgreSQL gets them too, so both databases keep one
schema; its planner may use them for index-only scans, and the plain statement's
``INDEXED BY`` hints are SQLite's only (app.db.PlainQuery).

Revision ID: 202611231930
Revises: 202611231025
Create Date: 2026-11-23 19:30:00
"""

from __future__ import annotations

from alembic import op

revision = "202611231930"
down_revision = "202611231025"
branch_labels = None
depends_on = None

INDEXES = {
    "users": ("ix_users_session_facts", ["id", "email", "role", "disabled"]),
    "tenants": (
        "ix_tenants_session_policy",
        [
            "id",
            "idle_timeout",
            "absolute_lifetime",
            "extend_on_activity",
            "trusted_lifetime",
            "trusted_outlives_absolute",
            "ip_change",
            "ua_change",
        ],
    ),
    "devices": ("ix_devices_session_facts", ["id", "trusted_until"]),
}


def upgrade() -> None:
    for table, (name, columns) in INDEXES.items():
        op.create_index(name, table, columns, unique=False)


def downgrade() -> None:
    for table, (name, _columns) in INDEXES.items():
        op.drop_index(name, table_name=table)
