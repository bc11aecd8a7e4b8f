"""The monitoring report: one self-contained HTML page from the prediction log.

Per model: traffic per version over time, latency p50/p99, live accuracy where feedback exists,
input drift per feature (latest check and history) and which versions served in which role over time.
Plots are PNGs drawn by matplotlib's Agg canvas (no display, no pyplot state) and inlined as base64;
the page has no scripts and links nothing, so it can be mailed, archived or opened offline.

``python -m fleet.report --out report.html`` (``--db`` or ``DATABASE_URL`` picks the database).
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

VERSION_COLOURS = ("#3182ce", "#dd6b20", "#38a169", "#805ad5", "#d53f8c", "#319795", "#718096")
ROLE_COLOURS = {"stable": "#2b6cb0", "canary": "#dd6b20", "shadow": "#718096", "pinned": "#38a169"}
BUCKETS = ("1min", "5min", "15min", "1h", "6h", "1D", "7D")
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#1a202c}
h1{font-size:1.6em}h2{border-bottom:2px solid #e2e8f0;padding-top:12px}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #e2e8f0;padding:4px 10px;
text-align:right}th{background:#f7fafc}td:first-child,th:first-child{text-align:left}
.alarm{color:#c53030;font-weight:600}.ok{color:#2f855a}.muted{color:#718096}img{max-width:100%}
"""


# -- data ------------------------------------------------------------------------------------------------


def _frame(rows: list[dict[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(columns))
    if "created_at" in frame and len(frame):
        frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    return frame


def _bucket(times: pd.Series, points: int = 40) -> str:
    """The smallest bucket that puts the span into at most ``points`` points."""
    span = (times.max() - times.min()) if len(times) else pd.Timedelta(0)
    for bucket in BUCKETS:
        if span / pd.Timedelta(bucket) <= points:
            return bucket
    return BUCKETS[-1]


def _gather(log: Any, models: Sequence[str] | None, since: Any) -> dict[str, pd.DataFrame]:
    return {
        "traffic": _frame(log.timeline(since=since, models=models),
                          ["model", "version", "role", "latency_ms", "created_at"]),
        "accuracy": _frame(log.accuracy_timeline(since=since, models=models),
                           ["model", "version", "created_at", "hit"]),
        "drift": _frame(log.drift_history(since=since, models=models),
                        ["model", "version", "feature", "kind", "measure", "value", "threshold",
                         "noise_floor", "drifted", "n", "created_at"]),
    }


# -- plots -----------------------------------------------------------------------------------------------


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f'<img alt="plot" src="data:image/png;base64,{encoded}">'


def _time_axis(axis: Any, title: str, ylabel: str) -> None:
    locator = AutoDateLocator()
    axis.xaxis.set_major_locator(locator)
    axis.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    axis.set_title(title, fontsize=10)
    axis.set_ylabel(ylabel)
    axis.grid(alpha=0.3)


def _series_by_version(frame: pd.DataFrame, bucket: str, value: str | None, how: Any) -> dict[str, pd.Series]:
    grouped = frame.set_index("created_at").groupby("version")
    out = {}
    for version, part in grouped:
        resampled = part.resample(bucket)
        out[str(version)] = resampled.size() if value is None else resampled[value].agg(how)
    return out


def _colours(versions: Any) -> dict[str, str]:
    """One colour per version, the same in every panel of a model."""
    ordered = sorted({str(v) for v in versions}, key=_version_order)
    return {v: VERSION_COLOURS[i % len(VERSION_COLOURS)] for i, v in enumerate(ordered)}


def _model_figure(traffic: pd.DataFrame, accuracy: pd.DataFrame, bucket: str) -> Figure:
    figure = Figure(figsize=(12, 7.5), layout="constrained")
    (count_ax, latency_ax), (accuracy_ax, versions_ax) = figure.subplots(2, 2)
    colour = _colours(traffic["version"])
    for version, series in _series_by_version(traffic, bucket, None, None).items():
        count_ax.plot(series.index, series.values, marker=".", label=version, color=colour[version])
    _time_axis(count_ax, f"Traffic per version (predictions per {bucket})", "predictions")
    count_ax.legend(fontsize=8)
    for quantile, style in ((0.5, "-"), (0.99, "--")):
        for version, series in _series_by_version(
                traffic, bucket, "latency_ms", lambda s, q=quantile: s.quantile(q)).items():
            latency_ax.plot(series.index, series.values, style, color=colour[version],
                            label=f"{version} p{round(quantile * 100)}")
    _time_axis(latency_ax, "Latency p50 (solid) and p99 (dashed)", "ms")
    latency_ax.legend(fontsize=8, ncol=2)
    _accuracy_panel(accuracy_ax, accuracy, bucket, colour)
    _versions_panel(versions_ax, traffic, bucket)
    return figure


def _accuracy_panel(axis: Any, accuracy: pd.DataFrame, bucket: str, colour: dict[str, str]) -> None:
    if not len(accuracy):
        axis.text(0.5, 0.5, "no feedback yet", ha="center", va="center", transform=axis.transAxes)
        axis.set_axis_off()
        return
    for version, series in _series_by_version(accuracy, bucket, "hit", "mean").items():
        axis.plot(series.index, series.values, marker="o", label=version, color=colour.get(version))
    axis.set_ylim(-0.02, 1.02)
    _time_axis(axis, "Live accuracy (share of predictions matching feedback)", "accuracy")
    axis.legend(fontsize=8)


def _versions_panel(axis: Any, traffic: pd.DataFrame, bucket: str) -> None:
    """One lane per version; a bar wherever it served, coloured by its role."""
    width = pd.Timedelta(bucket)
    versions = sorted(traffic["version"].unique(), key=_version_order)
    for lane, version in enumerate(versions):
        part = traffic[traffic["version"] == version]
        for role, rows in part.groupby("role"):
            starts = rows["created_at"].dt.floor(bucket).drop_duplicates()
            axis.broken_barh([(start, width) for start in starts], (lane - 0.35, 0.7),
                             color=ROLE_COLOURS.get(str(role), "#a0aec0"), label=str(role))
    axis.set_yticks(range(len(versions)), versions)
    handles, labels = axis.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    axis.legend(unique.values(), unique.keys(), fontsize=8)
    _time_axis(axis, "Versions over time, by role", "version")


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
    _time_axis(history_ax, "Drift per feature over time (worst measure / alarm level)", "ratio")
    if worst[["version", "feature"]].drop_duplicates().shape[0] <= 12:
        history_ax.legend(fontsize=7)
    return figure


def _fleet_figure(traffic: pd.DataFrame, bucket: str) -> Figure:
    """Answered predictions per model (shadow copies left out)."""
    figure = Figure(figsize=(12, 3.2), layout="constrained")
    axis = figure.subplots()
    answered = traffic[traffic["role"] != "shadow"]
    for model, part in answered.set_index("created_at").groupby("model"):
        series = part.resample(bucket).size()
        axis.plot(series.index, series.values, marker=".", label=str(model))
    _time_axis(axis, f"Traffic per model (answered predictions per {bucket})", "predictions")
    axis.legend(fontsize=8)
    return figure


# -- tables and page ---------------------------------------------------------------------------------------


def _table(header: Sequence[str], rows: list[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _version_table(traffic: pd.DataFrame, accuracies: dict[str, Any]) -> str:
    rows = []
    for version, part in sorted(traffic.groupby("version"), key=lambda kv: _version_order(str(kv[0]))):
        acc = accuracies.get(str(version))
        shown = f"{acc.value:.3f} ({acc.total})" if acc and acc.total else '<span class="muted">—</span>'
        rows.append([html.escape(str(version)), html.escape(", ".join(sorted(part["role"].unique()))),
                     f"{len(part):,}", f"{part['latency_ms'].quantile(0.5):.1f}",
                     f"{part['latency_ms'].quantile(0.99):.1f}", shown,
                     part["created_at"].min().strftime("%Y-%m-%d %H:%M"),
                     part["created_at"].max().strftime("%Y-%m-%d %H:%M")])
    return _table(["version", "roles", "predictions", "p50 ms", "p99 ms", "live accuracy (n)",
                   "first (UTC)", "last (UTC)"], rows)


def _drift_table(drift: pd.DataFrame) -> str:
    latest = drift[drift["created_at"] == drift.groupby("version")["created_at"].transform("max")]
    rows = [[html.escape(str(r.version)), html.escape(str(r.feature)), html.escape(str(r.measure)),
             f"{r.value:.3f}", f"{r.threshold:.3f}", f"{r.noise_floor:.3f}", f"{r.n:,}",
             '<span class="alarm">drifted</span>' if r.drifted else '<span class="ok">ok</span>']
            for r in latest.itertuples()]
    return _table(["version", "feature", "measure", "value", "threshold", "noise floor", "rows", ""], rows)


def _model_section(model: str, data: dict[str, pd.DataFrame], accuracies: dict[str, Any]) -> str:
    traffic = data["traffic"][data["traffic"]["model"] == model]
    accuracy = data["accuracy"][data["accuracy"]["model"] == model]
    drift = data["drift"][data["drift"]["model"] == model]
    parts = [f"<h2>{html.escape(model)}</h2>"]
    if len(traffic):
        bucket = _bucket(traffic["created_at"])
        parts += [_version_table(traffic, accuracies), _png(_model_figure(traffic, accuracy, bucket))]
    else:
        parts.append('<p class="muted">No predictions logged in this period.</p>')
    parts.append("<h3>Input drift</h3>")
    if len(drift):
        parts += [_drift_table(drift), _png(_drift_figure(drift))]
    else:
        parts.append('<p class="muted">No drift check has run for this model yet.</p>')
    return "\n".join(parts)


def render(log: Any, models: Sequence[str] | None = None, since: datetime | timedelta | None = None,
           title: str = "Bento Fleet monitoring") -> str:
    """The report as an HTML string."""
    data = _gather(log, models, since)
    found = sorted(set(data["traffic"]["model"]) | set(data["drift"]["model"]))
    chosen = list(models) if models is not None else found
    accuracies: dict[str, dict[str, Any]] = {}
    for acc in log.accuracies(models=chosen):
        accuracies.setdefault(acc.model, {})[acc.version] = acc
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"<h1>{html.escape(title)}</h1>",
             f'<p class="muted">Generated {generated}; {len(data["traffic"]):,} predictions, '
             "live accuracy over each version's last 1,000 feedback rows.</p>"]
    if len(data["traffic"]):
        parts.append(_png(_fleet_figure(data["traffic"], _bucket(data["traffic"]["created_at"]))))
    else:
        parts.append('<p class="muted">No predictions logged yet.</p>')
    parts += [_model_section(model, data, accuracies.get(model, {})) for model in chosen]
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}'
            f"</title><style>{STYLE}</style></head><body>\n{body}\n</body></html>\n")


def write_report(log: Any, path: str | Path, models: Sequence[str] | None = None,
                 since: datetime | timedelta | None = None) -> Path:
    """Write the report to ``path`` (folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(log, models, since), encoding="utf-8")
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
