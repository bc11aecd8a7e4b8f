"""A fitted binary HistGradientBoostingClassifier as a few numpy gathers over all its trees at once.

scikit-learn predicts with one Cython call per tree, and each call costs ~12 µs of Python around it:
150 trees make a single-row prediction cost ~2.3 ms, whatever the batch size, with the GIL held, so a
saturated worker's event loop reaches its requests late. Walking every tree one level per step with
numpy costs tens of microseconds for the same answers: the same splits (``x <= threshold``, missing
values sent where training sent them), the leaf values added in the same order from the same
baseline, and the same ``expit``, so the probabilities are identical, not merely close.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier


class CompiledBooster:
    """The trees of one binary booster as padded ``(trees, nodes)`` arrays."""

    def __init__(self, booster: HistGradientBoostingClassifier) -> None:
        trees = [iteration[0].nodes for iteration in booster._predictors]
        width = max(len(nodes) for nodes in trees)
        padded = np.zeros((len(trees), width), dtype=trees[0].dtype)
        padded["is_leaf"] = 1  # padding is never reached; a leaf of value 0 keeps it inert
        for row, nodes in enumerate(trees):
            padded[row, : len(nodes)] = nodes
        # Flat arrays indexed by ``tree * width + node``: one-dimensional takes are numpy's fastest gather.
        self.offset = np.arange(len(trees), dtype=np.intp) * width
        self.feature = padded["feature_idx"].astype(np.intp).ravel()
        self.threshold = padded["num_threshold"].ravel()
        self.missing_left = padded["missing_go_to_left"].astype(bool).ravel()
        self.left = (padded["left"].astype(np.intp) + self.offset[:, None]).ravel()
        self.right = (padded["right"].astype(np.intp) + self.offset[:, None]).ravel()
        self.leaf = padded["is_leaf"].astype(bool).ravel()
        self.value = padded["value"].ravel()
        self.depth = int(padded["depth"].max())
        self.baseline = float(np.ravel(booster._baseline_prediction)[0])
        self.n_features = int(booster.n_features_in_)

    @classmethod
    def of(cls, booster: object) -> CompiledBooster | None:
        """The compiled form, or None for a booster this cannot reproduce exactly (categorical
        splits, more than two classes, or not a HistGradientBoostingClassifier at all)."""
        if not isinstance(booster, HistGradientBoostingClassifier) or booster.n_trees_per_iteration_ != 1:
            return None
        if any(iteration[0].nodes["is_categorical"].any() for iteration in booster._predictors):
            return None
        return cls(booster)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Probability of the positive class for each row of ``x`` (float64, the booster's columns)."""
        return expit(self.raw(x))

    def raw(self, x: np.ndarray) -> np.ndarray:
        """The booster's ``decision_function``: its raw score for each row."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected rows of {self.n_features} features, got shape {x.shape}")
        node = np.broadcast_to(self.offset, (len(x), len(self.offset))).copy()  # every tree's root
        row_start = (np.arange(len(x), dtype=np.intp) * self.n_features)[:, None]
        flat_x = x.ravel()
        for _ in range(self.depth):
            value = flat_x.take(row_start + self.feature.take(node))
            split = value <= self.threshold.take(node)
            go_left = np.where(np.isnan(value), self.missing_left.take(node), split)
            step = np.where(go_left, self.left.take(node), self.right.take(node))
            node = np.where(self.leaf.take(node), node, step)
        leaves = self.value.take(node)
        # sklearn adds each tree's value to the baseline in turn: a running sum in the same order
        # gives bit-identical raw scores (a pairwise sum would differ in the last bits).
        return np.cumsum(np.column_stack([np.full(len(x), self.baseline), leaves]), axis=1)[:, -1]


class CompiledCalibrated:
    """A binary ``CalibratedClassifierCV`` over boosters: each fold's compiled booster, its own sklearn
    calibrator (sigmoid or isotonic, already vectorised), and the folds' mean as sklearn takes it."""

    def __init__(self, folds: list[tuple[CompiledBooster, Any]]) -> None:
        self.folds = folds

    @classmethod
    def of(cls, model: object) -> CompiledCalibrated | None:
        if not isinstance(model, CalibratedClassifierCV) or len(model.classes_) != 2:
            return None
        if model.method not in ("sigmoid", "isotonic"):
            return None
        folds = [(CompiledBooster.of(fold.estimator), fold.calibrators[0])
                 for fold in model.calibrated_classifiers_]
        if any(booster is None for booster, _ in folds):
            return None
        return cls(folds)  # type: ignore[arg-type]

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        total = np.zeros(len(x))
        for booster, calibrator in self.folds:
            total += calibrator.predict(booster.raw(x))
        return total / len(self.folds)
