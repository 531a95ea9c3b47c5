"""seal the audit chains' pseudonym keys with the secret key

``audit_heads.pseudonym_key`` held each chain's HMAC key in clear, so a dump of the
database alone let anyone compute the pseudonym of a guessed id or address and link an
erased person's events back to them. It becomes ``pseudonym_key_sealed``: the same key,
sealed by app.sealing under HOLDFAST_SECRET_KEY (the chain as context). The hashes of
the events already sealed do not change (the key itself is the same).

Sealing needs the secret key, so this migration runs with the app's Sealer, which
``holdfast db upgrade`` hands to it (``config.attributes["sealer"]``); a database with
audit heads and no Sealer is refused. On SQLite the old column's content is overwritten
as it is dropped (``secure_delete``), so the file holds no clear key afterwards.

Revision ID: 202612060900
Revises: 202611231930
Create Date: 2026-12-06 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from app.sealing import PSEUDONYM_KEY, Sealer

revision = "202612060900"
down_revision = "202611231930"
branch_labels = None
depends_on = None

HEADS = sa.table(
    "audit_heads",
    sa.column("chain", sa.String),
    sa.column("pseudonym_key", sa.String),
    sa.column("pseudonym_key_sealed", sa.LargeBinary),
)


def _sealer(rows: list) -> Sealer:
    sealer = context.config.attributes.get("sealer")
    if rows and sealer is None:
        raise RuntimeError(
            "sealing the audit pseudonym keys needs the secret key: run `holdfast db upgrade`"
        )
    return sealer  # type: ignore[no-any-return]


def upgrade() -> None:
    connection = op.get_bind()
    rows = connection.execute(sa.select(HEADS.c.chain, HEADS.c.pseudonym_key)).all()
    sealer = _sealer(rows)  # refused before anything changes
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("PRAGMA secure_delete=ON")
    with op.batch_alter_table("audit_heads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pseudonym_key_sealed", sa.LargeBinary(), nullable=True))
    for chain, key in rows:
        sealed = sealer.seal(PSEUDONYM_KEY, bytes.fromhex(key), chain)
        connection.execute(
            sa.update(HEADS).where(HEADS.c.chain == chain).values(pseudonym_key_sealed=sealed)
        )
    with op.batch_alter_table("audit_heads", schema=None) as batch_op:
        batch_op.alter_column(
            "pseudonym_key_sealed", existing_type=sa.LargeBinary(), nullable=False
        )
        batch_op.drop_column("pseudonym_key")
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("PRAGMA secure_delete=OFF")


def downgrade() -> None:
    connection = op.get_bind()
    rows = connection.execute(sa.select(HEADS.c.chain, HEADS.c.pseudonym_key_sealed)).all()
    sealer = _sealer(rows)  # refused before anything changes
    keys = {chain: sealer.open(PSEUDONYM_KEY, sealed, chain).hex() for chain, sealed in rows}
    with op.batch_alter_table("audit_heads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pseudonym_key", sa.String(length=64), nullable=True))
    for chain, key in keys.items():
        connection.execute(sa.update(HEADS).where(HEADS.c.chain == chain).values(pseudonym_key=key))
    with op.batch_alter_table("audit_heads", schema=None) as batch_op:
        batch_op.alter_column("pseudonym_key", existing_type=sa.String(length=64), nullable=False)
        batch_op.drop_column("pseudonym_key_sealed")
