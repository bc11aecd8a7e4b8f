"""The seed's route, written once: served by this model's own bento and by the gateway."""

from __future__ import annotations

from typing import Any

import bentoml
from starlette.responses import JSONResponse

from bentos.topics.schemas import TopicRequest, TopicScore, to_scores
from fleet.http import VERSION_HEADER, answered_by
from fleet.remote import call


async def _ranked(model: Any, request: TopicRequest) -> tuple[list[TopicScore], str]:
    """The ``top_k`` labels with scores (the seed's list) and the version that answered."""
    (ranked,) = await call(model, "classify", [request.sentence])
    return to_scores([tuple(pair) for pair in ranked["ranked"][: request.top_k]]), ranked["model_version"]


async def classify(model: Any, request: TopicRequest, ctx: bentoml.Context) -> list[TopicScore]:
    """``POST /classify``: the seed's list, the version in the header."""
    scores, version = await _ranked(model, request)
    answered_by(ctx, version)
    return scores


async def classify_query(model: Any, sentence: str, top_k: int) -> JSONResponse:
    """``GET /classify?sentence=…``: the seed's list, the version in the header."""
    scores, version = await _ranked(model, TopicRequest(sentence=sentence, top_k=top_k))
    return JSONResponse([s.model_dump() for s in scores], headers={VERSION_HEADER: version})
