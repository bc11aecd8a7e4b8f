"""The monitoring report: one self-contained HTML page from the prediction log.

Per model: traffic per version over time, latency p50/p99, live accuracy where feedback exists,
input drift per feature (latest check and history), which versions served in which role over time,
and the closed loop's events (``fleet.loop.state``, via ``fleet.report_events``): a table of the window's
rollout steps, holds, drift checks and retraining gates, and markers on the timeline where a rollout
started and how it ended.
Plots are PNGs drawn by matplotlib's Agg canvas (no display, no pyplot state) and inlined as base64;
the page has no scripts and links nothing, so it can be mailed, archived or opened offline.

Everything over time is drawn from the log's five-minute aggregates (``fleet.predlog.rollup``), never
from raw rows, so a render takes about as long at a million logged predictions as at a thousand; the
server never renders it in a serving worker (``fleet.monitor`` does, in its own process).

``python -m fleet.report --out report.html`` (``--db`` or ``DATABASE_URL`` picks the database) brings
the aggregates up to date first, so it also works on a log no server is running beside.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from fleet import report_events
from fleet.loop.state import Event
from fleet.paths import write_atomically
from fleet.predlog import rollup

VERSION_COLOURS = ("#3182ce", "#dd6b20", "#38a169", "#805ad5", "#d53f8c", "#319795", "#718096")
ROLE_COLOURS = {"stable": "#2b6cb0", "canary": "#dd6b20", "shadow": "#718096", "pinned": "#38a169"}
BUCKETS = ("5min", "15min", "1h", "6h", "1D", "7D")  # the aggregates are five-minute buckets
TRAFFIC = ["model", "version", "role", "bucket", "predictions", "latency_hist", "first_at", "last_at",
           "feedback", "correct"]
DRIFT = ["model", "version", "feature", "kind", "measure", "value", "threshold", "noise_floor", "drifted",
         "n", "created_at"]
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#1a202c}
h1{font-size:1.6em}h2{border-bottom:2px solid #e2e8f0;padding-top:12px}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #e2e8f0;padding:4px 10px;
text-align:right}th{background:#f7fafc}td:first-child,th:first-child{text-align:left}
.alarm{color:#c53030;font-weight:600}.ok{color:#2f855a}.muted{color:#718096}img{max-width:100%}
.events td{text-align:left}
"""


# -- data ------------------------------------------------------------------------------------------------


def _frame(rows: list[dict[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(columns))
    for column in ("bucket", "first_at", "last_at", "created_at"):
        if column in frame and len(frame):
            frame[column] = pd.to_datetime(frame[column], utc=True)
    return frame


def _bucket(span: pd.Timedelta, points: int = 40) -> str:
    """The smallest display bucket that puts ``span`` into at most ``points`` points."""
    for bucket in BUCKETS:
        if span / pd.Timedelta(bucket) <= points:
            return bucket
    return BUCKETS[-1]


def _traffic(log: Any, since: Any, models: Sequence[str] | None,
             span: tuple[datetime, datetime]) -> tuple[pd.DataFrame, str]:
    """The aggregates of ``models`` at the coarsest width their display bucket allows, and that bucket."""
    bucket = _bucket(pd.Timestamp(span[1]) - pd.Timestamp(span[0]))
    width = max(w for w in rollup.WIDTHS if w <= pd.Timedelta(bucket).total_seconds())
    return _frame(rollup.read_buckets(log.engine, since, models, width), TRAFFIC), bucket


def _predictions(part: pd.DataFrame) -> float:
    return float(part["predictions"].sum())


def _latency(q: float) -> Any:
    return lambda part: rollup.quantile(rollup.merged(part["latency_hist"]), q)


def _accuracy(part: pd.DataFrame) -> float | None:
    total = part["feedback"].sum()
    return float(part["correct"].sum() / total) if total else None


# -- plots -----------------------------------------------------------------------------------------------


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)  # the constrained layout already fits it
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f'<img alt="plot" src="data:image/png;base64,{encoded}">'


def _time_axis(axis: Any, title: str, ylabel: str, limits: tuple[Any, Any] | None = None) -> None:
    """A time axis over ``limits`` (padded around the data, so a single point sits in a short span
    instead of matplotlib's default of years)."""
    if limits is not None:
        axis.set_xlim(*limits)
    locator = AutoDateLocator()
    axis.xaxis.set_major_locator(locator)
    axis.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    axis.set_title(title, fontsize=10)
    axis.set_ylabel(ylabel)
    axis.grid(alpha=0.3)


def _limits(times: pd.Series, pad: pd.Timedelta) -> tuple[Any, Any]:
    return times.min() - pad, times.max() + pad


def _series(frame: pd.DataFrame, bucket: str, measure: Any, by: str = "version") -> dict[str, pd.Series]:
    """Per ``by`` value, ``measure`` of the rows in each display bucket (buckets it leaves empty dropped)."""
    out = {}
    for key, part in frame.groupby(by):
        points = [(start, measure(rows)) for start, rows in part.groupby(part["bucket"].dt.floor(bucket))]
        kept = [(start, value) for start, value in points if value is not None]
        out[str(key)] = pd.Series([v for _, v in kept], index=[t for t, _ in kept], dtype=float)
    return out


def _colours(versions: Any) -> dict[str, str]:
    """One colour per version, the same in every panel of a model."""
    ordered = sorted({str(v) for v in versions}, key=_version_order)
    return {v: VERSION_COLOURS[i % len(VERSION_COLOURS)] for i, v in enumerate(ordered)}


def _model_figure(traffic: pd.DataFrame, bucket: str,
                  markers: Sequence[report_events.Marker] = ()) -> Figure:
    figure = Figure(figsize=(12, 7.5), layout="constrained")
    (count_ax, latency_ax), (accuracy_ax, versions_ax) = figure.subplots(2, 2)
    colour = _colours(traffic["version"])
    limits = _limits(traffic["bucket"].dt.floor(bucket), pd.Timedelta(bucket))
    limits = report_events.widen(limits, markers, pd.Timedelta(bucket))
    for version, series in _series(traffic, bucket, _predictions).items():
        count_ax.plot(series.index, series.values, marker=".", label=version, color=colour[version])
    _time_axis(count_ax, f"Traffic per version (predictions per {bucket})", "predictions", limits)
    count_ax.legend(fontsize=8)
    for q, style in ((0.5, "-"), (0.99, "--")):
        for version, series in _series(traffic, bucket, _latency(q)).items():
            latency_ax.plot(series.index, series.values, style, marker=".", color=colour[version],
                            label=f"{version} p{round(q * 100)}")
    _time_axis(latency_ax, "Latency p50 (solid) and p99 (dashed)", "ms", limits)
    latency_ax.legend(fontsize=8, ncol=2)
    _accuracy_panel(accuracy_ax, traffic, bucket, colour, limits)
    _versions_panel(versions_ax, traffic, bucket, limits)
    report_events.draw(figure, [a for a in (count_ax, latency_ax, accuracy_ax, versions_ax) if a.axison],
                       markers)
    return figure


def _accuracy_panel(axis: Any, traffic: pd.DataFrame, bucket: str, colour: dict[str, str],
                    limits: tuple[Any, Any]) -> None:
    if not traffic["feedback"].sum():
        axis.text(0.5, 0.5, "no feedback yet", ha="center", va="center", transform=axis.transAxes)
        axis.set_axis_off()
        return
    for version, series in _series(traffic, bucket, _accuracy).items():
        if len(series):
            axis.plot(series.index, series.values, marker="o", label=version, color=colour.get(version))
    axis.set_ylim(-0.02, 1.02)
    _time_axis(axis, "Live accuracy (share of predictions matching feedback)", "accuracy", limits)
    axis.legend(fontsize=8)


def _versions_panel(axis: Any, traffic: pd.DataFrame, bucket: str, limits: tuple[Any, Any]) -> None:
    """One lane per version; a bar wherever it served, coloured by its role."""
    width = pd.Timedelta(bucket)
    versions = sorted(traffic["version"].unique(), key=_version_order)
    for lane, version in enumerate(versions):
        part = traffic[traffic["version"] == version]
        for role, rows in part.groupby("role"):
            starts = rows["bucket"].dt.floor(bucket).drop_duplicates()
            axis.broken_barh([(start, width) for start in starts], (lane - 0.35, 0.7),
                             color=ROLE_COLOURS.get(str(role), "#a0aec0"), label=str(role))
    axis.set_yticks(range(len(versions)), versions)
    handles, labels = axis.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    axis.legend(unique.values(), unique.keys(), fontsize=8)
    _time_axis(axis, "Versions over time, by role", "version", limits)


def _version_order(version: str) -> tuple[int, str]:
    return (int(version[1:]), version) if version[1:].isdigit() else (10**9, version)


def _drift_figure(drift: pd.DataFrame) -> Figure:
    """Latest check per version: each measure over its alarm level; and the history of that ratio."""
    drift = drift.assign(ratio=drift["value"] / drift[["threshold", "noise_floor"]].max(axis=1))
    figure = Figure(figsize=(12, 4.2), layout="constrained")
    latest_ax, history_ax = figure.subplots(1, 2)
    latest_time = drift.groupby("version")["created_at"].transform("max")
    latest = drift[drift["created_at"] == latest_time]
    labels = [f"{r.version} {r.feature} {r.measure}" for r in latest.itertuples()]
    colours = ["#c53030" if d else "#3182ce" for d in latest["drifted"]]
    latest_ax.barh(labels, latest["ratio"], color=colours)
    latest_ax.axvline(1.0, color="#c53030", linestyle="--", linewidth=1)
    latest_ax.set_title("Latest drift check: measure / alarm level (red: drifted)", fontsize=10)
    latest_ax.tick_params(axis="y", labelsize=7)
    latest_ax.invert_yaxis()
    worst = drift.groupby(["version", "feature", "created_at"])["ratio"].max().reset_index()
    for (version, feature), part in worst.groupby(["version", "feature"]):
        history_ax.plot(part["created_at"], part["ratio"], marker=".", label=f"{version} {feature}")
    history_ax.axhline(1.0, color="#c53030", linestyle="--", linewidth=1)
    pad = max((drift["created_at"].max() - drift["created_at"].min()) / 20, pd.Timedelta("5min"))
    _time_axis(history_ax, "Drift per feature over time (worst measure / alarm level)", "ratio",
               _limits(drift["created_at"], pad))
    if worst[["version", "feature"]].drop_duplicates().shape[0] <= 12:
        history_ax.legend(fontsize=7)
    return figure


def _fleet_figure(traffic: pd.DataFrame, bucket: str) -> Figure:
    """Answered predictions per model (shadow copies left out)."""
    figure = Figure(figsize=(12, 3.2), layout="constrained")
    axis = figure.subplots()
    answered = traffic[traffic["role"] != "shadow"]
    for model, series in _series(answered, bucket, _predictions, by="model").items():
        axis.plot(series.index, series.values, marker=".", label=model)
    limits = _limits(traffic["bucket"].dt.floor(bucket), pd.Timedelta(bucket))
    _time_axis(axis, f"Traffic per model (answered predictions per {bucket})", "predictions", limits)
    axis.legend(fontsize=8)
    return figure


# -- tables and page ---------------------------------------------------------------------------------------


def _table(header: Sequence[str], rows: list[Sequence[Any]], css: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    opening = f'<table class="{css}">' if css else "<table>"
    return f"{opening}<tr>{head}</tr>{body}</table>"


def _version_table(traffic: pd.DataFrame, accuracies: dict[str, Any]) -> str:
    rows = []
    for version, part in sorted(traffic.groupby("version"), key=lambda kv: _version_order(str(kv[0]))):
        acc = accuracies.get(str(version))
        shown = f"{acc.value:.3f} ({acc.total})" if acc and acc.total else '<span class="muted">—</span>'
        hist = rollup.merged(part["latency_hist"])
        rows.append([html.escape(str(version)), html.escape(", ".join(sorted(part["role"].unique()))),
                     f"{int(part['predictions'].sum()):,}", f"{rollup.quantile(hist, 0.5):.1f}",
                     f"{rollup.quantile(hist, 0.99):.1f}", shown,
                     part["first_at"].min().strftime("%Y-%m-%d %H:%M"),
                     part["last_at"].max().strftime("%Y-%m-%d %H:%M")])
    return _table(["version", "roles", "predictions", "p50 ms", "p99 ms", "live accuracy (n)",
                   "first (UTC)", "last (UTC)"], rows)


def _drift_table(drift: pd.DataFrame) -> str:
    latest = drift[drift["created_at"] == drift.groupby("version")["created_at"].transform("max")]
    rows = [[html.escape(str(r.version)), html.escape(str(r.feature)), html.escape(str(r.measure)),
             f"{r.value:.3f}", f"{r.threshold:.3f}", f"{r.noise_floor:.3f}", f"{r.n:,}",
             '<span class="alarm">drifted</span>' if r.drifted else '<span class="ok">ok</span>']
            for r in latest.itertuples()]
    return _table(["version", "feature", "measure", "value", "threshold", "noise floor", "rows", ""], rows)


def _loop_part(events: Sequence[Event] | None) -> list[str]:
    """The closed loop's events as a table, or a line saying why there is none (like input drift)."""
    if events is None:
        return ["<h3>Closed loop</h3>", '<p class="muted">The closed loop’s events could not be read.</p>']
    if not events:
        return ["<h3>Closed loop</h3>", '<p class="muted">No rollouts or triggers in this window.</p>']
    return ["<h3>Closed loop</h3>", _table(report_events.HEADER, report_events.rows(events), css="events")]


def _model_section(log: Any, model: str, since: Any, span: tuple[datetime, datetime] | None,
                   drift: pd.DataFrame, accuracies: dict[str, Any]) -> str:
    drift = drift[drift["model"] == model]
    events = report_events.read(log, model, since)
    parts = [f"<h2>{html.escape(model)}</h2>"]
    if span is not None:
        traffic, bucket = _traffic(log, since, [model], span)
        figure = _model_figure(traffic, bucket, report_events.markers(events or []))
        parts += [_version_table(traffic, accuracies), _png(figure)]
    else:
        parts.append('<p class="muted">No predictions logged in this period.</p>')
    parts += _loop_part(events)
    parts.append("<h3>Input drift</h3>")
    if len(drift):
        parts += [_drift_table(drift), _png(_drift_figure(drift))]
    else:
        parts.append('<p class="muted">No drift check has run for this model yet.</p>')
    return "\n".join(parts)


def render(log: Any, models: Sequence[str] | None = None, since: datetime | timedelta | None = None,
           title: str = "Bento Fleet monitoring") -> str:
    """The report as an HTML string."""
    spans = rollup.spans(log.engine, since, models)
    drift = _frame(log.drift_history(since=since, models=models), DRIFT)
    chosen = list(models) if models is not None else sorted(set(spans) | set(drift["model"]))
    accuracies: dict[str, dict[str, Any]] = {}
    for acc in log.accuracies(models=chosen):
        accuracies.setdefault(acc.model, {})[acc.version] = acc
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    fleet, bucket = _traffic(log, since, models, (min(s[0] for s in spans.values()),
                                                  max(s[1] for s in spans.values()))) if spans else (None, "")
    total = int(fleet["predictions"].sum()) if fleet is not None else 0
    parts = [f"<h1>{html.escape(title)}</h1>",
             f'<p class="muted">Generated {generated}; {total:,} predictions, drawn from the log’s '
             "aggregates (latency quantiles to within one 1.2× histogram step); live accuracy over "
             "each version's newest 1,000 labelled predictions among its model's newest 2,000.</p>"]
    if fleet is not None:
        parts.append(_png(_fleet_figure(fleet, bucket)))
    else:
        parts.append('<p class="muted">No predictions logged yet.</p>')
    parts += [_model_section(log, model, since, spans.get(model), drift, accuracies.get(model, {}))
              for model in chosen]
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}'
            f"</title><style>{STYLE}</style></head><body>\n{body}\n</body></html>\n")


def write_report(log: Any, path: str | Path, models: Sequence[str] | None = None,
                 since: datetime | timedelta | None = None, began_ns: int | None = None) -> Path:
    """Bring the aggregates up to date, then write the report to ``path`` (atomically); returns the path.
    ``began_ns``: the file's mtime, when the render began (the monitor's "rendered at")."""
    path = Path(path)
    rollup.catch_up(log.engine)
    write_atomically(path, render(log, models, since), mtime_ns=began_ns)
    return path


def main(argv: list[str] | None = None) -> None:
    from fleet.predlog import PredictionLog

    parser = argparse.ArgumentParser(prog="python -m fleet.report", description=__doc__.split("\n")[0])
    parser.add_argument("--db", help="database URL or SQLite path (default: DATABASE_URL, else "
                                     "var/predlog.db)")
    parser.add_argument("--out", default="report.html")
    parser.add_argument("--models", help="comma-separated models (default: all logged)")
    parser.add_argument("--hours", type=float, help="only the last N hours")
    args = parser.parse_args(argv)
    models = args.models.split(",") if args.models else None
    since = timedelta(hours=args.hours) if args.hours else None
    with PredictionLog(args.db) as log:
        print(f"wrote {write_report(log, args.out, models, since)}")


if __name__ == "__main__":
    main()
