"""jobs carry a cost (by pixels), summed per organisation against ORG_MAX_PENDING_COST

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Jobs already queued count one unit each (their photos' sizes are not re-read).
    op.add_column("jobs", sa.Column("cost", sa.Integer(), nullable=False, server_default="1"))
    # Only outstanding jobs, so every submission's sum reads a few rows, not the retention period's.
    op.create_index(
        "ix_jobs_organisation_outstanding",
        "jobs",
        ["organisation_id"],
        postgresql_include=["cost"],
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_organisation_outstanding", table_name="jobs")
    op.drop_column("jobs", "cost")
