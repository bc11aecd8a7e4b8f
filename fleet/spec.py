"""One declared spec per model: everything serving, training, the benchmark and the gate need to know.

Each ``bentos/<model>/spec.py`` writes its ``ModelSpec`` once; ``bentos/registry.py`` lists them. The
gateway, the per-model bentos, ``python -m training``, the retraining subprocess and the benchmark all
read the registry, so no other place keeps its own table of models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleet.routing import Gate
from fleet.training import TrainingRun


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Batching:
    """Adaptive batching of one model inside the answering worker (BentoML's dispatcher).

    ``max_latency_ms`` bounds how long a request may wait for its batch (503 past it); ``enabled=False``
    scores each request on its own (chosen where the benchmark showed batching gains nothing).
    """

    max_batch_size: int = 256
    max_latency_ms: int = 1000
    enabled: bool = True


@dataclass(frozen=True)
class ModelSpec:
    """A store model as the fleet serves and trains it."""

    name: str  # the store model's name (``names``, ``digits_cnn``)
    ref: str  # ``module:ATTRIBUTE`` of this spec, so a subprocess can find it again
    load: Callable[[Path], Any]  # a store folder -> the model
    score: Callable[[Any, list[Any]], list[dict[str, Any]]]  # the model and a whole batch of inputs
    smoke_input: Sequence[Any]  # a new version must answer these with finite numbers before it serves
    label: Callable[[dict[str, Any]], Any]  # the predicted class, what feedback is compared with
    train: Callable[[dict[str, Any] | None], TrainingRun]  # saves the next version
    gate: Gate  # how a retrained challenger is judged against the stable
    # a loaded model's held-out metrics, for retraining through the API (None: not retrainable there)
    evaluate: Callable[[Any], dict[str, float]] | None = None
    tiny: dict[str, Any] = field(default_factory=dict)  # training parameters of a seconds-long run
    loggable: Callable[[Any], Any] = _same  # the logged (size-bounded) form of one input
    # a logged input and its feedback label -> one training row (None: retraining uses only its source)
    feedback_row: Callable[[Any, Any], dict[str, Any]] | None = None
    batching: Batching = field(default_factory=Batching)
