"""The closed loop's parts on a real database: the rollout state machine, its events, the analysis's
statistics on logged predictions and feedback, and the route each state asks for."""

from __future__ import annotations

from datetime import timedelta

import pytest

from fleet.loop import analysis, state
from fleet.loop.policy import Analysis, RolloutPolicy
from fleet.loop.rollout import desired
from fleet.predlog import Prediction, PredictionLog, utcnow
from fleet.routing import Route

POLICY = {**RolloutPolicy(steps=[10, 50]).model_dump(), "stages": [10, 50]}


@pytest.fixture
def log(db_url: str):
    found = PredictionLog(db_url, journal=False)
    yield found
    found.close()


def test_one_running_rollout_per_model_and_moves_cannot_race(log: PredictionLog) -> None:
    first = state.begin(log.engine, "titanic", "titanic:v2", "titanic:v1", POLICY, "test")
    with pytest.raises(state.AlreadyRunning):
        state.begin(log.engine, "titanic", "titanic:v3", "titanic:v1", POLICY, "test")
    assert state.move(log.engine, first, "advanced", "step 10 passed", {}, stage=1)
    assert not state.move(log.engine, first, "advanced", "a stale decider", {}, stage=1)  # saw stage 0
    assert state.get(log.engine, first["id"])["stage"] == 1
    moved = state.get(log.engine, first["id"])
    assert state.move(log.engine, moved, "rolled_back", "accuracy", {"n": 40}, state=state.ROLLED_BACK)
    assert state.running(log.engine) == []
    again = state.begin(log.engine, "titanic", "titanic:v3", "titanic:v1", POLICY, "test")  # free again
    kinds = [e["kind"] for e in state.events(log.engine, "titanic")]
    assert kinds == ["started", "advanced", "rolled_back", "started"]
    assert state.events(log.engine, rollout_id=first["id"])[-1]["evidence"] == {"n": 40}
    assert again["id"] != first["id"]


def _log_arm(log: PredictionLog, version: str, role: str, n: int, correct: int, label: str = "1") -> None:
    rows = [Prediction(request_id=f"{version}-{role}-{i}", model="titanic", version=version, role=role,
                       inputs={"Sex": "male"}, outputs={}, latency_ms=5.0, label=label) for i in range(n)]
    log.record(rows)
    log.flush(timeout=10)
    log.add_feedback_many("titanic", [{"request_id": r.request_id, "label": label if i < correct else "0"}
                                      for i, r in enumerate(rows)])


def _verdict(log: PredictionLog, limits: Analysis) -> analysis.Verdict:
    since = utcnow() - timedelta(minutes=1)
    evidence = analysis.gather(log.engine, "titanic", ("v2", "canary"), "v1", since, since, limits)
    return analysis.judge(evidence, limits)


def test_a_clearly_worse_canary_fails_on_accuracy_and_an_equal_one_passes(log: PredictionLog) -> None:
    limits = Analysis(min_requests=40, min_labelled=40)
    _log_arm(log, "v1", "stable", 60, 48)  # 80 %
    _log_arm(log, "v2", "canary", 60, 30)  # 50 %
    verdict = _verdict(log, limits)
    assert verdict["decision"] == "fail" and verdict["failed"] == ["accuracy"]
    detail = next(m["detail"] for m in verdict["measures"] if m["name"] == "accuracy")
    assert "0.500 on 60 labelled vs stable 0.800 on 60: worse" in detail


def test_an_equal_canary_passes_once_the_evidence_is_clear_and_waits_before(log: PredictionLog) -> None:
    _log_arm(log, "v1", "stable", 400, 320)  # 80 %
    _log_arm(log, "v2", "canary", 400, 316)  # 79 %
    clear = _verdict(log, Analysis(min_requests=40, min_labelled=40, accuracy_margin=0.1))
    assert clear["decision"] == "pass"
    unclear = _verdict(log, Analysis(min_requests=40, min_labelled=40, accuracy_margin=0.01))
    assert unclear["decision"] == "wait" and unclear["waiting"] == ["accuracy"]
    too_few = _verdict(log, Analysis(min_requests=40, min_labelled=1000))
    assert too_few["decision"] == "wait" and "1000 per arm needed" in too_few["measures"][2]["detail"]


def test_without_feedback_a_shifted_class_distribution_fails(log: PredictionLog) -> None:
    for version, role, label in (("v1", "stable", "1"), ("v2", "canary", "0")):
        log.record([Prediction(request_id=f"{role}-{i}", model="titanic", version=version, role=role,
                               inputs={}, outputs={}, latency_ms=5.0, label=label) for i in range(50)])
    log.flush(timeout=10)
    verdict = _verdict(log, Analysis(min_requests=40))
    assert verdict["failed"] == ["predictions"]


def test_the_route_follows_the_rollout_state() -> None:
    route = Route(stable="titanic:v1")
    row = {"tag": "titanic:v2", "policy": {"stages": ["shadow", 10, 50]}, "stage": 0, "state": state.RUNNING}
    assert desired(route, row).shadow == "titanic:v2"
    shadowed = desired(route, row)
    row["stage"] = 2
    at_50 = desired(shadowed, row)
    assert (at_50.canary, at_50.canary_weight, at_50.shadow) == ("titanic:v2", 50, None)
    promoted = desired(at_50, {**row, "state": state.PROMOTED})
    assert (promoted.stable, promoted.canary, promoted.previous) == ("titanic:v2", None, ["titanic:v1"])
    assert desired(promoted, {**row, "state": state.PROMOTED}) == promoted  # reconciling twice: no change
    rolled_back = desired(at_50, {**row, "state": state.ROLLED_BACK})
    assert (rolled_back.stable, rolled_back.canary, rolled_back.canary_weight) == ("titanic:v1", None, 0)


def test_a_shadow_step_is_judged_on_agreement_with_the_stable(log: PredictionLog) -> None:
    def answered(version: str, role: str, labels: list[str]) -> list[Prediction]:
        return [Prediction(request_id=f"r{i}", model="titanic", version=version, role=role, inputs={},
                           outputs={}, latency_ms=5.0, label=label) for i, label in enumerate(labels)]

    log.record(answered("v1", "stable", ["1"] * 50))
    log.record(answered("v2", "shadow", ["1"] * 30 + ["0"] * 20))  # the same 50 requests, 60 % alike
    log.flush(timeout=10)
    since = utcnow() - timedelta(minutes=1)
    evidence = analysis.gather(log.engine, "titanic", ("v2", "shadow"), "v1", since, since,
                               Analysis(min_requests=40))
    assert (evidence["pairs"], evidence["agreement"]) == (50, 0.6)
    verdict = analysis.judge(evidence, Analysis(min_requests=40, min_agreement=0.8))
    assert verdict["failed"] == ["agreement"]
    assert analysis.judge(evidence, Analysis(min_requests=40, min_agreement=0.5))["decision"] == "pass"


def test_one_lease_holder_per_database_and_a_release_hands_it_over(db_url: str) -> None:
    from fleet.loop.lease import Lease
    from fleet.predlog import create_engine, database_url

    engines = [create_engine(database_url(db_url)) for _ in range(2)]
    first, second = (Lease(engine) for engine in engines)
    try:
        assert first.hold() and first.hold()  # held, and still held
        assert not second.hold()
        first.release()  # what the holder's death does (its session or its file closes)
        assert second.hold() and not first.hold()
    finally:
        first.release()
        second.release()
        for engine in engines:
            engine.dispose()
