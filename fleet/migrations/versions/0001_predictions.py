"""Predictions and feedback.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("item", sa.Integer, nullable=False, server_default="0"),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("inputs", JSON, nullable=False),
        sa.Column("outputs", JSON, nullable=False),
        sa.Column("label", sa.Text, nullable=True),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_predictions_request", "predictions", ["request_id", "model", "item"])
    op.create_index("ix_predictions_model_time", "predictions", ["model", "created_at"])
    op.create_index("ix_predictions_time", "predictions", ["created_at"])
    op.create_table(
        "feedback",
        sa.Column("model", sa.String(64), primary_key=True),
        sa.Column("request_id", sa.String(128), primary_key=True),
        sa.Column("item", sa.Integer, primary_key=True, server_default="0"),
        sa.Column("label", JSON, nullable=False),
        sa.Column("label_key", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_feedback_model_time", "feedback", ["model", "created_at"])


def downgrade() -> None:
    op.drop_table("feedback")
    op.drop_table("predictions")
