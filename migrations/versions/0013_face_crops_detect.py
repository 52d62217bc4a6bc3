"""face crops (the aligned 112x112 JPEG the recognizer embedded) and detect jobs

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TYPE job_type ADD VALUE IF NOT EXISTS 'detect'")
    # Biometric data like the embedding: deleted with its face row (and so with its person, gallery,
    # account and organisation through the existing cascades). NULL for faces enrolled before it.
    op.add_column("faces", sa.Column("crop", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    op.drop_column("faces", "crop")
    op.execute("DELETE FROM jobs WHERE type = 'detect'")
    # PostgreSQL cannot drop an enum value; 'detect' stays in the type, unused.
