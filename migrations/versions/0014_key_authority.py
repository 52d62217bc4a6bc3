"""API key authority: a job remembers the key that submitted it; keys minted by keys are revoked

Revision ID: 0014
Revises: 0013
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A gallery-scoped key sees the gallery-less jobs (a verification of two photos) that it
    # submitted itself, and no other; no foreign key, so that a revoked key's jobs stay readable.
    op.add_column("jobs", sa.Column("api_key_id", UUID(as_uuid=True), nullable=True))
    # Keys may no longer create keys (only a signed-in admin may): the ones a key created would
    # outlive the revocation of that key, so they are revoked here. The audit log names them.
    op.execute(
        "DELETE FROM api_keys WHERE id::text IN ("
        " SELECT target_id FROM audit_events WHERE action = 'api_key.create' AND api_key_id IS NOT NULL)"
    )


def downgrade() -> None:
    op.drop_column("jobs", "api_key_id")
