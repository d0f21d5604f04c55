"""caps per period: campaign.cap_period, ledgerentry.day, experiment budget waits, accountcap

Revision ID: 0003
Revises: 0008
Create Date: 2026-12-01 10:00:00.000000

Existing campaigns keep lifetime caps until the next tick syncs their plan;
existing ledger entries are dated by the day they were written (the best
that is known of them), so they fall in that day's period.
"""

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0003"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "cap_period",
                sqlmodel.sql.sqltypes.AutoString(length=10),
                nullable=False,
                server_default="lifetime",
            )
        )
    with op.batch_alter_table("experiment", schema=None) as batch_op:
        batch_op.add_column(sa.Column("waiting_until", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("waiting_since", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("waited_days", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("ledgerentry", schema=None) as batch_op:
        batch_op.add_column(sa.Column("day", sa.Date(), nullable=True))
        batch_op.create_index(batch_op.f("ix_ledgerentry_day"), ["day"], unique=False)
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        op.execute("UPDATE ledgerentry SET day = date(created_at) WHERE day IS NULL")
    else:
        op.execute("UPDATE ledgerentry SET day = CAST(created_at AS DATE) WHERE day IS NULL")
    op.create_table(
        "accountcap",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("monthly_cap_minor", sa.Integer(), nullable=True),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    # The one row exists from the start, so concurrent ticks only ever update it.
    op.execute(
        "INSERT INTO accountcap (id, monthly_cap_minor, currency, updated_at) "
        "VALUES ('account', NULL, 'USD', CURRENT_TIMESTAMP)"
    )


def downgrade() -> None:
    op.drop_table("accountcap")
    with op.batch_alter_table("ledgerentry", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledgerentry_day"))
        batch_op.drop_column("day")
    with op.batch_alter_table("experiment", schema=None) as batch_op:
        batch_op.drop_column("waited_days")
        batch_op.drop_column("waiting_since")
        batch_op.drop_column("waiting_until")
    with op.batch_alter_table("campaign", schema=None) as batch_op:
        batch_op.drop_column("cap_period")
