"""batch enrollment: batches, and the batch each enrollment job belongs to

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("owner_id", sa.UUID(), nullable=False),
        sa.Column("gallery_id", sa.UUID(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("webhook_url", sa.String(length=2000), nullable=True),
        sa.Column("deliveries", postgresql.JSONB(astext_type=sa.Text()), server_default="[]", nullable=False),
        sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["gallery_id"], ["galleries.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("owner_id", "idempotency_key", name="uq_batches_owner_key"),
    )
    op.add_column("jobs", sa.Column("batch_id", sa.UUID(), nullable=True))
    op.create_foreign_key("fk_jobs_batch", "jobs", "batches", ["batch_id"], ["id"], ondelete="CASCADE")
    op.create_index("ix_jobs_batch", "jobs", ["batch_id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_batch", table_name="jobs")
    op.drop_constraint("fk_jobs_batch", "jobs", type_="foreignkey")
    op.drop_column("jobs", "batch_id")
    op.drop_table("batches")
