"""lock_organisation_outstanding_cost(org): the budget check's lock and sum in one call

Revision ID: 0012
Revises: 0011
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Two statements inside one call (domain/budget.admit). One SQL statement cannot do it: its
    # snapshot is taken before it waits for the lock, so a sum in the same statement (a scalar
    # subquery of the SELECT ... FOR UPDATE) misses the jobs of the submission that held the lock.
    # In a VOLATILE PL/pgSQL function each statement takes a new snapshot (READ COMMITTED), so the
    # sum, run after the lock is granted, sees them. The statuses are domain.models.UNFINISHED, as
    # in the partial index ix_jobs_organisation_outstanding (migration 0011), which the sum reads.
    op.execute(
        """
        CREATE FUNCTION lock_organisation_outstanding_cost(org uuid) RETURNS bigint
        LANGUAGE plpgsql VOLATILE AS $$
        BEGIN
            PERFORM 1 FROM organisations WHERE id = org FOR NO KEY UPDATE;
            RETURN (
                SELECT coalesce(sum(cost), 0) FROM jobs
                WHERE organisation_id = org AND status IN ('queued', 'running')
            );
        END
        $$
        """
    )


def downgrade() -> None:
    op.execute("DROP FUNCTION lock_organisation_outstanding_cost(uuid)")
