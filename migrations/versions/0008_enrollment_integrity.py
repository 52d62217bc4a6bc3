"""enrollment integrity: photo hashes on faces, idempotency records, person metadata, batches that
outlive an empty gallery

- faces.source_sha256: the sha256 of the photo a face came from (never the photo), unique per
  person, so the same photo enrolled again for the same person adds nothing; faces.quality keeps
  the quality measures shown when an operator inspects a person's faces.
- idempotency_keys: one row per (account, Idempotency-Key) with the request's fingerprint and the
  answer, for every POST that creates something (replaces batches.idempotency_key).
- persons.metadata: a small free-form JSON object.
- A gallery created by an enrollment that failed entirely is removed again; its batch and jobs
  stay readable (gallery_id SET NULL, the batch keeps the gallery's name). Deleting a gallery
  through the API still deletes its jobs (domain code does it explicitly).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

JSONB = postgresql.JSONB(astext_type=sa.Text())


def upgrade() -> None:
    op.add_column("faces", sa.Column("source_sha256", sa.String(length=64), nullable=True))
    op.add_column("faces", sa.Column("quality", JSONB, nullable=True))
    op.create_unique_constraint("uq_faces_person_source", "faces", ["person_id", "source_sha256"])
    op.create_index("ix_faces_gallery_source", "faces", ["gallery_id", "source_sha256"])

    op.add_column("persons", sa.Column("metadata", JSONB, server_default="{}", nullable=False))

    op.create_table(
        "idempotency_keys",
        sa.Column("account_id", sa.UUID(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("route", sa.String(length=200), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_body", JSONB, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("account_id", "key"),
    )
    op.create_index("ix_idempotency_keys_created", "idempotency_keys", ["created_at"])

    op.drop_constraint("uq_batches_owner_key", "batches", type_="unique")
    op.drop_column("batches", "idempotency_key")
    op.add_column("batches", sa.Column("gallery_name", sa.String(length=100), nullable=True))
    op.execute("UPDATE batches SET gallery_name = g.name FROM galleries g WHERE g.id = batches.gallery_id")
    op.alter_column("batches", "gallery_name", nullable=False)
    op.add_column("batches", sa.Column("created_gallery", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.alter_column("batches", "gallery_id", nullable=True)
    op.create_index("ix_batches_owner_created", "batches", ["owner_id", "created_at", "id"])
    _set_gallery_fk("batches", "SET NULL")
    _set_gallery_fk("jobs", "SET NULL")


def downgrade() -> None:
    _set_gallery_fk("jobs", "CASCADE")
    _set_gallery_fk("batches", "CASCADE")
    op.drop_index("ix_batches_owner_created", table_name="batches")
    op.execute("DELETE FROM batches WHERE gallery_id IS NULL")
    op.alter_column("batches", "gallery_id", nullable=False)
    op.drop_column("batches", "created_gallery")
    op.drop_column("batches", "gallery_name")
    op.add_column("batches", sa.Column("idempotency_key", sa.String(length=200), nullable=True))
    op.create_unique_constraint("uq_batches_owner_key", "batches", ["owner_id", "idempotency_key"])
    op.drop_index("ix_idempotency_keys_created", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.drop_column("persons", "metadata")
    op.drop_index("ix_faces_gallery_source", table_name="faces")
    op.drop_constraint("uq_faces_person_source", "faces", type_="unique")
    op.drop_column("faces", "quality")
    op.drop_column("faces", "source_sha256")


def _set_gallery_fk(table: str, on_delete: str) -> None:
    name = f"{table}_gallery_id_fkey"
    op.drop_constraint(name, table, type_="foreignkey")
    op.create_foreign_key(name, table, "galleries", ["gallery_id"], ["id"], ondelete=on_delete)
