"""The credit approval model as the fleet serves and trains it."""

from __future__ import annotations

from functools import partial

from bentos.loans import pipeline
from bentos.loans.model import ApprovalModel
from bentos.loans.schemas import EXAMPLE
from fleet.routing import Gate
from fleet.spec import Batching, ModelSpec
from fleet.tabular import binary_scores

SPEC = ModelSpec(
    name="loans", ref="bentos.loans.spec:SPEC",
    load=ApprovalModel.load, score=partial(binary_scores, key="approved"), smoke_input=[EXAMPLE],
    label=lambda output: output["approved"],
    train=pipeline.train, tiny=pipeline.TINY, evaluate=pipeline.evaluate,
    gate=Gate(metric="test_roc_auc", tolerance=0.01),
    batching=Batching(max_batch_size=1024),
)
