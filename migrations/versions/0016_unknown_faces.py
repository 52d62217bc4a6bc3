"""recurring unknown faces: a per-gallery opt-in pool of unmatched faces, grouped into strangers

Revision ID: 0016
Revises: 0015
"""

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("galleries", sa.Column("unknowns_enabled", sa.Boolean(), nullable=False, server_default="false"))
    op.add_column(
        "galleries", sa.Column("unknowns_retention_days", sa.Integer(), nullable=False, server_default="30")
    )
    # The next stranger's number in this gallery: ids are small and stable ("unknown #17").
    op.add_column("galleries", sa.Column("unknowns_next_number", sa.Integer(), nullable=False, server_default="1"))
    op.create_table(
        "unknown_groups",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("gallery_id", UUID(as_uuid=True), sa.ForeignKey("galleries.id", ondelete="CASCADE"), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("centroid", Vector(512), nullable=False),
        sa.Column("sightings", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sources", JSONB(), nullable=False, server_default="[]"),
        sa.Column("recurring_at", sa.DateTime(timezone=True)),
        sa.Column("webhook_url", sa.Text()),
        sa.Column("deliveries", JSONB(), nullable=False, server_default="[]"),
        sa.UniqueConstraint("gallery_id", "number", name="uq_unknown_groups_gallery_number"),
    )
    op.create_index("ix_unknown_groups_gallery_last_seen", "unknown_groups", ["gallery_id", "last_seen"])
    op.create_table(
        "unknown_faces",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column(
            "group_id", UUID(as_uuid=True), sa.ForeignKey("unknown_groups.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("gallery_id", UUID(as_uuid=True), sa.ForeignKey("galleries.id", ondelete="CASCADE"), nullable=False),
        sa.Column("embedding", Vector(512), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("crop", sa.LargeBinary()),
        sa.Column("job_id", UUID(as_uuid=True)),
        sa.Column("source", sa.String(100)),
        sa.Column("det_score", sa.Float(), nullable=False),
        sa.Column("bbox", JSONB(), nullable=False),
        sa.Column("quality", JSONB()),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ix_unknown_faces_group", "unknown_faces", ["group_id", "seen_at"])
    op.create_index("ix_unknown_faces_gallery_seen", "unknown_faces", ["gallery_id", "seen_at"])


def downgrade() -> None:
    op.drop_table("unknown_faces")
    op.drop_table("unknown_groups")
    for column in ("unknowns_next_number", "unknowns_retention_days", "unknowns_enabled"):
        op.drop_column("galleries", column)
