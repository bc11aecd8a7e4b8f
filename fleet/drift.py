"""Input drift without Evidently: reference profiles saved at training time, distances to recent inputs.

``profile(training_inputs, kinds)`` summarises each input feature in a small JSON-serialisable dict
that a training run stores in the model's metadata; ``compare(profile, recent_inputs)`` measures how
far recent logged inputs are from it, per feature:

- numeric: PSI over the reference's decile bins (plus a bin for missing values) and the Wasserstein
  distance divided by the reference's standard deviation ("normalised Wasserstein");
- categorical: Jensen–Shannon distance (natural log, as ``scipy.spatial.distance.jensenshannon``) of
  category shares, the reference's 50 most frequent categories plus ``__other__`` and ``__missing__``;
- text: length in characters (numeric), word and character shares (categorical, 200 and 100 kept);
- image (an 8×8 or any square/2-D array of pixels): mean, contrast, ink share and ink centre (numeric).

Thresholds (``THRESHOLDS``), chosen so that a flag means a shift worth a look, not a test result:
PSI > 0.2 (the credit-scoring convention: < 0.1 stable, 0.1–0.2 moderate, > 0.2 significant),
JS > 0.1 and normalised Wasserstein > 0.1 (a tenth of a reference standard deviation; both are
Evidently's defaults for samples over 1,000 rows). No p-values: on large samples they flag negligible
shifts. Small samples get the opposite guard: a measure alarms only above its *noise floor* too, the
mean + 6 sd of the same measure between two samples drawn from the reference itself (sizes of the
reference and of the recent sample; a seeded parametric bootstrap, so results are reproducible).
Below ``min_samples`` recent rows (200) nothing alarms at all. Measured on the tests' synthetic inputs
(7 fields, 17 measures, 3,000 reference rows): 1 run in 900 unshifted ones (200, 500, 1,000 rows)
raised an alarm; a 0.3-sd mean shift was flagged in 100 of 100 runs of 500 rows, 0.2 sd in 75.
"""

from __future__ import annotations

import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from fleet.drift_features import MISSING, basic_features

THRESHOLDS = {"psi": 0.2, "js": 0.1, "wasserstein": 0.1}
MIN_SAMPLES = 200
FORMAT = 1
QUANTILES = (np.arange(100) + 0.5) / 100  # midpoints: the extremes (min, max) are left out
TRIM = 2  # grid points left out each side when measuring Wasserstein
DECILES = np.arange(1, 10) / 10
TOP_CATEGORIES, TOP_WORDS, TOP_CHARS = 50, 200, 100
OTHER = "__other__"
EPS = 1e-4  # share given to empty bins, so PSI stays finite
BOOTSTRAP_REPS, BOOTSTRAP_MAX_N, NOISE_SDS = 200, 2000, 6.0


# -- profiles ------------------------------------------------------------------------------------------


def _round(values: Iterable[float]) -> list[float]:
    return [float(f"{v:.6g}") for v in values]


def _bin_shares(values: np.ndarray, cuts: Sequence[float]) -> np.ndarray:
    """Shares of [missing, ≤ cut0, (cut0, cut1], …, > last cut]."""
    present = values[~np.isnan(values)]
    counts = np.bincount(np.searchsorted(np.asarray(cuts), present, side="left"), minlength=len(cuts) + 1)
    return np.concatenate([[len(values) - len(present)], counts]) / max(1, len(values))


def _numeric_profile(values: np.ndarray) -> dict[str, Any]:
    present = values[~np.isnan(values)]
    if not len(present):
        return {"kind": "numeric", "n": len(values), "cuts": [], "shares": _round(_bin_shares(values, [])),
                "quantiles": [], "mean": 0.0, "std": 0.0}
    cuts = _round(np.unique(np.quantile(present, DECILES, method="inverted_cdf")))
    return {"kind": "numeric", "n": len(values), "cuts": cuts,
            "shares": _round(_bin_shares(values, cuts)),
            "quantiles": _round(np.quantile(present, QUANTILES, method="inverted_cdf")),
            "mean": float(f"{present.mean():.6g}"), "std": float(f"{present.std():.6g}")}


def _categorical_profile(values: list[list[str]], keep: int) -> dict[str, Any]:
    counts = Counter(key for keys in values for key in keys)
    total = sum(counts.values()) or 1
    kept = dict(counts.most_common(keep))
    shares = {key: count / total for key, count in kept.items()}
    shares[OTHER] = shares.get(OTHER, 0.0) + (total - sum(kept.values())) / total
    shares.setdefault(MISSING, 0.0)
    return {"kind": "categorical", "n": len(values), "shares": dict(zip(shares, _round(shares.values()),
                                                                         strict=True))}


def _keep(feature: str) -> int:
    if feature.endswith(".words"):
        return TOP_WORDS
    return TOP_CHARS if feature.endswith(".chars") else TOP_CATEGORIES


def profile(data: Any, kinds: Mapping[str, str]) -> dict[str, Any]:
    """The reference profile of training inputs: plain JSON (no None), small enough for model metadata.

    ``data`` is a DataFrame, a list of records (dicts) or a dict of columns; ``kinds`` maps each input
    field to numeric, categorical, text or image.
    """
    features = basic_features(data, kinds)
    n = len(next(iter(features.values()))[1]) if features else 0
    if not n:
        raise ValueError("a profile needs at least one row")
    described = {}
    for feature, (kind, values) in features.items():
        described[feature] = (_numeric_profile(np.asarray(values, dtype=float)) if kind == "numeric"
                              else _categorical_profile(values, _keep(feature)))
    return {"format": FORMAT, "n": n, "inputs": dict(kinds), "features": described}


# -- distances -------------------------------------------------------------------------------------------


def psi(reference: np.ndarray, recent: np.ndarray) -> np.ndarray:
    """Population stability index of share vectors (last axis), empty bins given ``EPS``."""
    p, q = np.clip(reference, EPS, None), np.clip(recent, EPS, None)
    return ((q - p) * np.log(q / p)).sum(axis=-1)


def js_distance(reference: np.ndarray, recent: np.ndarray) -> np.ndarray:
    """Jensen–Shannon distance, natural log (0 … √ln 2), along the last axis."""
    p = reference / reference.sum(axis=-1, keepdims=True)
    q = recent / recent.sum(axis=-1, keepdims=True)
    m = (p + q) / 2

    def kl(a: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(a > 0, a * np.log(a / m), 0.0).sum(axis=-1)

    return np.sqrt(np.clip((kl(p) + kl(q)) / 2, 0, None))


def wasserstein(reference_quantiles: np.ndarray, values: np.ndarray, scale: float) -> np.ndarray:
    """W1 between a sample (last axis) and the reference, in reference sds, over the quantile grid
    without its outer 2 % each side (the few extreme rows of a small sample would dominate its noise)."""
    sample = np.sort(values, axis=-1)
    n = sample.shape[-1]
    middle = slice(TRIM, len(QUANTILES) - TRIM)
    index = np.clip(np.ceil(QUANTILES[middle] * n).astype(int) - 1, 0, n - 1)
    return np.abs(sample[..., index] - reference_quantiles[middle]).mean(axis=-1) / scale


def _floor(draws: np.ndarray) -> float:
    return float(draws.mean() + NOISE_SDS * draws.std())


def _multinomial_floor(shares: np.ndarray, n_ref: int, n: int, measure: Callable, seed: int) -> float:
    """Noise floor of a share-based measure: two samples (n_ref, n) from the reference shares."""
    rng = np.random.default_rng(seed)
    p = shares / shares.sum()
    ref = rng.multinomial(n_ref, p, size=BOOTSTRAP_REPS) / n_ref
    rec = rng.multinomial(n, p, size=BOOTSTRAP_REPS) / n
    return _floor(measure(ref, rec))


def _wasserstein_floor(quantiles: np.ndarray, n_ref: int, n: int, scale: float, seed: int) -> float:
    """Noise floor of normalised W1: samples drawn from the reference quantiles, reference noise added
    by scaling (W1's sampling noise shrinks as 1/√n)."""
    rng = np.random.default_rng(seed)
    size = min(n, BOOTSTRAP_MAX_N)
    draws = quantiles[rng.integers(0, len(quantiles), size=(BOOTSTRAP_REPS, size))]
    floor = _floor(wasserstein(quantiles, draws, scale)) * np.sqrt(size / n)
    return float(floor * np.sqrt(1 + n / max(1, n_ref)))


# -- results -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Measure:
    name: str
    value: float
    threshold: float
    noise_floor: float
    drifted: bool


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    kind: str
    n: int
    measures: list[Measure]

    @property
    def drifted(self) -> bool:
        return any(m.drifted for m in self.measures)


@dataclass(frozen=True)
class DriftResult:
    """Per-feature measures and flags; ``drifted`` when any feature is (and there were enough rows)."""

    n: int
    min_samples: int
    features: list[FeatureDrift]

    @property
    def enough_data(self) -> bool:
        return self.n >= self.min_samples

    @property
    def drifted(self) -> bool:
        return any(f.drifted for f in self.features)

    @property
    def drifted_features(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]

    def to_dict(self) -> dict[str, Any]:
        """The JSON result of a drift check."""
        return {"n": self.n, "min_samples": self.min_samples, "enough_data": self.enough_data,
                "drifted": self.drifted, "drifted_features": self.drifted_features,
                "features": [{"feature": f.feature, "kind": f.kind, "n": f.n, "drifted": f.drifted,
                              "measures": [asdict(m) for m in f.measures]} for f in self.features]}

    def records(self) -> list[dict[str, Any]]:
        """One flat row per feature and measure (what ``PredictionLog.save_drift`` stores)."""
        return [{"feature": f.feature, "kind": f.kind, "n": f.n, "measure": m.name, "value": m.value,
                 "threshold": m.threshold, "noise_floor": m.noise_floor, "drifted": m.drifted}
                for f in self.features for m in f.measures]


def _measure(name: str, value: float, floor: float, enough: bool,
             thresholds: Mapping[str, float]) -> Measure:
    threshold = thresholds[name]
    value, floor = float(value), float(floor)
    return Measure(name, round(value, 6), threshold, round(floor, 6),
                   enough and value > max(threshold, floor))


def _seed(feature: str) -> int:
    return sum(feature.encode()) * 7919 % 2**31


def _compare_numeric(feature: str, ref: Mapping[str, Any], values: list[float], enough: bool,
                     thresholds: Mapping[str, float]) -> list[Measure]:
    recent = np.asarray(values, dtype=float)
    n, n_ref = len(recent), int(ref["n"])
    shares = np.asarray(ref["shares"], dtype=float)
    found = [_measure("psi", psi(shares, _bin_shares(recent, ref["cuts"])),
                      _multinomial_floor(shares, n_ref, n, psi, _seed(feature)), enough, thresholds)]
    present, quantiles = recent[~np.isnan(recent)], np.asarray(ref["quantiles"], dtype=float)
    if len(present) and len(quantiles):
        std, mean = float(ref["std"]), float(ref["mean"])
        scale = std if std > 1e-12 else max(abs(mean), 1.0)
        floor = _wasserstein_floor(quantiles, n_ref, len(present), scale, _seed(feature) + 1)
        found.append(_measure("wasserstein", wasserstein(quantiles, present, scale), floor, enough,
                              thresholds))
    return found


def _compare_categorical(feature: str, ref: Mapping[str, Any], values: list[list[str]], enough: bool,
                         thresholds: Mapping[str, float]) -> list[Measure]:
    keys = list(ref["shares"])
    position = {key: i for i, key in enumerate(keys)}
    counts = np.zeros(len(keys))
    for record in values:
        for key in record:
            counts[position.get(key, position[OTHER])] += 1
    shares = np.asarray(list(ref["shares"].values()), dtype=float)
    # The records, not the tokens, are the independent draws: a conservative noise floor for text.
    floor = _multinomial_floor(shares, int(ref["n"]), len(values), js_distance, _seed(feature))
    value = js_distance(shares, counts) if counts.sum() else 0.0
    return [_measure("js", value, floor, enough, thresholds)]


def compare(reference: Mapping[str, Any], recent: Any, *, min_samples: int = MIN_SAMPLES,
            thresholds: Mapping[str, float] | None = None) -> DriftResult:
    """Distances from recent inputs (records, DataFrame or columns) to a reference ``profile``."""
    thresholds = {**THRESHOLDS, **(thresholds or {})}
    features = basic_features(recent, reference["inputs"])
    n = len(next(iter(features.values()))[1]) if features else 0
    enough = n >= min_samples
    found = []
    for feature, ref in reference["features"].items():
        kind, values = features[feature]
        if not n:
            found.append(FeatureDrift(feature, ref["kind"], 0, []))
            continue
        compare_one = _compare_numeric if kind == "numeric" else _compare_categorical
        found.append(FeatureDrift(feature, kind, n, compare_one(feature, ref, values, enough, thresholds)))
    return DriftResult(n, min_samples, found)


# -- the drift job ---------------------------------------------------------------------------------------


def publish(result: DriftResult, model: str, version: str, registry: Any = None) -> None:
    """Gauges ``fleet_drift_value{model,version,feature,measure}`` and ``fleet_drift_detected``."""
    gauges = _gauges(registry)
    for feature in result.features:
        for m in feature.measures:
            gauges["value"].labels(model, version, feature.feature, m.name).set(m.value)
        gauges["feature"].labels(model, version, feature.feature).set(int(feature.drifted))
    gauges["detected"].labels(model, version).set(int(result.drifted))
    gauges["samples"].labels(model, version).set(result.n)


_GAUGES: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def _gauges(registry: Any) -> dict[str, Any]:
    """Created on first use: prometheus_client must be imported after BentoML's worker set-up."""
    from prometheus_client import REGISTRY, Gauge

    registry = registry or REGISTRY
    if registry not in _GAUGES:
        kw = {"registry": registry, "multiprocess_mode": "mostrecent"}
        _GAUGES[registry] = {
            "value": Gauge("fleet_drift_value", "Drift measure of a feature vs the training profile",
                           ["model", "version", "feature", "measure"], **kw),
            "feature": Gauge("fleet_drift_feature_detected", "1 when a feature drifted",
                             ["model", "version", "feature"], **kw),
            "detected": Gauge("fleet_drift_detected", "1 when any input feature drifted",
                              ["model", "version"], **kw),
            "samples": Gauge("fleet_drift_samples", "Recent rows in the last drift check",
                             ["model", "version"], **kw),
        }
    return _GAUGES[registry]


def check(log: Any, model: str, version: str, reference: Mapping[str, Any], *, limit: int = 2000,
          since: Any = None, min_samples: int = MIN_SAMPLES, registry: Any = None) -> DriftResult:
    """The drift job for one model version: its newest logged inputs vs its training profile; the
    result is stored in the log (for the report's history) and published as gauges."""
    recent = log.recent_inputs(model, version, limit=limit, since=since)
    result = compare(reference, recent, min_samples=min_samples)
    log.save_drift(model, version, result.records())
    publish(result, model, version, registry)
    return result
