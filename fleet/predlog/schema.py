"""The prediction log's schema and rows: the tables, the column types that behave the same on
SQLite and PostgreSQL, and ``Prediction`` with the helpers that turn what a model saw and said into
bounded, comparable JSON. It is the bottom of the package (everything else reads these tables) and is
kept in step with the Alembic migrations in ``fleet/migrations``; a test compares the two.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from fleet.ids import time_ordered_id

ROLES = ("stable", "canary", "shadow", "pinned")
ANSWERED = ("stable", "canary", "pinned")  # roles whose output reached the caller
MAX_FIELD_CHARS = 64 * 1024


# -- schema (kept in step with fleet/migrations; a test compares them) ------------------------------


class UTCDateTime(sa.TypeDecorator):
    """Aware UTC datetimes on every backend (SQLite stores naive text; naive input is taken as UTC)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
metadata = sa.MetaData()
predictions = sa.Table(
    "predictions", metadata,
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
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_predictions_request", "request_id", "model", "item"),
    sa.Index("ix_predictions_model_time", "model", "created_at"),
    sa.Index("ix_predictions_time", "created_at"),
)
feedback = sa.Table(
    "feedback", metadata,
    sa.Column("model", sa.String(64), primary_key=True),
    sa.Column("request_id", sa.String(128), primary_key=True),
    sa.Column("item", sa.Integer, primary_key=True, server_default="0"),
    sa.Column("label", JSON, nullable=False),
    sa.Column("label_key", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_feedback_model_time", "model", "created_at"),
    sa.Index("ix_feedback_time", "created_at"),  # the rollup's "feedback since its last run"
)
drift_results = sa.Table(
    "drift_results", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(64), nullable=False),
    sa.Column("version", sa.String(64), nullable=False),
    sa.Column("feature", sa.String(128), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("measure", sa.String(32), nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("threshold", sa.Float, nullable=False),
    sa.Column("noise_floor", sa.Float, nullable=False),
    sa.Column("drifted", sa.Boolean, nullable=False),
    sa.Column("n", sa.Integer, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_drift_results_model_time", "model", "created_at"),
)
# Aggregates of predictions over five minutes, hours and days (``seconds``; ``fleet.predlog.rollup``):
# what the report reads, kept after retention removes the raw rows. ``latency_hist`` holds counts per
# bin of ``rollup.LATENCY_EDGES``.
prediction_buckets = sa.Table(
    "prediction_buckets", metadata,
    sa.Column("seconds", sa.Integer, primary_key=True),
    sa.Column("model", sa.String(64), primary_key=True),
    sa.Column("version", sa.String(64), primary_key=True),
    sa.Column("role", sa.String(16), primary_key=True),
    sa.Column("bucket", UTCDateTime, primary_key=True),
    sa.Column("predictions", sa.Integer, nullable=False),
    sa.Column("latency_hist", JSON, nullable=False),
    sa.Column("first_at", UTCDateTime, nullable=False),
    sa.Column("last_at", UTCDateTime, nullable=False),
    sa.Column("feedback", sa.Integer, nullable=False),
    sa.Column("correct", sa.Integer, nullable=False),
    sa.Index("ix_prediction_buckets_time", "seconds", "bucket"),
)
# Bookkeeping of the rollup and retention: ``rolled_up_at`` (last catch-up), ``raw_since`` (older raw
# rows were removed by retention, so buckets before it are final).
rollup_state = sa.Table(
    "rollup_state", metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("at", UTCDateTime, nullable=False),
)

# The closed loop (``fleet.loop``): one row per rollout, ``stage`` its place in ``policy["stages"]``;
# ``active`` is the model's name while it runs and NULL after, so a unique index allows one running
# rollout per model on every backend. Every decision is a ``loop_events`` row with its evidence.
rollouts = sa.Table(
    "rollouts", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(64), nullable=False),
    sa.Column("tag", sa.String(128), nullable=False),
    sa.Column("baseline", sa.String(128), nullable=False),
    sa.Column("policy", JSON, nullable=False),
    sa.Column("stage", sa.Integer, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("active", sa.String(64), nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("analysis", JSON, nullable=True),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("stage_started_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index("ux_rollouts_active", "active", unique=True),
)
loop_events = sa.Table(
    "loop_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(64), nullable=False),
    sa.Column("rollout_id", sa.Integer, nullable=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("evidence", JSON, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_loop_events_model_time", "model", "created_at"),
)

# The routing plan when the fleet shares a PostgreSQL database (``fleet.plan_db``): one row per
# revision, the newest is the plan every worker of every replica serves.
routing_plans = sa.Table(
    "routing_plans", metadata,
    sa.Column("revision", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("routes", JSON, nullable=False),
    sa.Column("written_at", UTCDateTime, nullable=False),
)

# One row per serving worker of every replica on the database, refreshed every second
# (``fleet.plan_db.publish_worker``): what it serves, so a plan change waits for every replica.
plan_workers = sa.Table(
    "plan_workers", metadata,
    sa.Column("replica", sa.String(255), primary_key=True),
    sa.Column("pid", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("status", JSON, nullable=False),
    sa.Column("seen_at", UTCDateTime, nullable=False),
)


# -- rows ---------------------------------------------------------------------------------------------


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Prediction:
    """One logged prediction. ``label`` is the predicted class compared with feedback (see label_key);
    ``item`` is its position in a batch request, so feedback can name one item of a batch."""

    request_id: str
    model: str
    version: str
    role: str
    inputs: Any
    outputs: Any
    latency_ms: float
    label: Any = None
    item: int = 0
    id: str = field(default_factory=time_ordered_id)  # the primary key: see fleet.ids
    created_at: datetime = field(default_factory=utcnow)

    def to_row(self) -> dict[str, Any]:
        """The row as the writer inserts it: inputs and outputs as their bounded JSON text
        (``inputs_json``, ``outputs_json``: encoded once here, never again on the way to the database;
        see ``fleet.predlog.database.insert_ignoring_duplicates``), the label as its comparison key."""
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {self.role!r}")
        if not math.isfinite(float(self.latency_ms)):
            raise ValueError("latency_ms must be finite")
        return {"id": self.id, "request_id": str(self.request_id), "item": int(self.item),
                "model": self.model, "version": self.version, "role": self.role,
                "inputs_json": encoded(self.inputs), "outputs_json": encoded(self.outputs),
                "label": label_key(self.label), "latency_ms": float(self.latency_ms),
                "created_at": self.created_at}


def _jsonable(value: Any) -> Any:
    """numpy scalars and arrays (``tolist``), tuples and sets become plain JSON values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# One encoder for every row: ``json.dumps`` with options builds a new ``JSONEncoder`` per call.
_encode = json.JSONEncoder(default=_jsonable, allow_nan=False).encode


def encoded(value: Any, limit: int = MAX_FIELD_CHARS) -> str:
    """The JSON text of ``value``, or of a fingerprint of it when that text is longer than ``limit``."""
    text = _encode(value)
    if len(text) <= limit:
        return text
    return json.dumps({"_truncated": True, "chars": len(text),
                       "sha256": hashlib.sha256(text.encode()).hexdigest()})


def bounded(value: Any, limit: int = MAX_FIELD_CHARS) -> Any:
    """``value`` as plain JSON, or a fingerprint of it when its JSON is longer than ``limit``."""
    return json.loads(encoded(value, limit))


def label_key(label: Any) -> str | None:
    """The text two labels are compared by: ``1``, ``1.0``, ``True`` and ``"1"`` all match."""
    if hasattr(label, "tolist"):
        label = label.tolist()
    if label is None:
        return None
    if isinstance(label, bool):
        return str(int(label))
    if isinstance(label, float) and label.is_integer():
        return str(int(label))
    if isinstance(label, (str, int, float)):
        return str(label)
    return json.dumps(label, sort_keys=True, separators=(",", ":"), default=_jsonable)


def as_prediction(row: Prediction | Mapping[str, Any]) -> Prediction:
    return row if isinstance(row, Prediction) else Prediction(**row)
