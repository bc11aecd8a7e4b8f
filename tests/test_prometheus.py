"""The Prometheus recording rules work on what the gateway serves: promtool's own checks and unit
tests of ``deploy/prometheus/rules.yml``, every metric and label they read present in a running
gateway's ``/metrics``, and a real Prometheus scraping that gateway and recording per model and version."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

RULES = Path(__file__).resolve().parent.parent / "deploy" / "prometheus" / "rules.yml"
INSTALL = "apt-get install -y prometheus (CI installs it: .ci/run with CI=true)"
PROMTOOL, PROMETHEUS = shutil.which("promtool"), shutil.which("prometheus")
SELECTED = re.compile(r"([a-zA-Z_][a-zA-Z0-9_:]*)\s*(?:\{[^}]*\})?\[")  # a metric read over a range
GROUPING = re.compile(r"by \(([^)]*)\)")
QUERY = 'model_version_role:fleet_predictions:rate5m{model="names"}'


def expressions() -> list[str]:
    return [rule["expr"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


@pytest.mark.skipif(PROMTOOL is None, reason=f"promtool not found: {INSTALL}")
def test_promtool_checks_and_unit_tests_pass() -> None:
    unit_tests = RULES.with_name("rules_test.yml")
    for command in (["check", "rules", str(RULES)], ["test", "rules", str(unit_tests)]):
        done = subprocess.run([PROMTOOL, *command], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr


def test_every_metric_and_label_the_rules_read_is_served(fleet: httpx.Client) -> None:
    """Rules on metrics the server no longer has (v1 grouped by ``runner_name`` on BentoML's batcher
    histogram) record nothing and say nothing; this fails instead."""
    fleet.post("/names/get_prediction", json={"name": "Smith"}).raise_for_status()
    labels_of: dict[str, set[str]] = {}
    for line in fleet.get("/metrics").text.splitlines():
        if match := re.match(r"([a-z_]+)\{(.*)\}", line):
            labels_of.setdefault(match.group(1), set()).update(re.findall(r'([a-z_]+)="', match.group(2)))
    for expr in expressions():
        grouped = {label.strip() for group in GROUPING.findall(expr) for label in group.split(",")}
        for name in SELECTED.findall(expr):
            assert name in labels_of, f"{name} (read by {expr!r}) is not in /metrics"
            missing = grouped - labels_of[name] - {"le", "bento_fleet_track"}
            assert not missing, f"{expr!r} groups {name} by {missing}, which it does not carry"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture()
def prometheus(fleet_url: str, tmp_path: Path) -> Iterator[str]:
    """A real Prometheus on 127.0.0.1 scraping the gateway every second, with the rules loaded."""
    if PROMETHEUS is None:
        pytest.skip(f"prometheus not found: {INSTALL}")
    target = fleet_url.removeprefix("http://")
    config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
              "rule_files": [str(RULES)],
              "scrape_configs": [{"job_name": "fleet", "static_configs": [{"targets": [target]}]}]}
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    server = subprocess.Popen(
        [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "prometheus.log").open("w"))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_real_prometheus_records_each_model_and_version(fleet: httpx.Client, prometheus: str) -> None:
    stable = fleet.get("/names/check_service").json()["model_version"]
    deadline, found = time.monotonic() + 60, []
    with httpx.Client(base_url=prometheus, timeout=10) as client:
        while time.monotonic() < deadline and not found:
            for _ in range(5):
                fleet.post("/names/get_prediction", json={"name": "Smith"}).raise_for_status()
            time.sleep(1)
            try:
                answer = client.get("/api/v1/query", params={"query": QUERY})
            except httpx.TransportError:  # still starting
                continue
            found = answer.json()["data"]["result"]
    assert found, "Prometheus recorded no per-version request rate for names within 60 s"
    labels = {(s["metric"]["model"], s["metric"]["version"], s["metric"]["role"]) for s in found}
    assert ("names", stable, "stable") in labels and all(float(s["value"][1]) >= 0 for s in found)
