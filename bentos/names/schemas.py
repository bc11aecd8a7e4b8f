"""The seed's request and response shapes, validated at the edge."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from bentos.names.model import CONFIDENT_PROBABILITY, MAX_NAME_CHARS

# A ceiling for the schema; the service also refuses more than the loaded model's class count.
MAX_PREDICTIONS = 20
# "Contains a letter", as the check below and as the schema's ``pattern`` (a search, not anchored).
LETTER = r"[^\W\d_]"


class NameRequest(BaseModel):
    """One surname and how many of the likeliest countries to return (seed: ``{"name", "n_predictions"}``)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_NAME_CHARS),
        Field(json_schema_extra={"pattern": LETTER}, description="A surname; it needs at least one letter."),
    ]
    n_predictions: Annotated[int, Field(ge=1, le=MAX_PREDICTIONS)] = 3

    @field_validator("name")
    @classmethod
    def _has_letter(cls, value: str) -> str:
        if not re.search(LETTER, value):
            raise ValueError("name must contain at least one letter")
        return value


class NamePredictions(BaseModel):
    """The seed's ``predictions`` and ``probabilities`` (natural-log, most likely first), plus the version
    and whether the top answer is likely enough to rely on (an addition the seed did not have)."""

    predictions: list[str]
    probabilities: list[float]
    model_version: str
    confident: bool = Field(
        default=True,
        description=f"false when the top probability is below {CONFIDENT_PROBABILITY}: the surname is "
                    "common in several countries and the ranking is a guess (see the model card)",
    )


class ServiceCheck(BaseModel):
    """``GET /check_service``: the seed's greeting, plus which model version is answering."""

    Message: str = "Hello world from service"
    model_version: str | None = None
