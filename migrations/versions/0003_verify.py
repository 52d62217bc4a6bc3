"""verify jobs: a job type and a second input photo

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TYPE job_type ADD VALUE IF NOT EXISTS 'verify'")
    op.add_column("jobs", sa.Column("input_image_2", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    op.execute("DELETE FROM jobs WHERE type = 'verify'")
    op.drop_column("jobs", "input_image_2")
    # PostgreSQL cannot drop an enum value; 'verify' stays in the type, unused.
