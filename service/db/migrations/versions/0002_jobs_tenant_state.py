"""Index jobs by (tenant_id, state): the quota check counts a tenant's active jobs per submission.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Without it the count reads every job the tenant ever had; with it, only the active ones."""
    op.create_index("ix_jobs_tenant_state", "jobs", ["tenant_id", "state"])


def downgrade() -> None:
    """Drop the index."""
    op.drop_index("ix_jobs_tenant_state", table_name="jobs")
