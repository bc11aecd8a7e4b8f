"""The monitoring report: a self-contained HTML page, and what headless Chromium makes of it."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from fleet import report
from fleet.predlog import Prediction, PredictionLog
from tests.browser import INSTALL, find_chromium, headless

CHROMIUM = find_chromium()


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> PredictionLog:
    """Two hours of loans traffic (v1 stable, then v2 as canary, v3 in shadow) with feedback and two
    drift checks, and a little topics traffic with neither."""
    folder = tmp_path_factory.mktemp("report")
    log = PredictionLog(folder / "log.db", spool_dir=folder / "spool", registry=CollectorRegistry())
    rng = np.random.default_rng(1)
    start = datetime.now(UTC) - timedelta(hours=2)
    rows, truth = [], []
    for i in range(1200):
        when = start + timedelta(seconds=6 * i)
        version, role = ("v2", "canary") if i > 600 and i % 4 == 0 else ("v1", "stable")
        label = int(rng.random() < 0.5)
        rows.append(Prediction(f"q{i}", "loans", version, role, {"age": float(rng.normal(40, 12))},
                               {"approved": label}, float(rng.gamma(2, 3 if version == "v1" else 5)),
                               label=label, created_at=when))
        if i > 900:
            rows.append(Prediction(f"q{i}", "loans", "v3", "shadow", {}, {"approved": 1}, 4.0, label=1,
                                   created_at=when))
        if i % 3 == 0:
            truth.append({"request_id": f"q{i}", "label": label if rng.random() < 0.85 else 1 - label})
        if i % 10 == 0:
            rows.append(Prediction(f"t{i}", "topics", "v1", "stable", {"sentence": "Linear Algebra"},
                                   [{"label": "Mathematics", "score": 0.9}], 12.0, label="Mathematics",
                                   created_at=when))
    log.record(rows).result(30)
    log.add_feedback_many("loans", truth)
    for hours, psi in ((1.0, 0.05), (0.1, 0.35)):
        log.save_drift("loans", "v1", [
            {"feature": "age", "kind": "numeric", "measure": "psi", "value": psi, "threshold": 0.2,
             "noise_floor": 0.08, "drifted": psi > 0.2, "n": 500},
            {"feature": "age", "kind": "numeric", "measure": "wasserstein", "value": 0.04, "threshold": 0.1,
             "noise_floor": 0.12, "drifted": False, "n": 500},
            {"feature": "owner", "kind": "categorical", "measure": "js", "value": 0.02, "threshold": 0.1,
             "noise_floor": 0.05, "drifted": False, "n": 500}],
            created_at=datetime.now(UTC) - timedelta(hours=hours))
    yield log
    log.close()


@pytest.fixture(scope="module")
def page(log: PredictionLog, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return report.write_report(log, tmp_path_factory.mktemp("out") / "report.html")


def test_report_is_self_contained(page: Path) -> None:
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert not re.search(r"<script|<link|<iframe|\b(src|href)=\"(https?:)?//|url\(", text, re.IGNORECASE)
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(images) == 4  # fleet traffic, loans panels, loans drift, topics panels
    assert all(base64.b64decode(i).startswith(b"\x89PNG\r\n\x1a\n") for i in images)


def test_report_shows_versions_accuracy_and_drift(page: Path) -> None:
    text = page.read_text()
    for expected in ("<h2>loans</h2>", "<h2>topics</h2>", "canary", "shadow", "live accuracy",
                     "No drift check has run for this model yet", '<span class="alarm">drifted</span>'):
        assert expected in text
    loans_v3 = re.search(r"<td>v3</td><td>shadow</td><td>299</td>.*?</tr>", text)
    assert loans_v3 and "1.000" not in loans_v3.group(0)  # the shadow's accuracy is shown, and is not 1


def test_report_of_an_empty_log(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    with PredictionLog(tmp_path / "empty.db", spool_dir=tmp_path / "spool", registry=registry) as log:
        text = report.render(log)
    assert "No predictions logged yet" in text and "<img" not in text


def test_report_cli(log: PredictionLog, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = log.engine.url.render_as_string(hide_password=False)
    report.main(["--db", url, "--out", str(tmp_path / "r.html"), "--models", "topics", "--hours", "24"])
    assert "wrote" in capsys.readouterr().out
    text = (tmp_path / "r.html").read_text()
    assert "<h2>topics</h2>" in text and "<h2>loans</h2>" not in text


@pytest.mark.skipif(CHROMIUM is None, reason=f"no Chromium found: {INSTALL}")
def test_report_renders_in_headless_chromium(page: Path, tmp_path: Path) -> None:
    from PIL import Image

    shot = tmp_path / "report.png"
    headless(CHROMIUM, f"--screenshot={shot}", "--window-size=1200,1600", "--hide-scrollbars", page.as_uri())
    with Image.open(shot) as image:
        colours = image.convert("L").getcolors(maxcolors=1 << 16)
    assert colours is not None and len(colours) > 50, "the screenshot is (nearly) blank"
