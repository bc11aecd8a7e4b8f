"""Both digit classifiers behind adaptive batching, and the seed's route (``POST /predict/``) as a
bento of its own: ``bentoml serve bentos.digits.service:Digits``."""

from __future__ import annotations

from typing import Any

import bentoml
import numpy as np
import torch
from bentoml.models import BentoModel

from bentos.digits import handlers
from bentos.digits.model import CnnDigits, SklearnDigits
from bentos.digits.schemas import DigitPrediction, DigitRequest
from fleet import store
from fleet.batching import batched
from fleet.http import BodyLimit
from fleet.routing import stable_tag

SKLEARN_TAG = stable_tag("digits_sklearn")
CNN_TAG = stable_tag("digits_cnn")


def _scored(model: Any, version: str, images: np.ndarray) -> list[dict]:
    labels, scores = model.predict(images)
    return [{"prediction": label, "score": round(score, 6), "model_version": version}
            for label, score in zip(labels, scores, strict=True)]


@bentoml.service(name="digits-model", workers=1)
class DigitsModel:
    """Loads both planned versions once; images arrive decoded to 8×8 and are scored in batches."""

    sklearn_model = BentoModel(SKLEARN_TAG)
    cnn_model = BentoModel(CNN_TAG)

    def __init__(self) -> None:
        torch.set_num_threads(1)
        self.sklearn_version, self.sklearn = store.load(SKLEARN_TAG, SklearnDigits.load)
        self.cnn_version, self.cnn = store.load(CNN_TAG, CnnDigits.load)

    @bentoml.api(**batched("digits"))
    def classify_sklearn(self, images: np.ndarray) -> list[dict]:
        return _scored(self.sklearn, self.sklearn_version, images)

    @bentoml.api(**batched("digits"))
    def classify_cnn(self, images: np.ndarray) -> list[dict]:
        return _scored(self.cnn, self.cnn_version, images)


@bentoml.service(name="digits")
class Digits:
    """The seed 002 contract, unprefixed (``/predict/`` with the seed's trailing slash)."""

    model = bentoml.depends(DigitsModel)

    @bentoml.api(route="/predict/")
    async def predict(self, request: DigitRequest, /, ctx: bentoml.Context) -> DigitPrediction:
        return await handlers.predict(self.model, request, ctx)


Digits.add_asgi_middleware(BodyLimit)
