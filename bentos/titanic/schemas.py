"""The seed's request and response shapes, validated at the edge."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_PASSENGERS = 1000


class Passenger(BaseModel):
    """A Kaggle-style passenger. Only ``Sex`` is required; absent fields are imputed as in training.

    The model reads Pclass, Sex, Age, SibSp and Parch. Embarked and the other Kaggle columns are
    accepted so Kaggle rows can be sent as they are, but the training data does not record them.
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    Sex: Literal["male", "female"]
    Pclass: Annotated[int, Field(ge=1, le=3)] | None = None
    Age: Annotated[float, Field(ge=0, le=120, allow_inf_nan=False)] | None = None
    SibSp: Annotated[int, Field(ge=0, le=20)] | None = None
    Parch: Annotated[int, Field(ge=0, le=20)] | None = None
    Embarked: Literal["S", "C", "Q"] | None = None
    PassengerId: int | None = None
    Name: Annotated[str, Field(max_length=200)] | None = None
    Ticket: Annotated[str, Field(max_length=50)] | None = None
    Fare: Annotated[float, Field(ge=0, le=10_000, allow_inf_nan=False)] | None = None
    Cabin: Annotated[str, Field(max_length=50)] | None = None

    @field_validator("Sex", "Embarked", mode="before")
    @classmethod
    def _fold_case(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip()
            return value.upper() if len(value) == 1 else value.lower()
        return value


Passengers = Annotated[list[Passenger], Field(min_length=1, max_length=MAX_PASSENGERS)]


class SurvivalPredictions(BaseModel):
    """``predictions`` as in the seed, plus the probability of survival and the answering version."""

    predictions: list[int]
    probabilities: list[float]
    model_version: str


class PipelineResult(BaseModel):
    """The seed's ``msg``, plus the trained version, the gate's verdict and the version now serving."""

    msg: str = "Completed pipeline."
    model_version: str
    new_model_version: str
    promoted: bool
    detail: str | None = None
    gate: dict[str, Any]
    metrics: dict[str, float]


EXAMPLE = {"Sex": "male", "Age": 22, "Embarked": "S"}
