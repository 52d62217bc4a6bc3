"""webhooks: a signing secret per account, a callback URL and a delivery log per job

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("accounts", sa.Column("webhook_secret", sa.String(length=100), nullable=True))
    op.add_column("jobs", sa.Column("webhook_url", sa.String(length=2000), nullable=True))
    op.add_column(
        "jobs",
        sa.Column("deliveries", postgresql.JSONB(astext_type=sa.Text()), server_default="[]", nullable=False),
    )


def downgrade() -> None:
    op.drop_column("jobs", "deliveries")
    op.drop_column("jobs", "webhook_url")
    op.drop_column("accounts", "webhook_secret")
