"""Who may call: the registered systems (OAuth clients), the people's accounts, the client
assertions accepted (never twice), and the authenticated principal on every access-trail entry.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
INSTANT = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "api_clients",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("client_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("establishment", sa.Text(), nullable=True),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("secret_hash", sa.Text(), nullable=True),
        sa.Column("jwks", sa.JSON(), nullable=True),
        sa.Column("jwks_url", sa.Text(), nullable=True),
        sa.Column("created_at", INSTANT, nullable=False),
        sa.Column("revoked_at", INSTANT, nullable=True),
        sa.ForeignKeyConstraint(["establishment"], ["authorities.code"],
                                name=op.f("fk_api_clients_establishment_authorities")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_clients")),
        sa.UniqueConstraint("client_id", name=op.f("uq_api_clients_client_id")),
        sa.UniqueConstraint("name", name=op.f("uq_api_clients_name")),
    )
    op.create_table(
        "user_accounts",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("establishment", sa.Text(), nullable=True),
        sa.Column("created_at", INSTANT, nullable=False),
        sa.Column("disabled_at", INSTANT, nullable=True),
        sa.ForeignKeyConstraint(["establishment"], ["authorities.code"],
                                name=op.f("fk_user_accounts_establishment_authorities")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_accounts")),
        sa.UniqueConstraint("name", name=op.f("uq_user_accounts_name")),
    )
    op.create_table(
        "user_sessions",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("user_name", sa.Text(), nullable=False),
        sa.Column("csrf", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("created_at", INSTANT, nullable=False),
        sa.Column("expires_at", INSTANT, nullable=False),
        sa.Column("revoked_at", INSTANT, nullable=True),
        sa.Column("issuer", sa.Text(), nullable=True),
        sa.Column("roles", sa.JSON(), nullable=True),
        sa.Column("establishment", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_user_sessions_token_hash")),
    )
    op.create_table(
        "accepted_assertions",
        sa.Column("jti", sa.Text(), nullable=False),
        sa.Column("client_id", sa.Text(), nullable=False),
        sa.Column("expires_at", INSTANT, nullable=False),
        sa.PrimaryKeyConstraint("jti", name=op.f("pk_accepted_assertions")),
    )
    op.create_index("ix_accepted_assertions_expires_at", "accepted_assertions",
                    ["expires_at"])
    with op.batch_alter_table("audit_events") as table:
        table.add_column(sa.Column("roles", sa.JSON(), nullable=True))
        table.add_column(sa.Column("token_id", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_events") as table:
        table.drop_column("token_id")
        table.drop_column("roles")
    op.drop_index("ix_accepted_assertions_expires_at", table_name="accepted_assertions")
    op.drop_table("accepted_assertions")
    op.drop_table("user_sessions")
    op.drop_table("user_accounts")
    op.drop_table("api_clients")
