"""uploads skip compression: photos are JPEG, PNG or WebP, already compressed

A recognition of several photos stores them one after another in `input_image` (their sizes in
the job's params), so an upload may now be megabytes: STORAGE EXTERNAL keeps it out of line
(TOAST) without PostgreSQL first trying pglz on bytes that do not compress.

Revision ID: 0017
Revises: 0016
"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE jobs ALTER COLUMN input_image SET STORAGE EXTERNAL")
    op.execute("ALTER TABLE jobs ALTER COLUMN input_image_2 SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.execute("ALTER TABLE jobs ALTER COLUMN input_image SET STORAGE EXTENDED")
    op.execute("ALTER TABLE jobs ALTER COLUMN input_image_2 SET STORAGE EXTENDED")
