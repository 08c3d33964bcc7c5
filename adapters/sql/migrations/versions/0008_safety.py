"""Review tasks of several kinds: potential duplicates (as before), automatic links undone by
a re-examination, and updates held because they describe another person (identity
collisions).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("review_tasks") as table:
        table.add_column(sa.Column("kind", sa.Text(), nullable=False,
                                   server_default="duplicate"))


def downgrade() -> None:
    with op.batch_alter_table("review_tasks") as table:
        table.drop_column("kind")
