"""The credit approval model as the fleet serves and trains it."""

from __future__ import annotations

import pandas as pd

from bentos.loans import pipeline
from bentos.loans.model import ApprovalModel
from bentos.loans.schemas import EXAMPLE
from fleet.routing import Gate
from fleet.spec import Batching, ModelSpec


def score(model: ApprovalModel, applications: list[dict]) -> list[dict]:
    proba = model.predict_proba(pd.DataFrame(applications))
    return [{"approved": int(p > 0.5), "probability": round(float(p), 6)} for p in proba]


SPEC = ModelSpec(
    name="loans", ref="bentos.loans.spec:SPEC",
    load=ApprovalModel.load, score=score, smoke_input=[EXAMPLE],
    label=lambda output: output["approved"],
    train=pipeline.train, tiny=pipeline.TINY, evaluate=pipeline.evaluate,
    gate=Gate(metric="test_roc_auc", tolerance=0.01),
    batching=Batching(max_batch_size=1024),
)
