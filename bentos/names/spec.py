"""The surname model as the fleet serves and trains it."""

from __future__ import annotations

from bentos.names import pipeline
from bentos.names.model import NationalityModel
from fleet.routing import Gate
from fleet.spec import Batching, ModelSpec


def score(model: NationalityModel, names: list[str]) -> list[dict]:
    """Every class per name, likeliest first, with natural-log probabilities; one packed GRU pass."""
    return [{"labels": labels, "log_probs": log_probs}
            for labels, log_probs in model.top_n(names, len(model.classes))]


SPEC = ModelSpec(
    name="names", ref="bentos.names.spec:SPEC",
    load=NationalityModel.load, score=score, smoke_input=["Jordan"],
    label=lambda output: output["labels"][0], loggable=lambda name: {"name": name},
    train=pipeline.train, tiny=pipeline.TINY,
    gate=Gate(metric="test_top1_accuracy", tolerance=0.01),
    batching=Batching(max_batch_size=256),
)
