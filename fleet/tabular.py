"""A yes/no scikit-learn pipeline saved with joblib: what the loans and Titanic models share."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Self

import joblib
import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

log = logging.getLogger(__name__)
Scorer = Callable[[list[dict[str, Any]]], np.ndarray]  # request rows → probability of the positive class


class BinaryPipelineModel:
    """A fitted pipeline: a frame of rows → probability of the positive class.

    Columns the model reads but a row lacks become missing values, imputed as in training. Loading
    unpickles a file from the model store only, never anything a request names.

    A model may also ``compile`` its pipeline into a faster scorer of request rows (no pandas, no
    Python call per tree). It serves only if it answers ``probes`` exactly as the pipeline does when
    the model loads; otherwise, or for a pipeline it does not recognise, serving uses the pipeline.
    """

    FILE: ClassVar[str] = "pipeline.joblib"
    features: ClassVar[list[str]] = []
    probes: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self._fast = self._checked(pipeline)

    @classmethod
    def load(cls, folder: Path) -> Self:
        return cls(joblib.load(Path(folder) / cls.FILE))

    def save(self, folder: Path) -> None:
        joblib.dump(self.pipeline, Path(folder) / self.FILE)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return self.pipeline.predict_proba(frame.reindex(columns=self.features))[:, 1]

    def score_rows(self, rows: list[dict]) -> np.ndarray:
        """``predict_proba`` of request rows: what serving calls (through the compiled form if any)."""
        return self._fast(rows) if self._fast is not None else self.predict_proba(pd.DataFrame(rows))

    @classmethod
    def compile(cls, pipeline: Pipeline) -> Scorer | None:
        """A faster scorer of request rows for this pipeline, or None (the default: none)."""
        return None

    def _checked(self, pipeline: Pipeline) -> Scorer | None:
        try:
            fast = self.compile(pipeline)
        except (AttributeError, IndexError, KeyError, TypeError, ValueError):
            return None
        if fast is None:
            return None
        if not np.array_equal(fast(self.probes), self.predict_proba(pd.DataFrame(self.probes))):
            log.warning("%s: the compiled scorer differs from the pipeline; serving with the pipeline",
                        type(self).__name__)
            return None
        return fast


def binary_scores(model: BinaryPipelineModel, rows: list[dict], key: str) -> list[dict]:
    """A batch of rows → ``{key: 0 | 1, "probability": p}`` each (the loans and Titanic specs' scorer)."""
    proba = model.score_rows(rows)
    return [{key: int(p > 0.5), "probability": round(float(p), 6)} for p in proba]
