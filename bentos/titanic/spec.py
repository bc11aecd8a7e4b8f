"""The Titanic survival model as the fleet serves and trains it."""

from __future__ import annotations

import pandas as pd

from bentos.titanic import pipeline
from bentos.titanic.model import SurvivalModel
from bentos.titanic.schemas import EXAMPLE
from fleet.routing import Gate
from fleet.spec import Batching, ModelSpec


def score(model: SurvivalModel, passengers: list[dict]) -> list[dict]:
    proba = model.predict_proba(pd.DataFrame(passengers))
    return [{"survived": int(p > 0.5), "probability": round(float(p), 6)} for p in proba]


SPEC = ModelSpec(
    name="titanic", ref="bentos.titanic.spec:SPEC",
    load=SurvivalModel.load, score=score, smoke_input=[EXAMPLE],
    label=lambda output: output["survived"],
    train=pipeline.train, tiny=pipeline.TINY, evaluate=pipeline.evaluate,
    gate=Gate(metric="test_accuracy", tolerance=0.01),
    batching=Batching(max_batch_size=1024),
)
