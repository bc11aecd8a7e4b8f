"""The seed's request and response shapes, validated at the edge."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from bentos.topics.model import MAX_TEXT_CHARS

MAX_TOP_K = 5

Sentence = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEXT_CHARS)]
TopK = Annotated[int, Field(ge=1, le=MAX_TOP_K)]


class TopicRequest(BaseModel):
    """``GET /classify?sentence=…`` or the same fields as a JSON body; blank sentences are refused."""

    model_config = ConfigDict(extra="forbid", strict=True)

    sentence: Sentence
    top_k: TopK = 1


class TopicScore(BaseModel):
    """One element of the seed's response list ``[{"label", "score"}]``."""

    label: str
    score: Annotated[float, Field(ge=0.0, le=1.0)]


def to_scores(ranked: list[tuple[str, float]]) -> list[TopicScore]:
    """``TopicModel.classify`` output for one text, in the seed's response shape."""
    return [TopicScore(label=label, score=score) for label, score in ranked]
