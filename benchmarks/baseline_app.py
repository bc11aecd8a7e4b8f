"""The baseline: one plain FastAPI app, served by uvicorn, written the way the seeds were.

Each model is loaded once at start (the same store versions the routing plan serves), and every
request is one synchronous predict inside its handler (FastAPI runs ``def`` handlers in its thread
pool). Same prefixed routes and pydantic request shapes as the gateway, no batching, no second
process. ``FLEET_BASELINE_MODELS`` (comma-separated) loads only some models.

    python -m uvicorn benchmarks.baseline_app:app --host 127.0.0.1 --port 8000
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pandas as pd
from fastapi import FastAPI, HTTPException, Response

from benchmarks.targets import MODELS
from bentos.digits.images import ImageError, decode
from bentos.digits.model import CnnDigits, SklearnDigits
from bentos.digits.schemas import DigitPrediction, DigitRequest, resolve
from bentos.loans.model import ApprovalModel
from bentos.loans.schemas import Application, Applications, Approval, Approvals
from bentos.names.model import NationalityModel
from bentos.names.schemas import NamePredictions, NameRequest, ServiceCheck
from bentos.titanic.model import SurvivalModel
from bentos.titanic.schemas import Passengers, SurvivalPredictions
from bentos.topics.model import TopicModel
from bentos.topics.schemas import Sentence, TopicRequest, TopicScore, TopK
from fleet import store
from fleet.routing import stable_tag

LOADERS = {"names": NationalityModel.load, "loans": ApprovalModel.load, "digits_sklearn": SklearnDigits.load,
           "digits_cnn": CnnDigits.load, "topics": TopicModel.load, "titanic": SurvivalModel.load}
VERSION_HEADER = "X-Model-Version"
loaded: dict[str, tuple[str, Any]] = {}  # model → (version, model), filled once at start


def chosen_models() -> list[str]:
    wanted = os.environ.get("FLEET_BASELINE_MODELS", "")
    return [m for m in MODELS if m in wanted.split(",")] if wanted else list(MODELS)


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    for model in chosen_models():
        loaded[model] = store.load(stable_tag(model), LOADERS[model])
    yield


app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None)


def model_of(name: str, response: Response) -> Any:
    version, model = loaded[name]
    response.headers[VERSION_HEADER] = version
    return model


@app.get("/readyz")
def readyz() -> dict[str, list[str]]:
    return {"loaded": sorted(loaded)}


@app.get("/names/check_service")
def names_check_service() -> ServiceCheck:
    return ServiceCheck(model_version=loaded["names"][0])


@app.post("/names/get_prediction")
def names_get_prediction(request: NameRequest, response: Response) -> NamePredictions:
    model = model_of("names", response)
    if request.n_predictions > len(model.classes):
        raise HTTPException(400, f"n_predictions must be at most {len(model.classes)}")
    ((labels, log_probs),) = model.top_n([request.name], request.n_predictions)
    return NamePredictions(predictions=labels, probabilities=log_probs, model_version=loaded["names"][0])


def _approvals(applications: list[Application], response: Response) -> tuple[np.ndarray, str]:
    proba = model_of("loans", response).predict_proba(pd.DataFrame([a.model_dump() for a in applications]))
    return proba, loaded["loans"][0]


@app.post("/loans/predict")
def loans_predict(application: Application, response: Response) -> Approval:
    (p,), version = _approvals([application], response)
    return Approval(prediction=int(p > 0.5), probability=round(float(p), 6), model_version=version)


@app.post("/loans/predict_batch")
def loans_predict_batch(applications: Applications, response: Response) -> Approvals:
    proba, version = _approvals(applications, response)
    return Approvals(predictions=[int(p > 0.5) for p in proba],
                     probabilities=[round(float(p), 6) for p in proba], model_version=version)


@app.post("/digits/predict")
def digits_predict(request: DigitRequest, response: Response) -> DigitPrediction:
    name = resolve(request.model)
    if name is None or name not in loaded:
        raise HTTPException(400, "Invalid model name")
    try:
        pixels = decode(request.image)
    except ImageError as error:
        raise HTTPException(400, str(error)) from error
    (label,), (score,) = model_of(name, response).predict(pixels[None])
    return DigitPrediction(request_id=request.request_id, prediction=label, score=round(score, 6),
                           model_version=loaded[name][0])


def _topics(sentence: str, top_k: int, response: Response) -> list[TopicScore]:
    (ranked,) = model_of("topics", response).classify([sentence], top_k=top_k)
    return [TopicScore(label=label, score=score) for label, score in ranked]


@app.get("/topics/classify")
def topics_classify_get(sentence: Sentence, response: Response, top_k: TopK = 1) -> list[TopicScore]:
    return _topics(sentence, top_k, response)


@app.post("/topics/classify")
def topics_classify(request: TopicRequest, response: Response) -> list[TopicScore]:
    return _topics(request.sentence, request.top_k, response)


@app.post("/titanic/predict")
def titanic_predict(passengers: Passengers, response: Response) -> SurvivalPredictions:
    proba = model_of("titanic", response).predict_proba(pd.DataFrame([p.model_dump() for p in passengers]))
    return SurvivalPredictions(predictions=[int(p > 0.5) for p in proba],
                               probabilities=[round(float(p), 6) for p in proba],
                               model_version=loaded["titanic"][0])
