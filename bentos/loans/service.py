"""Credit approval behind adaptive batching, and the seed's routes (``/predict``, ``/predict_batch``,
``/train``) as a bento of its own: ``bentoml serve bentos.loans.service:Loans``."""

from __future__ import annotations

import bentoml
import pandas as pd

from bentos.loans import handlers, pipeline
from bentos.loans.model import ApprovalModel
from bentos.loans.schemas import (
    EXAMPLE,
    NO_PARAMS,
    Application,
    Applications,
    Approval,
    Approvals,
    TrainParams,
    TrainResult,
)
from fleet.admission import Admission
from fleet.auth import require_admin
from fleet.batching import batched
from fleet.http import BodyLimit, answers_problems
from fleet.remote import direct
from fleet.routing import route
from fleet.serving import MODEL_SERVICE, VersionedModels, adopt_in_place, declare_models
from fleet.versions import ServedVersions


def label(output: dict) -> int:
    return output["approved"]


def score(model: ApprovalModel, applications: list[dict]) -> list[dict]:
    proba = model.predict_proba(pd.DataFrame(applications))
    return [{"approved": int(p > 0.5), "probability": round(float(p), 6)} for p in proba]


@bentoml.service(name="loans-model", **MODEL_SERVICE)
class LoansModel(VersionedModels):
    """Holds the planned versions; scores whole batches of applications, grouped by version."""

    def __init__(self) -> None:
        self.served = {"loans": ServedVersions("loans", ApprovalModel.load, score, [EXAMPLE])}

    @bentoml.api(**batched("loans"))
    def predict(self, items: list[dict]) -> list[dict]:
        return self.served["loans"].run(items)

    @bentoml.api
    async def retrain(self, params: dict) -> dict:
        """Train a challenger; predictions go on meanwhile."""
        return await self.retrain_and_compare("loans", pipeline.train, pipeline.evaluate, params)


declare_models(LoansModel, "loans")


@bentoml.service(name="loans")
class Loans:
    """The seed 001 contract, unprefixed, on the stable version."""

    model = bentoml.depends(LoansModel)

    @bentoml.api(route="/predict")
    async def predict(self, application: Application, /, ctx: bentoml.Context) -> Approval:
        return await handlers.predict(direct(self.model), application, ctx)

    @bentoml.api(route="/predict_batch")
    async def predict_batch(self, applications: Applications, /, ctx: bentoml.Context) -> Approvals:
        return await handlers.predict_batch(direct(self.model), applications, ctx)

    @bentoml.api(route="/train")
    @answers_problems
    async def train(self, params: TrainParams = NO_PARAMS, /, ctx: bentoml.Context = None) -> TrainResult:
        require_admin(ctx.request.headers, "/train")
        adopt = adopt_in_place(self.model, "loans")
        return await handlers.train(self.model, params, ctx, route("loans").gate, adopt)


Loans.add_asgi_middleware(BodyLimit)
Loans.add_asgi_middleware(Admission)
