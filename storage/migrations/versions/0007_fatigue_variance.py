"""fatigue noise per campaign and day; the platform day an experiment was abandoned

Revision ID: 0007
Revises: 0002
"""

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision = "0007"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "fatiguenoise",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("extra_variance", sa.Float(), nullable=False),
        sa.Column("weekday_factors", sa.JSON(), nullable=True),
        sa.Column("df", sa.Float(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaign.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("campaign_id", "day"),
    )
    with op.batch_alter_table("fatiguenoise", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_fatiguenoise_campaign_id"), ["campaign_id"], unique=False)
    with op.batch_alter_table("experiment", schema=None) as batch_op:
        batch_op.add_column(sa.Column("abandoned_on", sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("experiment", schema=None) as batch_op:
        batch_op.drop_column("abandoned_on")
    with op.batch_alter_table("fatiguenoise", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_fatiguenoise_campaign_id"))
    op.drop_table("fatiguenoise")
