"""Request and response shapes of the loans API (seed 001), validated at the edge."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

MAX_APPLICATIONS = 1000
Count = Annotated[int, Field(ge=0, le=1000)]


class Application(BaseModel):
    """One credit application (AER/CreditCard columns); every field is required."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    reports: Annotated[int, Field(ge=0, le=100, description="major derogatory reports")]
    age: Annotated[float, Field(ge=18, le=120, description="age in years")]
    income: Annotated[float, Field(ge=0, le=1000, description="yearly income in USD 10,000")]
    owner: Annotated[bool, Field(description="owns their home")]
    selfemp: Annotated[bool, Field(description="self-employed")]
    dependents: Annotated[int, Field(ge=0, le=30, description="number of dependents")]
    months: Annotated[int, Field(ge=0, le=1200, description="months at current address")]
    majorcards: Annotated[int, Field(ge=0, le=50, description="major credit cards held")]
    active: Annotated[int, Field(ge=0, le=500, description="active credit accounts")]


EXAMPLE = {"reports": 0, "age": 37.7, "income": 4.52, "owner": True, "selfemp": False,
           "dependents": 3, "months": 54, "majorcards": 1, "active": 12}
Applications = Annotated[list[Application], Field(min_length=1, max_length=MAX_APPLICATIONS)]


class Approval(BaseModel):
    prediction: int = Field(description="1 approved, 0 rejected")
    probability: float = Field(description="calibrated probability of approval")
    model_version: str


class Approvals(BaseModel):
    predictions: list[int]
    probabilities: list[float]
    model_version: str


class TrainParams(BaseModel):
    """Optional training parameters; ``epochs`` is read as boosting iterations."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    max_iter: Annotated[int, Field(ge=10, le=2000)] | None = Field(
        None, validation_alias=AliasChoices("max_iter", "epochs"))
    learning_rate: Annotated[float, Field(gt=0, le=1)] | None = None
    max_depth: Annotated[int, Field(ge=1, le=12)] | None = None


NO_PARAMS = TrainParams()


class TrainResult(BaseModel):
    """The seed's ``message`` and ``new_model_version``, plus the gate's verdict and what now serves."""

    message: str
    new_model_version: str
    promoted: bool
    serving_version: str
    model_version: str = Field(description="the version answering predictions now (= serving_version)")
    gate: dict[str, Any]
    metrics: dict[str, float]
