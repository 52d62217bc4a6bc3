"""organisations and API keys

Every account belongs to an organisation; galleries (with their persons and faces), jobs,
batches, the webhook secret and the audit log belong to the organisation. Each existing
account becomes its own organisation (same id), so a single-account deployment sees no change.
A gallery outlives the account that created it (owner_id becomes the creator, SET NULL).
API keys are service accounts of an organisation, stored as sha256 hashes only.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _org_column(table: str) -> None:
    op.add_column(table, sa.Column("organisation_id", sa.UUID(), nullable=True))


def upgrade() -> None:
    op.create_table(
        "organisations",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("webhook_secret", sa.String(length=100), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute("INSERT INTO organisations (id, name, webhook_secret) SELECT id, email, webhook_secret FROM accounts")
    for table in ("accounts", "galleries", "jobs", "batches", "audit_events"):
        _org_column(table)
    op.execute("UPDATE accounts SET organisation_id = id")
    for table in ("galleries", "jobs", "batches"):
        op.execute(f"UPDATE {table} t SET organisation_id = a.organisation_id FROM accounts a WHERE a.id = t.owner_id")
    op.execute(
        "UPDATE audit_events e SET organisation_id = a.organisation_id FROM accounts a WHERE a.id = e.actor_id"
    )
    for table in ("accounts", "galleries", "jobs", "batches"):
        op.alter_column(table, "organisation_id", nullable=False)
        op.create_foreign_key(
            f"{table}_organisation_id_fkey", table, "organisations", ["organisation_id"], ["id"], ondelete="CASCADE"
        )
    op.create_index("ix_accounts_organisation", "accounts", ["organisation_id"])
    op.create_index("ix_jobs_organisation_created", "jobs", ["organisation_id", "created_at"])
    op.create_index("ix_audit_events_organisation_at", "audit_events", ["organisation_id", "at"])
    op.drop_column("accounts", "webhook_secret")

    # Galleries: named per organisation, kept when their creator's account goes.
    op.drop_constraint("uq_galleries_owner_name", "galleries", type_="unique")
    op.create_unique_constraint("uq_galleries_organisation_name", "galleries", ["organisation_id", "name"])
    op.drop_constraint("galleries_owner_id_fkey", "galleries", type_="foreignkey")
    op.alter_column("galleries", "owner_id", nullable=True)
    op.create_foreign_key("galleries_owner_id_fkey", "galleries", "accounts", ["owner_id"], ["id"], ondelete="SET NULL")

    op.create_table(
        "api_keys",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("organisation_id", sa.UUID(), nullable=False),
        sa.Column("created_by_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", postgresql.ENUM(name="role", create_type=False), nullable=False),
        sa.Column("galleries", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("prefix", sa.String(length=20), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["organisation_id"], ["organisations.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["created_by_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_hash"),
    )
    op.create_index("ix_api_keys_organisation", "api_keys", ["organisation_id", "created_at"])
    op.add_column("audit_events", sa.Column("api_key_id", sa.UUID(), nullable=True))


def downgrade() -> None:
    op.drop_column("audit_events", "api_key_id")
    op.drop_index("ix_api_keys_organisation", table_name="api_keys")
    op.drop_table("api_keys")
    op.execute("DELETE FROM galleries WHERE owner_id IS NULL")
    op.drop_constraint("galleries_owner_id_fkey", "galleries", type_="foreignkey")
    op.alter_column("galleries", "owner_id", nullable=False)
    op.create_foreign_key("galleries_owner_id_fkey", "galleries", "accounts", ["owner_id"], ["id"], ondelete="CASCADE")
    op.drop_constraint("uq_galleries_organisation_name", "galleries", type_="unique")
    op.create_unique_constraint("uq_galleries_owner_name", "galleries", ["owner_id", "name"])
    op.add_column("accounts", sa.Column("webhook_secret", sa.String(length=100), nullable=True))
    op.execute(
        "UPDATE accounts a SET webhook_secret = o.webhook_secret FROM organisations o WHERE o.id = a.organisation_id"
    )
    op.drop_index("ix_audit_events_organisation_at", table_name="audit_events")
    op.drop_index("ix_jobs_organisation_created", table_name="jobs")
    op.drop_index("ix_accounts_organisation", table_name="accounts")
    for table in ("accounts", "galleries", "jobs", "batches"):
        op.drop_constraint(f"{table}_organisation_id_fkey", table, type_="foreignkey")
    for table in ("accounts", "galleries", "jobs", "batches", "audit_events"):
        op.drop_column(table, "organisation_id")
    op.drop_table("organisations")
