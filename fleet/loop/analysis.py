"""One step's analysis: the canary against the stable over the step's window, from what the fleet
already records, and the verdict (pass, fail, or wait for more evidence).

The measures, each judged only once both arms have enough of it:
- **errors**: scoring failures per request (the ``fleet_predictions_total`` counters of every worker);
- **latency**: p99 of the logged latencies;
- **accuracy** (where feedback has arrived): two one-sided tests of two proportions: a significant
  loss fails the step, significant non-inferiority (no worse than the stable minus
  ``accuracy_margin``) passes it, and between the two the step waits for more feedback. Each round
  is a new look at growing samples and ``alpha`` holds per look, not over the whole rollout;
- **predictions**: the class shares (total variation distance, with a chi-square test) — the guard
  while no feedback says which side is right; with accuracy judged, a different distribution is what a
  better model may well have, so it is shown but does not fail the step;
- **agreement** (a shadow step): the share of requests the shadow answered as the stable did.
"""

from __future__ import annotations

import os
from collections import Counter
from datetime import datetime
from typing import Any, TypedDict

import numpy as np
import sqlalchemy as sa
from scipy import stats

from fleet.loop.policy import Analysis
from fleet.predlog import feedback, predictions

MAX_ROWS = 50_000  # the newest rows of a window an analysis reads (a window rarely holds more)
LATENCY_MIN = 200  # predictions per arm before a p99 is compared


class Arm(TypedDict):
    version: str
    role: str
    requests: int
    errors: int
    p99_ms: float | None
    classes: dict[str, int]
    labelled: int
    correct: int


class Measure(TypedDict):
    name: str
    passed: bool | None  # None: not enough evidence yet
    canary: float | None
    stable: float | None
    detail: str


class Verdict(TypedDict):
    decision: str  # "pass", "fail" or "wait"
    measures: list[Measure]
    failed: list[str]
    waiting: list[str]


def outcome_totals(model: str) -> dict[tuple[str, str], dict[str, float]]:
    """Scored requests of ``model`` so far by (version, role) and outcome, summed over every worker of
    this server (Prometheus' multiprocess files when BentoML runs them, else this process)."""
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    totals: dict[tuple[str, str], dict[str, float]] = {}
    for family in registry.collect():
        if family.name != "fleet_predictions":
            continue
        for sample in family.samples:
            labels = sample.labels
            if sample.name.endswith("_total") and labels.get("model") == model:
                found = totals.setdefault((labels["version"], labels["role"]), {})
                found[labels["outcome"]] = found.get(labels["outcome"], 0) + sample.value
    return totals


class Evidence(TypedDict):
    canary: Arm
    stable: Arm
    agreement: float | None  # a shadow step: share of shadowed requests answered as the stable did
    pairs: int  # how many shadowed requests the stable answered too


def gather(engine: sa.Engine, model: str, canary: tuple[str, str], stable_version: str, since: datetime,
           stable_since: datetime, limits: Analysis) -> Evidence:
    """Both arms' evidence since ``since`` (``canary``: its version and role, ``canary`` or ``shadow``).
    Where the stable's own window has too little (a 100 % step leaves it almost no traffic), its
    predictions and its accuracy reach back to ``stable_since``, the rollout's start."""
    stable_rows = _rows(engine, model, stable_version, "stable", since)
    if len(stable_rows) < limits.min_requests:
        stable_rows = _rows(engine, model, stable_version, "stable", stable_since)
    canary_rows = _rows(engine, model, *canary, since)
    found = _arm(engine, model, stable_version, "stable", stable_rows, since)
    if found["labelled"] < limits.min_labelled:
        found = _arm(engine, model, stable_version, "stable", stable_rows, stable_since)
    arms = {"canary": _arm(engine, model, *canary, canary_rows, since), "stable": found}
    agreement, pairs = None, 0
    if canary[1] == "shadow":
        answered = {(r["request_id"], r["item"]): r["label"] for r in stable_rows}
        same = [answered[key] == r["label"] for r in canary_rows
                if (key := (r["request_id"], r["item"])) in answered]
        pairs = len(same)
        agreement = sum(same) / pairs if pairs else None
    return Evidence(canary=arms["canary"], stable=arms["stable"], agreement=agreement, pairs=pairs)


def _arm(engine: sa.Engine, model: str, version: str, role: str, rows: list[dict[str, Any]],
         since: datetime) -> Arm:
    correct, labelled = _accuracy(engine, model, version, role, since)
    latencies = [r["latency_ms"] for r in rows]
    return Arm(version=version, role=role, requests=len(rows), errors=0,
               p99_ms=float(np.percentile(latencies, 99)) if latencies else None,
               classes=dict(Counter(str(r["label"]) for r in rows)), labelled=labelled, correct=correct)


def _rows(engine: sa.Engine, model: str, version: str, role: str, since: datetime) -> list[dict[str, Any]]:
    p = predictions.c
    stmt = (sa.select(p.request_id, p.item, p.label, p.latency_ms, p.created_at)
            .where(p.model == model, p.version == version, p.role == role, p.created_at >= since)
            .order_by(p.created_at.desc()).limit(MAX_ROWS))
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(stmt)]


def _accuracy(engine: sa.Engine, model: str, version: str, role: str, since: datetime) -> tuple[int, int]:
    """(correct, labelled) among this arm's predictions since ``since`` that have feedback."""
    p, f = predictions.c, feedback.c
    on = sa.and_(p.request_id == f.request_id, p.model == f.model, p.item == f.item)
    hit = sa.func.sum(sa.case((p.label == f.label_key, 1), else_=0))
    stmt = (sa.select(hit, sa.func.count()).select_from(predictions.join(feedback, on))
            .where(p.model == model, p.version == version, p.role == role, p.created_at >= since))
    with engine.connect() as connection:
        correct, total = connection.execute(stmt).one()
    return int(correct or 0), int(total or 0)


def judge(evidence: Evidence, limits: Analysis) -> Verdict:
    """The verdict of one step from both arms' evidence."""
    canary, stable = evidence["canary"], evidence["stable"]
    measures = [_errors(canary, stable, limits), _latency(canary, stable, limits)]
    accuracy = _accuracy_measure(canary, stable, limits)
    if canary["role"] == "shadow":
        measures.append(_agreement(evidence, limits))
    else:
        measures += [accuracy, _predictions(canary, stable, limits, guard=accuracy["passed"] is None
                                            and canary["labelled"] == 0)]
    failed = [m["name"] for m in measures if m["passed"] is False]
    waiting = [m["name"] for m in measures if m["passed"] is None]
    decision = "fail" if failed else "wait" if waiting else "pass"
    return Verdict(decision=decision, measures=measures, failed=failed, waiting=waiting)


def _enough(canary: Arm, stable: Arm, limits: Analysis) -> bool:
    return canary["requests"] >= limits.min_requests and stable["requests"] >= limits.min_requests


def _errors(canary: Arm, stable: Arm, limits: Analysis) -> Measure:
    def rate(arm: Arm) -> float:
        return arm["errors"] / max(1, arm["requests"] + arm["errors"])

    ours, theirs = rate(canary), rate(stable)
    passed = None if canary["requests"] + canary["errors"] < limits.min_requests else (
        canary["errors"] == 0 or ours <= theirs + limits.max_error_increase)
    return Measure(name="errors", passed=passed, canary=ours, stable=theirs,
                   detail=f"{canary['errors']} errors in {canary['requests'] + canary['errors']} requests "
                          f"(stable {theirs:.2%}, allowed +{limits.max_error_increase:.2%})")


def _latency(canary: Arm, stable: Arm, limits: Analysis) -> Measure:
    """Judged once both arms have ``LATENCY_MIN`` predictions (a p99 of fewer is a maximum: one
    scheduling hiccup); before that it is shown but holds nothing."""
    ours, theirs = canary["p99_ms"], stable["p99_ms"]
    if min(canary["requests"], stable["requests"]) < LATENCY_MIN or ours is None or theirs is None:
        return Measure(name="latency", passed=True, canary=ours, stable=theirs,
                       detail=f"not judged: p99 needs {LATENCY_MIN} predictions per arm")
    allowed = max(theirs * limits.p99_ratio, theirs + limits.p99_slack_ms)
    return Measure(name="latency", passed=ours <= allowed, canary=ours, stable=theirs,
                   detail=f"p99 {ours:.1f} ms vs stable {theirs:.1f} ms (allowed {allowed:.1f} ms)")


def accuracy_tests(correct_c: int, n_c: int, correct_s: int, n_s: int, margin: float) -> tuple[float, float]:
    """One-sided p-values of the two questions a step asks of live accuracy: (loss) is the canary
    worse than the stable at all, and (non-inferiority) is it no worse than the stable minus
    ``margin``. Agresti-Caffo: one success and one failure added to each arm, so a perfect arm has a
    finite standard error."""
    p_c, p_s = (correct_c + 1) / (n_c + 2), (correct_s + 1) / (n_s + 2)
    se = float(np.sqrt(p_c * (1 - p_c) / (n_c + 2) + p_s * (1 - p_s) / (n_s + 2)))
    loss = float(stats.norm.cdf((p_c - p_s) / se))
    non_inferior = float(stats.norm.sf((p_c - p_s + margin) / se))
    return loss, non_inferior


def _accuracy_measure(canary: Arm, stable: Arm, limits: Analysis) -> Measure:
    """Three outcomes: a significant loss fails, significant non-inferiority passes, anything between
    waits for more feedback (until the step's deadline)."""
    n_c, n_s = canary["labelled"], stable["labelled"]
    ours = canary["correct"] / n_c if n_c else None
    theirs = stable["correct"] / n_s if n_s else None
    if n_c == 0:
        return Measure(name="accuracy", passed=None, canary=None, stable=theirs,
                       detail="no feedback on the canary yet")
    if n_c < limits.min_labelled or n_s < limits.min_labelled:
        return Measure(name="accuracy", passed=None, canary=ours, stable=theirs,
                       detail=f"{n_c} and {n_s} labelled predictions; {limits.min_labelled} per arm needed")
    loss, non_inferior = accuracy_tests(canary["correct"], n_c, stable["correct"], n_s,
                                        limits.accuracy_margin)
    passed = False if loss < limits.alpha else True if non_inferior < limits.alpha else None
    verdict = {False: "worse", True: "no worse", None: "not yet clear"}[passed]
    return Measure(name="accuracy", passed=passed, canary=ours, stable=theirs,
                   detail=f"{ours:.3f} on {n_c} labelled vs stable {theirs:.3f} on {n_s}: {verdict} (p of a "
                          f"loss {loss:.4f}, of no loss beyond {limits.accuracy_margin} {non_inferior:.4f}, "
                          f"alpha {limits.alpha})")


def _predictions(canary: Arm, stable: Arm, limits: Analysis, guard: bool) -> Measure:
    classes = sorted(set(canary["classes"]) | set(stable["classes"]))
    table = np.array([[arm["classes"].get(c, 0) for c in classes] for arm in (canary, stable)], float)
    if not _enough(canary, stable, limits):
        return Measure(name="predictions", passed=None if guard else True, canary=None, stable=None,
                       detail=f"class shares need {limits.min_requests} predictions per arm")
    shares = table / table.sum(axis=1, keepdims=True)
    distance = float(np.abs(shares[0] - shares[1]).sum() / 2)
    kept = table[:, table.sum(axis=0) > 0]
    p = float(stats.chi2_contingency(kept)[1]) if kept.shape[1] > 1 else 1.0
    shifted = distance > limits.max_label_shift and p < limits.alpha
    detail = (f"class shares differ by {distance:.3f} (total variation; allowed {limits.max_label_shift}, "
              f"chi-square p {p:.4f})" + ("" if guard else "; not judged: accuracy is"))
    return Measure(name="predictions", passed=not (shifted and guard), canary=distance, stable=0.0,
                   detail=detail)


def _agreement(evidence: Evidence, limits: Analysis) -> Measure:
    agreement, pairs = evidence["agreement"], evidence["pairs"]
    if agreement is None or pairs < limits.min_requests:
        return Measure(name="agreement", passed=None, canary=agreement, stable=None,
                       detail=f"{pairs} shadowed requests; {limits.min_requests} needed")
    return Measure(name="agreement", passed=agreement >= limits.min_agreement, canary=agreement,
                   stable=1.0, detail=f"same answer as the stable on {agreement:.1%} of {pairs} requests "
                                      f"(at least {limits.min_agreement:.0%} needed)")
