"""The Grafana dashboards read what the gateway exports: the committed JSON is what
``deploy/grafana/dashboards.py`` generates, every panel has queries, every query (template variables'
too) parses as PromQL, and every series it selects, with every label it matches or groups by, is in a
running gateway's ``/metrics`` or recorded by ``deploy/prometheus/rules.yml``. A panel on a metric
that was renamed, or on a label a rule drops, would otherwise draw "No data" and say nothing."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import promql_parser as pp
import pytest
import yaml

from deploy.grafana import dashboards
from tests.conftest import ADMIN

ROOT = Path(__file__).resolve().parent.parent
BOARDS = ROOT / "deploy" / "grafana" / "dashboards"
PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
MOUNTED = "/var/lib/grafana/dashboards/bento-fleet"  # where README's podman run mounts the dashboards
# What Grafana puts in for its own variables before Prometheus sees a query; a dashboard's own
# variables become a model's name or (multi-value, All) ".*".
BUILT_IN = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h"}
EXAMPLE_VALUES = {"model": "titanic"}
# Labels Prometheus adds to every scraped series (job, instance; env and bento_fleet_track from
# deploy/prometheus/prometheus.yml and the Helm chart's ServiceMonitor).
TARGET_LABELS = {"job", "instance", "env", "bento_fleet_track"}
SAMPLE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="')
# Counters that appear in /metrics only once what they count has happened (a row lost), which a
# healthy test server never does: each with its labels, checked against its declaration in fleet/.
ONLY_ONCE_IT_HAPPENS = {"fleet_predlog_dropped_rows_total": ("fleet/predlog/metrics.py", ["reason"])}
LABEL_VALUES = re.compile(r"label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$")


def boards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in sorted(BOARDS.glob("*.json"))}


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that draws something (rows are containers, and may hold panels themselves)."""
    for panel in board.get("panels", []):
        if panel.get("type") == "row":
            yield from panels(panel)
        else:
            yield panel


def queries(board: dict[str, Any]) -> Iterator[tuple[str, str, str | None]]:
    """(where, PromQL as Prometheus gets it, a label it must carry) for each target and each query
    variable."""
    variables = [v for v in board.get("templating", {}).get("list", []) if v.get("type") == "query"]
    values = BUILT_IN | {v["name"]: EXAMPLE_VALUES.get(v["name"], ".*") for v in variables}
    for panel in panels(board):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r}", interpolated(target.get("expr", ""), values), None
    for variable in variables:
        text = variable["query"] if isinstance(variable["query"], str) else variable["query"]["query"]
        match = LABEL_VALUES.match(text)
        assert match, f"variable {variable['name']}: not label_values(selector, label): {text}"
        yield f"variable {variable['name']!r}", interpolated(match.group(1), values), match.group(2)


def interpolated(expr: str, values: dict[str, str]) -> str:
    """The query after Grafana's interpolation; a variable the dashboard does not define fails here."""
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        assert name in values, f"${name} in {expr!r} is not a variable of this dashboard"
        return values[name]
    return re.sub(r"\$\{(\w+)\}|\$([a-zA-Z_]\w*)", value, expr)  # "$1" of label_replace stays


class Labels:
    """The labels each (sub)expression's result carries, checking on the way that each selected
    series exists and carries every label matched, grouped by or matched on."""

    def __init__(self, known: dict[str, set[str]]) -> None:
        self.known = known

    def of(self, node: Any) -> set[str]:
        method = getattr(self, type(node).__name__, None)
        return method(node) if method else set()  # literals

    def VectorSelector(self, node: pp.VectorSelector) -> set[str]:
        assert node.name, f"a selector without a metric name: {node}"
        assert node.name in self.known, f"{node.name} is neither in /metrics nor a recording rule"
        have = self.known[node.name] | TARGET_LABELS
        matched = {m.name for m in node.matchers.matchers} - {"__name__"}
        assert matched <= have, f"{node} matches {matched - have}, which {node.name} does not carry"
        return have

    def MatrixSelector(self, node: pp.MatrixSelector) -> set[str]:
        return self.of(node.vector_selector)

    def ParenExpr(self, node: Any) -> set[str]:
        return self.of(node.expr)

    UnaryExpr = SubqueryExpr = ParenExpr

    def AggregateExpr(self, node: pp.AggregateExpr) -> set[str]:
        inner = self.of(node.expr)
        if node.param is not None:
            self.of(node.param)
        if node.modifier is None:
            return set()
        grouped = set(node.modifier.labels)
        assert grouped <= inner, f"{node} groups by {grouped - inner}, which its input does not carry"
        return grouped if node.modifier.type == pp.AggModifierType.By else inner - grouped

    def Call(self, node: pp.Call) -> set[str]:
        args = [self.of(arg) for arg in node.args]
        name = node.func.name
        if name == "label_replace":
            return args[0] | {node.args[1].val}
        if name == "histogram_quantile":
            assert "le" in args[1], f"{node}: histogram_quantile of series without le"
            return args[1] - {"le"}
        return set().union(*args)

    def BinaryExpr(self, node: pp.BinaryExpr) -> set[str]:
        lhs, rhs = self.of(node.lhs), self.of(node.rhs)
        matching = getattr(node.modifier, "matching", None) if node.modifier else None
        if matching is not None and matching.type == pp.LabelModifierType.Include:  # on (...)
            on = set(matching.labels)
            assert on <= lhs & rhs, f"{node} matches on {on - (lhs & rhs)}, missing on one side"
        return lhs | rhs if str(node.op) in ("or", "and", "unless") else lhs or rhs


def recorded(served: dict[str, set[str]]) -> dict[str, set[str]]:
    """Each recording rule's name -> its labels, worked out from its expression, rule by rule."""
    known = dict(served)
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            known[rule["record"]] = Labels(known).of(pp.parse(rule["expr"]))
    return {name: labels for name, labels in known.items() if name not in served}


def scrape(client: httpx.Client) -> dict[str, set[str]]:
    """Series name -> label names, from the samples of /metrics (not HELP/TYPE lines)."""
    found: dict[str, set[str]] = {}
    for line in client.get("/metrics").text.splitlines():
        if line and not line.startswith("#") and (match := SAMPLE.match(line)):
            found.setdefault(match.group(1), set()).update(LABEL.findall(match.group(2) or ""))
    return found


def raw_names() -> set[str]:
    """The series the dashboards select that no rule records (those /metrics must show)."""
    names: set[str] = set()
    for board in boards().values():
        for _, expr, _ in queries(board):
            pp.walk(pp.parse(expr), pre_visit=lambda node: names.add(node.name)
                    if isinstance(node, pp.VectorSelector) else None)
    rules = {r["record"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    return names - rules


@pytest.fixture(scope="module")
def exported(fleet: httpx.Client) -> dict[str, set[str]]:
    """/metrics after a prediction, feedback and a drift check, and what the rules record from it.
    Live accuracy is refreshed every 30 s, so this waits for it (up to 45 s)."""
    fleet.post("/names/get_prediction", json={"name": "Smith"}).raise_for_status()
    answer = fleet.post("/titanic/predict", json=[{"Sex": "female", "Age": 30, "Pclass": 1}])
    answer.raise_for_status()
    feedback = {"request_id": answer.headers["X-Request-ID"], "label": 1}
    fleet.post("/titanic/feedback", json=feedback).raise_for_status()
    fleet.get("/admin/drift", params={"model": "titanic"}, headers=ADMIN).raise_for_status()
    wanted, deadline = raw_names() - ONLY_ONCE_IT_HAPPENS.keys(), time.monotonic() + 45
    while not wanted <= (served := scrape(fleet)).keys() and time.monotonic() < deadline:
        time.sleep(1)
    not_yet = {name: set(labels) for name, (_, labels) in ONLY_ONCE_IT_HAPPENS.items()}
    return not_yet | served | recorded(served)


def test_counters_absent_until_they_count_are_declared_with_their_labels() -> None:
    for name, (source, labels) in ONLY_ONCE_IT_HAPPENS.items():
        call = re.escape(f'Counter("{name.removesuffix("_total")}"')
        declared = call + r"[^)]*" + re.escape(json.dumps(labels))
        assert re.search(declared, (ROOT / source).read_text()), f"{name}{labels} is not declared in {source}"


def test_every_series_the_dashboards_select_is_served_or_recorded(exported: dict[str, set[str]]) -> None:
    missing = raw_names() - exported.keys()
    assert not missing, f"the dashboards select {sorted(missing)}, which /metrics does not show"


def test_the_committed_json_is_what_the_generator_writes() -> None:
    fresh = dashboards.generated()
    assert sorted(fresh) == sorted(boards()), "deploy/grafana/dashboards/ holds other files than it generates"
    stale = [name for name, text in fresh.items() if (BOARDS / name).read_text() != text]
    assert not stale, f"{stale} differ from a fresh generation: run python deploy/grafana/dashboards.py"


def test_every_dashboard_has_panels_and_every_panel_queries_our_datasource() -> None:
    (source,) = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yaml").read_text())["datasources"]
    uid = source["uid"]
    assert uid == dashboards.DATASOURCE_UID
    assert {"fleet-overview.json", "fleet-model.json"} <= boards().keys()
    for name, board in boards().items():
        drawn = list(panels(board))
        assert drawn, f"{name} has no panels"
        for panel in drawn:
            assert panel["datasource"]["uid"] == uid, f"{name}: {panel['title']} reads another datasource"
            exprs = [t.get("expr", "").strip() for t in panel.get("targets", [])]
            assert exprs and all(exprs), f"{name}: {panel['title']!r} has a panel without a query"


def test_the_dashboard_provider_loads_the_mounted_folder() -> None:
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "fleet.yaml").read_text())["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"] == MOUNTED


def test_every_query_parses_as_promql() -> None:
    for name, board in boards().items():
        for where, expr, _ in queries(board):
            try:
                pp.parse(expr)
            except ValueError as error:
                pytest.fail(f"{name}, {where}: {expr!r} does not parse: {error}")


def problems(board: dict[str, Any], known: dict[str, set[str]]) -> list[str]:
    """What is wrong with each query of a board, one line each (all of them, not just the first)."""
    found = []
    for where, expr, label in queries(board):
        try:
            labels = Labels(known).of(pp.parse(expr))
            assert label is None or label in labels, f"no {label} label in {expr!r}"
        except AssertionError as error:
            found.append(f"{where}: {str(error).splitlines()[0]}")
    return found


def test_every_series_and_label_a_query_reads_is_exported(exported: dict[str, set[str]]) -> None:
    found = [f"{name}, {line}" for name, board in boards().items() for line in problems(board, exported)]
    assert not found, "\n".join(found)


def test_the_check_catches_a_wrong_series_label_or_grouping() -> None:
    """The checker itself, on a made-up board and made-up exports (no server needed)."""
    known = {"fleet_x_total": {"model", "version"}, "model:fleet_x:rate5m": {"model"}}
    cases = {
        "fine": 'sum by (model) (rate(fleet_x_total{model="$model"}[$__rate_interval]))',
        "no such series": "rate(fleet_y_total[5m])",
        "a label the rule drops": 'model:fleet_x:rate5m{version="v1"}',
        "grouped by a missing label": "sum by (role) (model:fleet_x:rate5m)",
        "matched on a missing label": "fleet_x_total / on (version) model:fleet_x:rate5m",
        "a quantile of no buckets": "histogram_quantile(0.99, model:fleet_x:rate5m)",
    }
    board = {"panels": [{"type": "row", "panels": [{"title": title, "targets": [{"expr": expr}]}
                                                   for title, expr in cases.items()]}],
             "templating": {"list": [{"type": "query", "name": "model",
                                      "query": "label_values(fleet_x_total, role)"}]}}
    flagged = [line.split(":")[0] for line in problems(board, known)]
    assert flagged == [f"panel {title!r}" for title in list(cases)[1:]] + ["variable 'model'"]
    board["panels"][0]["panels"][0]["targets"][0]["expr"] = 'fleet_x_total{version=~"$version"}'
    with pytest.raises(AssertionError, match=r"\$version .* is not a variable of this dashboard"):
        problems(board, known)
