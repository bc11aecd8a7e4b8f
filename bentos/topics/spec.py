"""The topic model as the fleet serves and trains it."""

from __future__ import annotations

from bentos.topics import pipeline
from bentos.topics.model import TopicModel
from fleet.routing import Gate
from fleet.spec import Batching, ModelSpec


def score(model: TopicModel, texts: list[str]) -> list[dict]:
    """Every class per text, highest score first; one tokenise-and-encode pass per batch, through the
    served (fused) encoder."""
    return [{"ranked": ranked} for ranked in model.serve(texts, top_k=len(model.classes))]


SPEC = ModelSpec(
    name="topics", ref="bentos.topics.spec:SPEC",
    load=TopicModel.load, score=score, smoke_input=["Linear Algebra"],
    label=lambda output: output["ranked"][0][0], loggable=lambda sentence: {"sentence": sentence},
    train=pipeline.train, tiny=pipeline.TINY,
    gate=Gate(metric="test_accuracy", tolerance=0.01),
    # its own throughput peaks at batch 32-128 (701-1,027 items/s), the lowest cap
    batching=Batching(max_batch_size=128),
)
