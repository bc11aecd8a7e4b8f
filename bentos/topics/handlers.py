"""The seed's route, written once: served by this model's own bento and by the gateway."""

from __future__ import annotations

from collections.abc import Mapping

import bentoml
from starlette.responses import JSONResponse

from bentos.topics.schemas import TopicRequest, TopicScore, to_scores
from fleet.http import VERSION_HEADER, Problem, answered_by, invalid_body
from fleet.traffic import Score


async def _ranked(score: Score, request: TopicRequest) -> tuple[list[TopicScore], str]:
    """The ``top_k`` labels with scores (the seed's list) and the version that answered."""
    (ranked,) = await score([request.sentence])
    return to_scores([tuple(pair) for pair in ranked["ranked"][: request.top_k]]), ranked["model_version"]


async def classify(score: Score, request: TopicRequest, ctx: bentoml.Context) -> list[TopicScore]:
    """``POST /classify``: the seed's list, the version in the header."""
    scores, version = await _ranked(score, request)
    answered_by(ctx, version)
    return scores


QUERY = ("sentence", "top_k")


async def classify_query(score: Score, query: Mapping[str, str], sentence: str, top_k: int) -> JSONResponse:
    """``GET /classify?sentence=…``: the seed's list, the version in the header; unknown query
    parameters are refused, as unknown body fields are."""
    unknown = sorted(set(query) - set(QUERY))
    if unknown:
        raise Problem(400, invalid_body(unknown[0], f"unknown query parameter; accepted: {', '.join(QUERY)}"))
    scores, version = await _ranked(score, TopicRequest(sentence=sentence, top_k=top_k))
    return JSONResponse([s.model_dump() for s in scores], headers={VERSION_HEADER: version})
