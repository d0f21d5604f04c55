"""variant traits (named properties from the recipe or prompt)

Revision ID: 0010
Revises: 0004

Continues main's chain 0001 -> 0002 -> 0007 -> 0008 -> 0003 -> 0005 -> 0004
from its head, so there is a single head.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("creative", schema=None) as batch_op:
        batch_op.add_column(sa.Column("traits", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("creative", schema=None) as batch_op:
        batch_op.drop_column("traits")
