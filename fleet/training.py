"""What every training run shares: a seeded split, progress lines, the metrics table, the result."""

from __future__ import annotations

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
