"""the reaper's state of a job in columns of its own, out of params

What the reaper keeps about a queued or running job was four keys of its `params` (the request's
parameters): when it last sent the job again, that a worker gave up on it, how many times it was
sent again after that, and that it was put back once after running past its deadline. Columns
type them and leave `params` to what the job was asked to do.

Revision ID: 0018
Revises: 0017
"""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

KEYS = ("requeued_at", "message_lost", "requeues_after_errors", "requeued_after_timeout")


def upgrade() -> None:
    op.add_column("jobs", sa.Column("requeued_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("jobs", sa.Column("message_lost", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("jobs", sa.Column("requeues_after_errors", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("jobs", sa.Column("requeued_after_timeout", sa.Boolean(), nullable=False, server_default=sa.false()))
    # Only unfinished jobs carry state the reaper still reads; finished ones lose the keys too.
    op.execute(
        """
        UPDATE jobs SET
            requeued_at = to_timestamp((params->>'requeued_at')::double precision),
            message_lost = COALESCE((params->>'message_lost')::boolean, false),
            requeues_after_errors = COALESCE((params->>'requeues_after_errors')::integer, 0),
            requeued_after_timeout = COALESCE((params->>'requeued_after_timeout')::boolean, false),
            params = params - 'requeued_at' - 'message_lost' - 'requeues_after_errors' - 'requeued_after_timeout'
        WHERE params ?| array['requeued_at', 'message_lost', 'requeues_after_errors', 'requeued_after_timeout']
        """
    )


def downgrade() -> None:
    op.execute(
        """
        UPDATE jobs SET params = params
            || CASE WHEN requeued_at IS NULL THEN '{}'::jsonb
                    ELSE jsonb_build_object('requeued_at', extract(epoch FROM requeued_at)) END
            || CASE WHEN message_lost THEN '{"message_lost": true}'::jsonb ELSE '{}'::jsonb END
            || CASE WHEN requeues_after_errors > 0
                    THEN jsonb_build_object('requeues_after_errors', requeues_after_errors) ELSE '{}'::jsonb END
            || CASE WHEN requeued_after_timeout THEN '{"requeued_after_timeout": true}'::jsonb ELSE '{}'::jsonb END
        WHERE requeued_at IS NOT NULL OR message_lost OR requeues_after_errors > 0 OR requeued_after_timeout
        """
    )
    for key in reversed(KEYS):
        op.drop_column("jobs", key)
