"""Both digit classifiers behind adaptive batching, and the seed's route (``POST /predict/``) as a
bento of its own: ``bentoml serve bentos.digits.service:Digits``."""

from __future__ import annotations

from typing import Any

import bentoml
import numpy as np
import torch

from bentos.digits import handlers
from bentos.digits.model import CnnDigits, SklearnDigits
from bentos.digits.schemas import DigitPrediction, DigitRequest
from fleet.admission import Admission
from fleet.batching import batched
from fleet.http import BodyLimit, answers_problems
from fleet.predlog import pixels_form
from fleet.remote import direct
from fleet.serving import MODEL_SERVICE, VersionedModels, declare_models
from fleet.versions import ServedVersions

SMOKE = [np.zeros((8, 8))]


def label(output: dict) -> int:
    return output["prediction"]


def loggable(pixels: np.ndarray) -> dict:
    """The normalised 8×8 pixels (about 400 bytes), never the caller's image."""
    return {"pixels": pixels_form(pixels)}


def score(model: Any, images: list[np.ndarray]) -> list[dict]:
    """The digit and its probability for a batch of normalised 8×8 images (0–16)."""
    labels, scores = model.predict(np.stack(images))
    return [{"prediction": label, "score": round(float(p), 6)}
            for label, p in zip(labels, scores, strict=True)]


@bentoml.service(name="digits-model", **MODEL_SERVICE)
class DigitsModel(VersionedModels):
    """Holds the planned versions of both image models; images arrive decoded to 8×8."""

    def __init__(self) -> None:
        torch.set_num_threads(1)
        self.served = {"digits_sklearn": ServedVersions("digits_sklearn", SklearnDigits.load, score, SMOKE),
                       "digits_cnn": ServedVersions("digits_cnn", CnnDigits.load, score, SMOKE)}

    @bentoml.api(**batched("digits_sklearn"))
    def predict_sklearn(self, items: list[dict]) -> list[dict]:
        return self.served["digits_sklearn"].run(items)

    @bentoml.api(**batched("digits_cnn"))
    def predict_cnn(self, items: list[dict]) -> list[dict]:
        return self.served["digits_cnn"].run(items)


declare_models(DigitsModel, "digits_sklearn", "digits_cnn")


@bentoml.service(name="digits")
class Digits:
    """The seed 002 contract, unprefixed (``/predict/``, the seed's trailing slash), on stable versions."""

    model = bentoml.depends(DigitsModel)

    @bentoml.api(route="/predict/")
    @answers_problems
    async def predict(self, request: DigitRequest, /, ctx: bentoml.Context) -> DigitPrediction:
        return await handlers.predict(lambda _: direct(self.model), request, ctx)


Digits.add_asgi_middleware(BodyLimit)
Digits.add_asgi_middleware(Admission)
