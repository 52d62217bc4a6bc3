"""recognize jobs of several photos: their uploads, in order, until the job ends

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("input_images", postgresql.ARRAY(sa.LargeBinary()), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "input_images")
