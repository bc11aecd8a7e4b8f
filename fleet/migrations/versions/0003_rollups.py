"""Prediction aggregates over five minutes, hours and days (the report's source, kept after
retention), rollup bookkeeping, and an index of feedback by time.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
    op.create_table(
        "prediction_buckets",
        sa.Column("seconds", sa.Integer, primary_key=True),
        sa.Column("model", sa.String(64), primary_key=True),
        sa.Column("version", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(16), primary_key=True),
        sa.Column("bucket", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("predictions", sa.Integer, nullable=False),
        sa.Column("latency_hist", json, nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("feedback", sa.Integer, nullable=False),
        sa.Column("correct", sa.Integer, nullable=False),
    )
    op.create_index("ix_prediction_buckets_time", "prediction_buckets", ["seconds", "bucket"])
    op.create_index("ix_feedback_time", "feedback", ["created_at"])
    op.create_table(
        "rollup_state",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rollup_state")
    op.drop_index("ix_feedback_time", "feedback")
    op.drop_table("prediction_buckets")
