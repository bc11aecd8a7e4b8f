"""What every training run shares: a seeded split, progress lines, the metrics table, the result."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.model_selection import GroupShuffleSplit, train_test_split

SEED = 20261123


@dataclass
class TrainingRun:
    """What a training run reports: the tag it saved, its held-out metrics and how long it took."""

    tag: str
    metrics: dict[str, float]
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)


def split_indices(
    n: int,
    *,
    stratify: Sequence[Any] | None = None,
    groups: Sequence[Any] | None = None,
    val: float = 0.15,
    test: float = 0.15,
    seed: int = SEED,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deterministic train/validation/test indices.

    With ``groups`` (e.g. identical titles) no group is in two splits; otherwise the split is
    stratified by ``stratify`` when given.
    """
    index = np.arange(n)
    if groups is not None:
        groups = np.asarray(groups)
        outer = GroupShuffleSplit(n_splits=1, test_size=test, random_state=seed)
        rest, test_idx = next(outer.split(index, groups=groups))
        inner = GroupShuffleSplit(n_splits=1, test_size=val / (1 - test), random_state=seed)
        train_pos, val_pos = next(inner.split(rest, groups=groups[rest]))
        return rest[train_pos], rest[val_pos], test_idx
    labels = np.asarray(stratify) if stratify is not None else None
    rest, test_idx = train_test_split(index, test_size=test, random_state=seed, stratify=labels)
    rest_labels = labels[rest] if labels is not None else None
    train_idx, val_idx = train_test_split(
        rest, test_size=val / (1 - test), random_state=seed, stratify=rest_labels
    )
    return train_idx, val_idx, test_idx


def progress(model: str, step: int, total: int, **values: float) -> None:
    """One line per epoch or step, so a long run shows it is moving."""
    shown = "  ".join(f"{k}={v:.4f}" for k, v in values.items())
    print(f"[{model}] {step}/{total}  {shown}", file=sys.stderr, flush=True)


def print_metrics(model: str, tag: str, metrics: dict[str, float], seconds: float) -> None:
    """The held-out metrics as a small table."""
    width = max(len(k) for k in metrics) if metrics else 6
    print(f"\n{model} -> {tag}  ({seconds:.1f} s)")
    print(f"  {'metric':<{width}}  value")
    for key, value in metrics.items():
        print(f"  {key:<{width}}  {value:.4f}")


class Timer:
    """Seconds since creation."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def seconds(self) -> float:
        return round(time.perf_counter() - self.start, 2)


def binary_scores(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Held-out figures of a yes/no model: accuracy, F1, ROC AUC and Brier score."""
    from sklearn.metrics import accuracy_score, brier_score_loss, f1_score, roc_auc_score

    return {
        "accuracy": round(float(accuracy_score(y, proba > 0.5)), 4),
        "f1": round(float(f1_score(y, proba > 0.5)), 4),
        "roc_auc": round(float(roc_auc_score(y, proba)), 4),
        "brier": round(float(brier_score_loss(y, proba)), 4),
    }


def evaluate_binary(frame: Any, target: str, model: Any, seed: int) -> dict[str, float]:
    """A saved yes/no model's figures on the held-out test split a training run with ``seed`` uses,
    so a challenger and the stable are compared on exactly the same rows."""
    y = frame[target].to_numpy()
    _, _, test_idx = split_indices(len(frame), stratify=y, seed=seed)
    scores = binary_scores(y[test_idx], model.predict_proba(frame.iloc[test_idx]))
    return {f"test_{k}": v for k, v in scores.items()}


def _binary_confusion(y: np.ndarray, predicted: np.ndarray, classes: list[str]) -> dict[str, int]:
    """Test-split counts of each (true, predicted) pair, named by class."""
    return {f"{classes[t]} predicted {classes[p]}": int(((y == t) & (predicted == p)).sum())
            for t in (0, 1) for p in (0, 1)}


def train_binary(
    name: str,
    frame: Any,
    target: str,
    fit: Any,
    *,
    seed: int,
    metadata: dict[str, Any],
    labels: dict[str, str],
    classes: list[str],
    kinds: dict[str, str],
    extra: Any = None,
) -> TrainingRun:
    """The shared run of the tabular yes/no models: split, ``fit(train_frame, y) -> model`` (which has
    ``predict_proba(frame)`` and ``save(folder)``), score on validation and test, save the next version
    with a drift profile of the training inputs (``kinds``: each input column's kind). ``extra``: more
    labelled rows (feedback from the log) added to the training split only, so the validation and
    test splits stay the source's and a challenger is still judged on the stable's held-out rows."""
    import pandas as pd

    from fleet import drift, store

    timer = Timer()
    y = frame[target].to_numpy()
    train_idx, val_idx, test_idx = split_indices(len(frame), stratify=y, seed=seed)
    train = frame.iloc[train_idx]
    if extra is not None and len(extra):
        train = pd.concat([train, extra[list(frame.columns)]], ignore_index=True)
    model = fit(train, train[target].to_numpy())
    val = binary_scores(y[val_idx], model.predict_proba(frame.iloc[val_idx]))
    progress(name, 1, 1, val_accuracy=val["accuracy"], val_roc_auc=val["roc_auc"])
    test_proba = model.predict_proba(frame.iloc[test_idx])
    test = binary_scores(y[test_idx], test_proba)
    confusion = _binary_confusion(y[test_idx], test_proba > 0.5, classes)
    metrics = {**{f"test_{k}": v for k, v in test.items()}, "val_accuracy": val["accuracy"]}
    splits = {"train": len(train), "val": len(val_idx), "test": len(test_idx)}
    balance = {classes[k]: int((y == k).sum()) for k in (0, 1)}
    seconds = timer.seconds()
    tag = store.save(
        name,
        model.save,
        labels=labels,
        metadata={
            **metadata,
            "metrics": metrics,
            "classes": classes,
            "confusion": confusion,
            "training_seconds": seconds,
            "drift_profile": drift.profile(train[list(kinds)], kinds),
            "dataset": {**metadata.get("dataset", {}), **store.fingerprint(frame),
                        "splits": splits, "class_balance": balance},
        },
    )
    return TrainingRun(tag=tag, metrics=metrics, seconds=seconds)


def example_answers(model: Any, schema: Any, examples: Sequence[tuple[dict[str, Any], str]],
                    label: str) -> list[dict[str, Any]]:
    """A tabular model's probability for each ``(example, note)``, read through the request schema
    as served (so defaults fill in exactly as for a caller), for the card's "answers to expect"."""
    import pandas as pd

    rows = [schema.model_validate(example).model_dump() for example, _ in examples]
    proba = model.predict_proba(pd.DataFrame(rows))
    return [{"input": json.dumps(example), label: round(float(p), 3), "note": note}
            for (example, note), p in zip(examples, proba, strict=True)]
