"""The Titanic survival model as the fleet serves and trains it."""

from __future__ import annotations

from functools import partial

from bentos.titanic import pipeline
from bentos.titanic.model import SurvivalModel
from bentos.titanic.schemas import EXAMPLE
from fleet.routing import Gate
from fleet.spec import Batching, ModelSpec
from fleet.tabular import binary_scores

SPEC = ModelSpec(
    name="titanic", ref="bentos.titanic.spec:SPEC",
    load=SurvivalModel.load, score=partial(binary_scores, key="survived"), smoke_input=[EXAMPLE],
    label=lambda output: output["survived"],
    train=pipeline.train, tiny=pipeline.TINY, evaluate=pipeline.evaluate,
    gate=Gate(metric="test_accuracy", tolerance=0.01),
    feedback_row=lambda inputs, survived: {**inputs, "Survived": int(bool(survived))},
    batching=Batching(max_batch_size=1024),
)
