"""The closed loop's events in the monitoring report (``fleet.report``): which to read, list and draw.

The events come from ``fleet.loop.state`` (the ``loop_events`` table of the prediction log's database).
Each model's section lists its newest events in the window (``armed`` left out: it is bookkeeping, not a
decision) and its timeline marks the decisive ones: a rollout started, promoted, rolled back or aborted,
a retrained challenger's gate passed or refused, and a drift check that found drift.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import sqlalchemy as sa
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from fleet.loop import state
from fleet.predlog import DatabaseUnavailable, utcnow

logger = logging.getLogger(__name__)

SHOWN = 50  # newest events per model in its table
HEADER = ("time (UTC)", "event", "rollout", "reason")
# The decisive events, drawn on a model's timeline: colour, line style, legend label.
MARKERS = {"started": ("#1a202c", "--", "rollout started"), "promoted": ("#2f855a", "-", "promoted"),
           "rolled_back": ("#c53030", "-", "rolled back"), "aborted": ("#975a16", "-", "aborted"),
           "gate_passed": ("#38a169", ":", "gate passed"), "gate_refused": ("#e53e3e", ":", "gate refused"),
           "drift": ("#d69e2e", "-.", "drift found")}
Marker = tuple[pd.Timestamp, str]  # when, and its ``MARKERS`` key


def read(log: Any, model: str, since: datetime | timedelta | None) -> list[state.Event] | None:
    """The model's events in the window, oldest first, without ``armed``; None when they cannot be read,
    so a broken events table costs only its part of the page, not the whole report."""
    start = utcnow() - since if isinstance(since, timedelta) else since
    try:
        found = state.events(log.engine, model, since=start)
    except (sa.exc.SQLAlchemyError, DatabaseUnavailable) as error:
        logger.warning("report: the closed loop's events of %s could not be read: %s", model,
                       str(error).splitlines()[0])
        return None
    return [event for event in found if event["kind"] != "armed"]


def rows(events: Sequence[state.Event]) -> list[list[str]]:
    """Table cells (HTML) of the newest ``SHOWN`` events, oldest first, so a rollout reads start to end."""
    return [[event["created_at"].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"), html.escape(event["kind"]),
             '<span class="muted">—</span>' if event["rollout_id"] is None else str(event["rollout_id"]),
             html.escape(event["reason"])] for event in events[-SHOWN:]]


def markers(events: Sequence[state.Event]) -> list[Marker]:
    """The events worth a line on the timeline; a drift check only when it found drift (its reason then
    starts with "drift in"), else every routine check would draw one."""
    out = []
    for event in events:
        kind = event["kind"]
        if kind == "drift_checked":
            kind = "drift" if event["reason"].startswith("drift in") else ""
        if kind in MARKERS:
            out.append((pd.to_datetime(event["created_at"], utc=True), kind))
    return out


def widen(limits: tuple[Any, Any], drawn: Sequence[Marker], pad: pd.Timedelta) -> tuple[Any, Any]:
    """Time-axis limits that also hold every marker, ``pad`` inside the edge: a rollback after the
    canary's last traffic (which it ended) must stay in view, not on the frame."""
    times = [when for when, _ in drawn]
    return (min(limits[0], min(times) - pad), max(limits[1], max(times) + pad)) if times else limits


def draw(figure: Figure, axes: Sequence[Any], drawn: Sequence[Marker]) -> None:
    """A vertical line per marker on every time panel, and one legend under the figure naming the kinds
    drawn, so a rollout's start and end read against its traffic, latency and accuracy."""
    if not drawn:
        return
    for axis in axes:
        for when, kind in drawn:
            colour, style, _ = MARKERS[kind]
            axis.axvline(when, color=colour, linestyle=style, linewidth=1.2, alpha=0.8)
    kinds = list(dict.fromkeys(kind for _, kind in drawn))
    handles = [Line2D([], [], color=MARKERS[k][0], linestyle=MARKERS[k][1]) for k in kinds]
    figure.legend(handles, [MARKERS[k][2] for k in kinds], loc="outside lower center", ncol=len(kinds),
                  fontsize=8, title="closed loop", title_fontsize=8)
