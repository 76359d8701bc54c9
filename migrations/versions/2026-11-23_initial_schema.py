"""Initial schema: sources, profiles, identities, sessions, events, profile_merges.

Revision ID: 0001
Revises:
Create Date: 2026-11-23 11:00:44.893089
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

#: JSON on SQLite, JSONB on PostgreSQL.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "profiles",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("traits", JSON, nullable=False),
        sa.Column("anonymous", sa.Boolean(), server_default=sa.text("(true)"), nullable=False),
        sa.Column("visits", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("merged_into", sa.String(length=36), nullable=True),
        sa.ForeignKeyConstraint(
            ["merged_into"], ["profiles.id"], name=op.f("fk_profiles_merged_into_profiles")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_profiles")),
    )
    with op.batch_alter_table("profiles", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_profiles_merged_into"), ["merged_into"], unique=False)

    op.create_table(
        "sources",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("dialect", sa.String(length=16), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("(true)"), nullable=False),
        sa.Column("secret", sa.String(length=200), nullable=True),
        sa.Column("signed_only", sa.Boolean(), server_default=sa.text("(false)"), nullable=False),
        sa.Column("allowed_origins", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sources")),
    )
    op.create_table(
        "identities",
        sa.Column("scope", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.Column("profile_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["profile_id"], ["profiles.id"], name=op.f("fk_identities_profile_id_profiles")
        ),
        sa.PrimaryKeyConstraint("scope", "kind", "value", name=op.f("pk_identities")),
    )
    with op.batch_alter_table("identities", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_identities_profile_id"), ["profile_id"], unique=False)

    op.create_table(
        "profile_merges",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("from_profile_id", sa.String(length=36), nullable=False),
        sa.Column("into_profile_id", sa.String(length=36), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("source_id", sa.String(length=128), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["from_profile_id"], ["profiles.id"], name=op.f("fk_profile_merges_from_profile_id_profiles")
        ),
        sa.ForeignKeyConstraint(
            ["into_profile_id"], ["profiles.id"], name=op.f("fk_profile_merges_into_profile_id_profiles")
        ),
        sa.ForeignKeyConstraint(
            ["source_id"], ["sources.id"], name=op.f("fk_profile_merges_source_id_sources")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_profile_merges")),
    )
    with op.batch_alter_table("profile_merges", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_profile_merges_from_profile_id"), ["from_profile_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_profile_merges_into_profile_id"), ["into_profile_id"], unique=False
        )

    op.create_table(
        "sessions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("source_id", sa.String(length=128), nullable=False),
        sa.Column("client_key", sa.String(length=128), nullable=False),
        sa.Column("profile_id", sa.String(length=36), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("context", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["profile_id"], ["profiles.id"], name=op.f("fk_sessions_profile_id_profiles")
        ),
        sa.ForeignKeyConstraint(["source_id"], ["sources.id"], name=op.f("fk_sessions_source_id_sources")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sessions")),
        sa.UniqueConstraint("source_id", "client_key", name=op.f("uq_sessions_source_id_client_key")),
    )
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sessions_profile_id"), ["profile_id"], unique=False)

    op.create_table(
        "events",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("source_id", sa.String(length=128), nullable=False),
        sa.Column("profile_id", sa.String(length=36), nullable=True),
        sa.Column("session_id", sa.String(length=36), nullable=True),
        sa.Column("type", sa.String(length=255), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("properties", JSON, nullable=False),
        sa.Column("context", JSON, nullable=False),
        sa.Column("dedup_key", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(["profile_id"], ["profiles.id"], name=op.f("fk_events_profile_id_profiles")),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], name=op.f("fk_events_session_id_sessions")),
        sa.ForeignKeyConstraint(["source_id"], ["sources.id"], name=op.f("fk_events_source_id_sources")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
        sa.UniqueConstraint("source_id", "dedup_key", name=op.f("uq_events_source_id_dedup_key")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_profile_time", ["profile_id", "time", "id"], unique=False)
        batch_op.create_index("ix_events_session_id", ["session_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_session_id")
        batch_op.drop_index("ix_events_profile_time")

    op.drop_table("events")
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sessions_profile_id"))

    op.drop_table("sessions")
    with op.batch_alter_table("profile_merges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_profile_merges_into_profile_id"))
        batch_op.drop_index(batch_op.f("ix_profile_merges_from_profile_id"))

    op.drop_table("profile_merges")
    with op.batch_alter_table("identities", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_identities_profile_id"))

    op.drop_table("identities")
    op.drop_table("sources")
    with op.batch_alter_table("profiles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_profiles_merged_into"))

    op.drop_table("profiles")
