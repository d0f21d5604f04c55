"""tick records count their attempts (one record per day, retries reuse it)

Revision ID: 0004
Revises: 0005
Create Date: 2026-12-02 10:00:00.000000
"""

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('tickrun', sa.Column('attempts', sa.Integer(), nullable=False, server_default='1'))


def downgrade() -> None:
    with op.batch_alter_table('tickrun') as batch:
        batch.drop_column('attempts')
