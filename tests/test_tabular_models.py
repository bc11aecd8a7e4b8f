"""Loans and Titanic: training beats the seeds on held-out data, saved models answer the same after
loading, the schemas refuse what the seeds crashed on, and a served model scores whole batches in process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pandas as pd
import pytest
from pydantic import TypeAdapter, ValidationError

from bentos.loans import pipeline as loans_pipeline
from bentos.loans.model import ApprovalModel
from bentos.loans.schemas import EXAMPLE as APPLICATION
from bentos.loans.schemas import Application, Applications
from bentos.titanic import pipeline as titanic_pipeline
from bentos.titanic.model import PROBES, SurvivalModel, build
from bentos.titanic.schemas import Passenger, Passengers
from fleet import store
from fleet.compiled_booster import CompiledBooster


@pytest.fixture(scope="module")
def titanic_run():
    return titanic_pipeline.train()


@pytest.fixture(scope="module")
def loans_run():
    return loans_pipeline.train(loans_pipeline.TINY)


def test_titanic_beats_the_seed_on_held_out_passengers(titanic_run) -> None:
    # Seed 004: 78.7 % (5-fold CV on Kaggle's train set).
    assert titanic_run.metrics["test_accuracy"] > 0.787
    meta = store.get(titanic_run.tag).info.metadata
    assert meta["dataset"]["rows"] == 1309 and meta["classes"] == ["died", "survived"]
    splits = meta["dataset"]["splits"]
    assert sum(splits.values()) == 1309 and min(splits.values()) > 100  # every row in one split, none tiny
    assert meta["input_schema"]["title"] == "Passenger"


def test_loans_never_sees_the_leaking_columns(loans_run) -> None:
    meta = store.get(loans_run.tag).info.metadata
    assert not {"expenditure", "share"} & set(meta["features"])
    assert meta["dataset"]["excluded_leaky_columns"] == ["expenditure", "share"]
    assert 0.5 < loans_run.metrics["test_roc_auc"] <= 1


def test_saved_models_answer_the_same_after_loading(titanic_run, loans_run) -> None:
    passengers = pd.DataFrame([{"Sex": "male", "Age": 22}, {"Sex": "female", "Pclass": 1, "Age": None}])
    _, survival = store.load(titanic_run.tag, SurvivalModel.load)
    again = SurvivalModel.load(Path(store.get(titanic_run.tag).path))
    assert list(survival.predict_proba(passengers)) == list(again.predict_proba(passengers))
    assert survival.predict_proba(passengers)[1] > survival.predict_proba(passengers)[0]
    _, approval = store.load(loans_run.tag, ApprovalModel.load)
    assert 0 <= approval.predict_proba(pd.DataFrame([APPLICATION]))[0] <= 1


def test_served_survival_answers_are_the_pipelines_exactly(titanic_run) -> None:
    # Serving scores through the compiled booster; every passenger of the data set, and the probes'
    # missing and boundary values, must get the pipeline's own probability, bit for bit.
    from data.titanic import load

    _, survival = store.load(titanic_run.tag, SurvivalModel.load)
    frame = load()[SurvivalModel.features]
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records") + PROBES
    assert survival._fast is not None
    assert list(survival.score_rows(rows)) == list(survival.predict_proba(pd.DataFrame(rows)))


def test_served_approvals_are_the_pipelines_exactly(loans_run) -> None:
    # Five calibrated boosters compiled to numpy: every application of the data set must get the
    # pipeline's own calibrated probability, bit for bit.
    from data.loans import load

    _, approval = store.load(loans_run.tag, ApprovalModel.load)
    rows = load()[ApprovalModel.features].to_dict("records")
    assert approval._fast is not None
    assert list(approval.score_rows(rows)) == list(approval.predict_proba(pd.DataFrame(rows)))


def test_a_booster_the_compiler_cannot_reproduce_is_served_by_its_pipeline() -> None:
    # A categorical split is outside what CompiledBooster reproduces: the model must say so and
    # answer through the pipeline, with the same probabilities as ever.
    from data.titanic import load

    frame = load()
    pipeline = build({**titanic_pipeline.DEFAULTS, "max_iter": 5})
    pipeline.steps[-1][1].set_params(categorical_features=[2])  # Pclass, after the two Sex columns
    model = SurvivalModel(pipeline.fit(frame, frame["Survived"]))
    assert CompiledBooster.of(pipeline[-1]) is None and model._fast is None
    assert list(model.score_rows(PROBES)) == list(model.predict_proba(pd.DataFrame(PROBES)))


def test_the_seed_minimal_passenger_is_accepted_and_case_is_folded() -> None:
    passenger = Passenger.model_validate({"Age": 22, "Sex": "Male", "Embarked": "s"})
    assert (passenger.Sex, passenger.Embarked, passenger.Pclass) == ("male", "S", None)


@pytest.mark.parametrize(
    ("row", "field"),
    [({"Sex": "robot"}, "Sex"), ({"Age": 22}, "Sex"), ({"Sex": "male", "Age": float("nan")}, "Age"),
     ({"Sex": "male", "Pclass": 4}, "Pclass"), ({"Sex": "male", "Age": -1}, "Age"),
     ({"Sex": "male", "Deck": "B"}, "Deck")],
)
def test_bad_passengers_name_the_field(row: dict, field: str) -> None:
    with pytest.raises(ValidationError) as error:
        Passenger.model_validate(row)
    assert field in {str(part) for e in error.value.errors() for part in e["loc"]}


def test_batches_have_a_documented_size_limit() -> None:
    with pytest.raises(ValidationError):
        TypeAdapter(Passengers).validate_python([{"Sex": "male"}] * 1001)
    with pytest.raises(ValidationError):
        TypeAdapter(Applications).validate_python([])
    with pytest.raises(ValidationError):
        Application.model_validate({**APPLICATION, "income": float("inf")})


def test_a_served_model_scores_whole_batches_in_process(routing_plan: Path) -> None:
    """Concurrent requests in one worker share one model call (BentoML's dispatcher), each gets its own
    outputs, a batch request is one job, and an unserved version is refused."""
    from bentos.loans.spec import SPEC as LOANS
    from bentos.titanic.spec import SPEC as TITANIC
    from fleet.http import Problem
    from fleet.local_model import LocalModel
    from fleet.routing import load_plan

    plan = load_plan(routing_plan)
    titanic, loans = LocalModel(TITANIC, plan["titanic"]), LocalModel(LOANS, plan["loans"])
    calls: list[int] = []
    score = titanic.versions._score
    titanic.versions._score = lambda model, items: calls.append(len(items)) or score(model, items)
    female, male = {"Sex": "female", "Pclass": 1}, {"Sex": "male", "Pclass": 3, "Age": 30}

    async def requests() -> list[list[dict]]:
        return await asyncio.gather(*(titanic.score([p]) for p in [female, male] * 20),
                                    titanic.score([female, male, male]))

    answers = asyncio.run(requests())
    assert [a[0]["survived"] for a in answers[:40]] == [1, 0] * 20
    assert [a["survived"] for a in answers[40]] == [1, 0, 0]
    assert sum(calls) == 43 and len(calls) < 43  # fewer model calls than requests: batched
    assert {a[0]["model_version"] for a in answers[:40]} == {titanic.versions.stable}

    async def loans_requests() -> int:  # one event loop, as in a worker: the dispatcher belongs to it
        assert len(await loans.score([APPLICATION] * 3)) == 3
        with pytest.raises(Problem, match="not served"):
            await loans.score([APPLICATION], "v999")
        return 1

    assert asyncio.run(loans_requests()) == 1
