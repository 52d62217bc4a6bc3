"""a gallery may fix its own recognition threshold (otherwise derived from MATCH_FPIR and its size)

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("galleries", sa.Column("match_threshold", sa.Float(), nullable=True))


def downgrade() -> None:
    op.drop_column("galleries", "match_threshold")
