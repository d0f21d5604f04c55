"""platform mutation objects (ids of what a mutation made, by role)

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-01 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("platformmutation", schema=None) as batch_op:
        batch_op.add_column(sa.Column("objects", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("platformmutation", schema=None) as batch_op:
        batch_op.drop_column("objects")
