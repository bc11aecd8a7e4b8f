"""Bento Fleet's Grafana dashboards, generated with grafana-foundation-sdk rather than written as JSON.

    python deploy/grafana/dashboards.py           # rewrite deploy/grafana/dashboards/*.json
    python deploy/grafana/dashboards.py --check   # exit 1 when the committed JSON is stale

The JSON is committed so that running Grafana needs no Python; tests/test_grafana.py checks it equals
a fresh generation, that every query parses, and that it reads only series the gateway's /metrics or
deploy/prometheus/rules.yml export. Panels read the recording rules where one exists (per model,
version and role, 5 m windows) and the raw series otherwise (per-model quantiles need the buckets, as
quantiles of versions cannot be added). Rollouts (issue 12) get a row here once they export metrics.
"""

from __future__ import annotations

import json
import sys
from itertools import count
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

HERE = Path(__file__).resolve().parent
OUT = HERE / "dashboards"
DATASOURCE_UID = "bento-fleet-prometheus"  # provisioning/datasources/prometheus.yaml sets the same uid
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
RATE = "$__rate_interval"
# BentoML's routes are "/<model>/<api>"; these give the edge's series a model label.
ROUTES = 'endpoint=~"/[^/]+/.+", endpoint!~"/(admin|docs|static_content)/.*"'
BY_ROUTE_MODEL = '"model", "$1", "endpoint", "/([^/]+)/.*"'


def query(expr: str, legend: str = "", instant: bool = False) -> prometheus.Dataquery:
    """One PromQL target; instant ones are for tables and stats of 'now'."""
    target = prometheus.Dataquery().expr(expr).datasource(DATASOURCE)
    if legend:
        target = target.legend_format(legend)
    if instant:
        target = target.instant().format(PromQueryFormat.TABLE)
    return target


def graph(title: str, unit: str, *targets: prometheus.Dataquery, about: str = "",
          width: int = 12) -> timeseries.Panel:
    """A time series panel; refIds A, B, ... in the order given."""
    panel = timeseries.Panel().title(title).unit(unit).datasource(DATASOURCE).height(8).span(width)
    for ref, target in zip("ABCDEFGH", targets, strict=False):
        panel = panel.with_target(target.ref_id(ref))
    return panel.description(about) if about else panel


def figure(title: str, unit: str, expr: str, about: str) -> stat.Panel:
    """A single number for the top of the overview."""
    return (stat.Panel().title(title).unit(unit).datasource(DATASOURCE).height(4).span(6)
            .description(about).with_target(query(expr).ref_id("A")))


def listing(title: str, expr: str, about: str, width: int = 12) -> table.Panel:
    """A table of label sets right now (the Time column hidden)."""
    hide_time = model.DataTransformerConfig(id_val="organize", options={"excludeByName": {"Time": True}})
    return (table.Panel().title(title).datasource(DATASOURCE).height(8).span(width).description(about)
            .with_target(query(expr, instant=True).ref_id("A")).with_transformation(hide_time))


def base(title: str, uid: str, about: str) -> dashboard.Dashboard:
    return (dashboard.Dashboard(title).uid(uid).description(about).tags(["bento-fleet"])
            .refresh("30s").time("now-1h", "now").timezone("browser")
            .tooltip(model.DashboardCursorSync.CROSSHAIR))


def overview() -> dashboard.Dashboard:
    """Every model side by side: is each answering, how fast, is it keeping up, is the log safe."""
    board = base("Bento Fleet overview", "bento-fleet-overview",
                 "Every model of the gateway: traffic, errors, latency, capacity, the prediction log.")
    board = (board
             .with_panel(figure("Requests/s", "reqps",
                                "sum(model_version_role:fleet_predictions:rate5m{role!=\"shadow\"})",
                                "Scored requests per second, shadows excluded."))
             .with_panel(figure("Error ratio", "percentunit",
                                "(sum(model_version:fleet_prediction_errors:rate5m) or vector(0))"
                                " / sum(model_version_role:fleet_predictions:rate5m)",
                                "Share of scored requests that failed (5 m)."))
             .with_panel(figure("Versions drifting", "none",
                                "count(max by (model, version) (fleet_drift_detected) == 1) or vector(0)",
                                "Model versions whose last drift check found a drifted feature."))
             .with_panel(figure("Spooled log rows", "none", "sum(fleet_predlog_spooled_rows)",
                                "Prediction rows waiting for the database (0 when it keeps up).")))
    for row, panels in overview_rows():
        board = board.with_row(dashboard.Row(row))
        for panel in panels:
            board = board.with_panel(panel)
    return board


def overview_rows() -> list[tuple[str, list[Builder[model.Panel]]]]:
    return [
        ("Traffic and errors", [
            graph("Requests/s by model", "reqps",
                  query('sum by (model) (model_version_role:fleet_predictions:rate5m{role!="shadow"})',
                        "{{model}}"), about="Scored requests, every version, shadows excluded."),
            graph("Error ratio by model", "percentunit",
                  query("sum by (model) (model_version:fleet_prediction_errors:rate5m)"
                        " / sum by (model) (model_version_role:fleet_predictions:rate5m)", "{{model}}"),
                  about="Failed scorings over all scorings (shadows included on both sides)."),
            graph("HTTP answers by model and status", "reqps",
                  query(f"sum by (model, http_response_code) (label_replace("
                        f"endpoint_code:bentoml_service_requests:rate5m{{{ROUTES}}}, {BY_ROUTE_MODEL}))",
                        "{{model}} {{http_response_code}}"),
                  about="The edge's answers: 4xx are refused inputs, 503 admission refusals.", width=24),
        ]),
        ("Latency", [
            graph("p50 by model", "s", query(quantile(0.5), "{{model}}"),
                  about="Scoring time including the batch wait, every version, shadows excluded."),
            graph("p99 by model", "s", query(quantile(0.99), "{{model}}")),
        ]),
        ("Capacity", [
            graph("In flight by model", "short",
                  query(f"sum by (model) (label_replace(bentoml_service_request_in_progress{{{ROUTES}}},"
                        f" {BY_ROUTE_MODEL}))", "{{model}}"),
                  about="HTTP requests being answered now, every worker."),
            graph("Refusals/s by model", "reqps",
                  query(f"sum by (model) (label_replace(endpoint_code:bentoml_service_requests:rate5m"
                        f"{{http_response_code=\"503\", {ROUTES}}}, {BY_ROUTE_MODEL}))", "{{model}} 503"),
                  query("sum by (model) (model_version:fleet_prediction_refusals:rate5m)",
                        "{{model}} refused"),
                  query("sum by (model) (model:fleet_shadow_dropped:rate5m)", "{{model}} shadow dropped"),
                  about="503: past capacity (admission). refused: an answer under 500 from scoring. "
                        "shadow dropped: shadow copies lost to a full queue."),
        ]),
        ("Prediction log", [
            graph("Rows/s by outcome", "rowsps",
                  query(f"sum by (outcome) (rate(fleet_predlog_rows_total[{RATE}]))", "{{outcome}}"),
                  query(f"sum by (reason) (rate(fleet_predlog_dropped_rows_total[{RATE}]))",
                        "dropped: {{reason}}"),
                  about="committed, spooled (database down), replayed from the spool; dropped: lost.",
                  width=8),
            graph("Group commit p99", "s",
                  query(from_buckets(0.99, "fleet_predlog_commit_seconds", "le"), "p99"), width=8),
            graph("Rows per group commit", "short",
                  query(from_buckets(0.5, "fleet_predlog_batch_rows", "le"), "p50"), width=8),
        ]),
    ]


def quantile(q: float) -> str:
    """A per-model quantile from the buckets: quantiles of the per-version rules cannot be combined."""
    return from_buckets(q, "fleet_prediction_seconds", "model, le", 'role!="shadow"')


def from_buckets(q: float, histogram: str, by: str, selector: str = "") -> str:
    matchers = f"{{{selector}}}" if selector else ""
    return f"histogram_quantile({q}, sum by ({by}) (rate({histogram}_bucket{matchers}[{RATE}])))"


def variables() -> list[dashboard.QueryVariable]:
    model_var = (dashboard.QueryVariable("model").label("model").datasource(DATASOURCE)
                 .query("label_values(fleet_predictions_total, model)")
                 .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(model.VariableSort.ALPHABETICAL_ASC))
    version_var = (dashboard.QueryVariable("version").label("version").datasource(DATASOURCE)
                   .query('label_values(fleet_predictions_total{model="$model"}, version)')
                   .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED).multi(True).include_all(True)
                   .all_value(".*").sort(model.VariableSort.ALPHABETICAL_ASC))
    return [model_var, version_var]


SEL = 'model="$model", version=~"$version"'
BY_ROLE = "{{version}} {{role}}"


def model_rows() -> list[tuple[str, list[Builder[model.Panel]]]]:
    return [
        ("Traffic", [
            graph("Requests/s by version and role", "reqps",
                  query(f"sum by (version, role) (model_version_role:fleet_predictions:rate5m{{{SEL}}})",
                        "{{version}} {{role}}"), about="stable, canary, pinned (X-Model-Version), shadow."),
            listing("Versions and roles serving",
                    f"sum by (version, role) (increase(fleet_predictions_total{{{SEL}}}[$__range])) > 0",
                    "Every version and role that scored in the time range, with its request count."),
        ]),
        ("Errors", [
            graph("Error ratio by version", "percentunit",
                  query(f"model_version:fleet_prediction_error_ratio:rate5m{{{SEL}}}", "{{version}}")),
            graph("Outcomes/s", "reqps",
                  query(f"sum by (version, outcome) (rate(fleet_predictions_total{{{SEL}}}[{RATE}]))",
                        "{{version}} {{outcome}}"), about="ok, refused (an answer under 500), error."),
            graph("HTTP answers by route and status", "reqps",
                  query('sum by (endpoint, http_response_code) (endpoint_code:bentoml_service_requests:rate5m'
                        '{endpoint=~"/$model/.*"})', "{{endpoint}} {{http_response_code}}")),
            graph("Edge p99 by route", "s",
                  query('endpoint:bentoml_service_request_duration_seconds:p99_5m{endpoint=~"/$model/.*"}',
                        "{{endpoint}}"), about="Whole HTTP answer, body checks and validation included."),
        ]),
        ("Latency", [
            graph("p50 by version and role", "s",
                  query(f"model_version_role:fleet_prediction_seconds:p50_5m{{{SEL}}}", BY_ROLE)),
            graph("p99 by version and role", "s",
                  query(f"model_version_role:fleet_prediction_seconds:p99_5m{{{SEL}}}", BY_ROLE),
                  query(f"model_version:fleet_prediction_seconds:mean5m{{{SEL}}}", "{{version}} mean")),
        ]),
        ("Batching", [
            graph("Batch size", "short",
                  query(f"model_version:fleet_batch_size:mean5m{{{SEL}}}", "{{version}} mean"),
                  query(from_buckets(0.99, "fleet_batch_size", "version, le", SEL), "{{version}} p99"),
                  about="Items per model call; 1: no batching."),
            graph("Model calls/s", "ops",
                  query(f"model_version:fleet_model_calls:rate5m{{{SEL}}}", "{{version}}")),
        ]),
        ("Quality", [
            graph("Live accuracy", "percentunit",
                  query(f"max by (version) (fleet_live_accuracy{{{SEL}}})", "{{version}}"),
                  about="Share of predictions matching feedback, last 1,000 labelled."),
            graph("Labelled predictions in the accuracy window", "short",
                  query(f"max by (version) (fleet_live_accuracy_samples{{{SEL}}})", "{{version}}")),
            graph("Drift detected", "short",
                  query(f"max by (version) (fleet_drift_detected{{{SEL}}})", "{{version}}"),
                  query(f"max by (version, feature) (fleet_drift_feature_detected{{{SEL}}}) == 1",
                        "{{version}} {{feature}}"),
                  about="1 when the last drift check (GET /admin/drift) found a drifted feature."),
            graph("Drift measures", "short",
                  query(f"max by (version, feature, measure) (fleet_drift_value{{{SEL}}})",
                        "{{version}} {{feature}} {{measure}}"),
                  query(f"max by (version) (fleet_drift_samples{{{SEL}}})", "{{version}} rows checked"),
                  about="Each feature's measure against the training profile, and the rows compared."),
        ]),
    ]


def model_board() -> dashboard.Dashboard:
    """One model at a time (the model variable): which versions serve it in which role, and how each does."""
    board = base("Bento Fleet model", "bento-fleet-model",
                 "One model: traffic and errors by version and role, latency, batching, accuracy, drift.")
    for variable in variables():
        board = board.with_variable(variable)
    for row, panels in model_rows():
        board = board.with_row(dashboard.Row(row))
        for panel in panels:
            board = board.with_panel(panel)
    return board


def render(board: dashboard.Dashboard) -> str:
    """Stable JSON (sorted keys, panel ids 1..n) so that a regeneration diffs only what changed."""
    built = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    ids = count(1)
    for panel in built["panels"]:
        panel["id"] = next(ids)
    return json.dumps(built, indent=2, sort_keys=True) + "\n"


def generated() -> dict[str, str]:
    """File name -> JSON of every dashboard."""
    return {"fleet-overview.json": render(overview()), "fleet-model.json": render(model_board())}


def main(argv: list[str]) -> int:
    stale = [name for name, text in generated().items()
             if not (OUT / name).exists() or (OUT / name).read_text() != text]
    if "--check" in argv:
        print("\n".join(f"stale: {OUT / name}" for name in stale) or "dashboards are up to date")
        return 1 if stale else 0
    OUT.mkdir(exist_ok=True)
    for name, text in generated().items():
        (OUT / name).write_text(text)
    print(f"wrote {len(generated())} dashboards to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
