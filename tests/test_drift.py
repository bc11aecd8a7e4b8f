"""Drift measures: shifted inputs are flagged, unshifted samples of the same distribution are not."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance

from fleet import drift

KINDS = {"age": "numeric", "income": "numeric", "dependents": "numeric", "owner": "categorical",
         "city": "categorical", "title": "text", "pixels": "image"}
WORDS = ["linear", "algebra", "organic", "chemistry", "history", "of", "art", "introduction", "to", "music"]


def inputs(seed: int, n: int, shift: float = 0.0, cities: tuple[float, ...] = (0.5, 0.3, 0.2),
           words: list[str] = WORDS, ink: float = 1.0) -> list[dict]:
    """Loan-, topic- and digit-like inputs; ``shift`` moves the numeric ones by that many sds."""
    rng = np.random.default_rng(seed)
    city = rng.choice(["a", "b", "c"], size=n, p=cities)
    return [{"age": float(rng.normal(40 + 12 * shift, 12)), "income": float(rng.lognormal(1 + shift, 0.5)),
             "dependents": int(rng.poisson(1 + shift)), "owner": bool(rng.random() < 0.4),
             "city": str(city[i]), "title": " ".join(rng.choice(words, size=rng.integers(2, 6))),
             "pixels": (rng.random((8, 8)) * 16 * ink).clip(0, 16).round(2).tolist()}
            for i in range(n)]


@pytest.fixture(scope="module")
def reference() -> dict:
    return drift.profile(inputs(0, 3000), KINDS)


def test_profile_is_small_plain_json_without_nulls(reference: dict) -> None:
    text = json.dumps(reference, allow_nan=False)
    assert len(text) < 20_000 and "null" not in text
    assert json.loads(text) == reference
    assert set(reference["features"]) >= {"age", "city", "title.words", "title.length", "pixels.mean"}


def test_profile_accepts_a_dataframe_and_columns(reference: dict) -> None:
    records = inputs(0, 3000)
    frame = pd.DataFrame(records)
    columns = {k: [r[k] for r in records] for k in KINDS}
    assert drift.profile(frame, KINDS)["features"]["age"] == reference["features"]["age"]
    assert drift.profile(columns, KINDS)["features"]["city"] == reference["features"]["city"]


@pytest.mark.parametrize("n", [200, 1000])
def test_unshifted_samples_raise_no_alarm(reference: dict, n: int) -> None:
    # Measured beyond these 40 runs: 1 alarm in 900 runs of 17 measures (n = 200, 500, 1000). Some
    # seeds are real flukes: seed 11's 200 ages have a mean 4 standard errors low, and are flagged.
    for seed in range(100, 120):
        result = drift.compare(reference, inputs(seed, n))
        assert result.enough_data
        assert not result.drifted, (seed, n, result.drifted_features)


def test_numeric_shift_is_detected(reference: dict) -> None:
    result = drift.compare(reference, inputs(99, 500, shift=0.3))
    assert {"age", "income", "dependents"} <= set(result.drifted_features)
    assert result.drifted
    assert not {"city", "owner", "title.words"} & set(result.drifted_features)


def test_category_shift_is_detected(reference: dict) -> None:
    result = drift.compare(reference, inputs(5, 500, cities=(0.25, 0.3, 0.45)))
    assert result.drifted_features == ["city"]
    (measure,) = next(f for f in result.features if f.feature == "city").measures
    assert measure.name == "js" and measure.value > measure.threshold


def test_vocabulary_shift_is_detected(reference: dict) -> None:
    result = drift.compare(reference, inputs(5, 500, words=["deep", "learning", "for", "art"]))
    assert {"title.words", "title.chars"} <= set(result.drifted_features)


def test_image_shift_is_detected(reference: dict) -> None:
    result = drift.compare(reference, inputs(5, 300, ink=0.7))
    assert {"pixels.mean", "pixels.std"} <= set(result.drifted_features)
    assert not any(f.startswith(("age", "city", "title")) for f in result.drifted_features)


def test_new_categories_and_missing_values_count(reference: dict) -> None:
    recent = inputs(6, 400)
    for record in recent[:200]:
        record["city"] = "zz"  # unseen: counted as __other__
        record["age"] = None
    result = drift.compare(reference, recent)
    assert {"city", "age"} <= set(result.drifted_features)


def test_no_alarm_below_the_minimum_sample(reference: dict) -> None:
    result = drift.compare(reference, inputs(7, 150, shift=1.0))
    assert not result.enough_data and not result.drifted
    assert max(m.value for f in result.features for m in f.measures) > 0.2  # measured, just not flagged


def test_result_is_json_and_flat_records(reference: dict) -> None:
    result = drift.compare(reference, inputs(8, 300, shift=0.5))
    body = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert body["drifted"] and body["n"] == 300 and "age" in body["drifted_features"]
    records = result.records()
    assert {r["measure"] for r in records} == {"psi", "wasserstein", "js"}
    assert all(set(r) == {"feature", "kind", "n", "measure", "value", "threshold", "noise_floor", "drifted"}
               for r in records)


def test_distances_agree_with_scipy() -> None:
    rng = np.random.default_rng(3)
    p, q = rng.random(6), rng.random(6)
    assert drift.js_distance(p, q) == pytest.approx(jensenshannon(p, q), abs=1e-9)
    sample, ref = rng.normal(size=5000), rng.normal(0.5, 1, size=20000)
    quantiles = np.quantile(ref, drift.QUANTILES, method="inverted_cdf")
    ours = drift.wasserstein(quantiles, sample, 1.0)
    assert ours == pytest.approx(wasserstein_distance(sample, ref), abs=0.05)
    assert drift.psi(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == 0


class _Log:
    """What ``drift.check`` needs of a PredictionLog."""

    def __init__(self, recent: list[dict]) -> None:
        self.recent, self.saved = recent, []

    def recent_inputs(self, model: str, version: str, **_: object) -> list[dict]:
        return self.recent

    def save_drift(self, model: str, version: str, records: list[dict]) -> int:
        self.saved.append((model, version, records))
        return len(records)


def test_check_stores_and_publishes(reference: dict) -> None:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    log = _Log(inputs(9, 400, shift=0.5))
    result = drift.check(log, "loans", "v3", reference, registry=registry)
    assert result.drifted and log.saved[0][:2] == ("loans", "v3")
    assert registry.get_sample_value("fleet_drift_detected", {"model": "loans", "version": "v3"}) == 1
    value = registry.get_sample_value("fleet_drift_value", {"model": "loans", "version": "v3",
                                                            "feature": "age", "measure": "psi"})
    assert value is not None and value > 0.2
