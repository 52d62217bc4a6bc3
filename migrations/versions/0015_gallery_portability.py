"""gallery portability: export, import and re-embedding jobs; a gallery's serving model; pending
export archives (erased with any person or face of their gallery); staged re-embeddings

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import Vector
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

# An export archive holds persons and faces: deleting any person or face of its gallery deletes the
# gallery's archives in the same transaction, whatever path deleted them (API, account or
# organisation deletion through cascades). The gallery row is locked first so that an export being
# written (which holds it FOR SHARE) either commits before and is deleted here, or waits and reads
# the gallery without the deleted rows.
ERASE_EXPORTS = """
CREATE FUNCTION erase_gallery_exports() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM galleries WHERE id IN (SELECT DISTINCT gallery_id FROM gone) FOR NO KEY UPDATE;
    DELETE FROM gallery_exports WHERE gallery_id IN (SELECT DISTINCT gallery_id FROM gone);
    RETURN NULL;
END $$
"""


def upgrade() -> None:
    for value in ("export", "import", "reembed"):
        op.execute(f"ALTER TYPE job_type ADD VALUE IF NOT EXISTS '{value}'")
    # The recognizer whose embeddings the gallery's searches and enrollments use; NULL: the worker's.
    op.add_column("galleries", sa.Column("model", sa.String(100), nullable=True))
    op.execute(
        "UPDATE galleries g SET model = ("
        " SELECT f.model FROM faces f WHERE f.gallery_id = g.id GROUP BY f.model ORDER BY count(*) DESC LIMIT 1)"
    )
    # A long job's progress ({"done": n, "total": m}), written while it runs.
    op.add_column("jobs", sa.Column("progress", JSONB, nullable=True))
    op.create_table(
        "gallery_exports",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column(
            "organisation_id", UUID(as_uuid=True), sa.ForeignKey("organisations.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("gallery_id", UUID(as_uuid=True), sa.ForeignKey("galleries.id", ondelete="CASCADE"), nullable=False),
        sa.Column("job_id", UUID(as_uuid=True), nullable=False, unique=True),
        sa.Column("archive", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_gallery_exports_gallery", "gallery_exports", ["gallery_id"])
    op.create_index("ix_gallery_exports_expires", "gallery_exports", ["expires_at"])
    # Embeddings of the next model, computed from the crops while the gallery still serves the old
    # ones; moved into faces in one transaction when complete. Deleted with their face.
    op.create_table(
        "face_reembeddings",
        sa.Column("face_id", UUID(as_uuid=True), sa.ForeignKey("faces.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("model", sa.String(100), primary_key=True),
        sa.Column("gallery_id", UUID(as_uuid=True), sa.ForeignKey("galleries.id", ondelete="CASCADE"), nullable=False),
        sa.Column("embedding", Vector(512), nullable=False),
    )
    op.create_index("ix_face_reembeddings_gallery_model", "face_reembeddings", ["gallery_id", "model"])
    op.execute(ERASE_EXPORTS)
    for table in ("persons", "faces"):
        op.execute(
            f"CREATE TRIGGER {table}_erase_gallery_exports AFTER DELETE ON {table} "
            "REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION erase_gallery_exports()"
        )


def downgrade() -> None:
    for table in ("persons", "faces"):
        op.execute(f"DROP TRIGGER IF EXISTS {table}_erase_gallery_exports ON {table}")
    op.execute("DROP FUNCTION IF EXISTS erase_gallery_exports()")
    op.drop_table("face_reembeddings")
    op.drop_table("gallery_exports")
    op.drop_column("jobs", "progress")
    op.drop_column("galleries", "model")
    op.execute("DELETE FROM jobs WHERE type IN ('export', 'import', 'reembed')")
    # PostgreSQL cannot drop an enum value; the three stay in the type, unused.
