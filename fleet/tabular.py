"""A yes/no scikit-learn pipeline saved with joblib: what the loans and Titanic models share."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Self

import joblib
import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline


class BinaryPipelineModel:
    """A fitted pipeline: a frame of rows → probability of the positive class.

    Columns the model reads but a row lacks become missing values, imputed as in training. Loading
    unpickles a file from the model store only, never anything a request names.
    """

    FILE: ClassVar[str] = "pipeline.joblib"
    features: ClassVar[list[str]] = []

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    @classmethod
    def load(cls, folder: Path) -> Self:
        return cls(joblib.load(Path(folder) / cls.FILE))

    def save(self, folder: Path) -> None:
        joblib.dump(self.pipeline, Path(folder) / self.FILE)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return self.pipeline.predict_proba(frame.reindex(columns=self.features))[:, 1]

    def score_rows(self, rows: list[dict]) -> np.ndarray:
        """``predict_proba`` of request rows: what serving calls, so a model may answer it faster."""
        return self.predict_proba(pd.DataFrame(rows))


def binary_scores(model: BinaryPipelineModel, rows: list[dict], key: str) -> list[dict]:
    """A batch of rows → ``{key: 0 | 1, "probability": p}`` each (the loans and Titanic specs' scorer)."""
    proba = model.score_rows(rows)
    return [{key: int(p > 0.5), "probability": round(float(p), 6)} for p in proba]
