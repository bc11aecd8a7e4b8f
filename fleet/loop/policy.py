"""What a model's plan may say about its closed loop: how a challenger rolls out, and what triggers one.

Both live in the routing plan, per model (``rollout:`` and ``triggers:``), so the thresholds travel
with the plan and a bento; every field has a default a first rollout can use as it is.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Inclusive bounds only: the gateway's OpenAPI 3.0 spec has no numeric exclusiveMinimum.
Stage = Literal["shadow"] | Annotated[float, Field(ge=0.01, le=100)]
Seconds = Annotated[float, Field(ge=0.1, le=30 * 86400)]


class Analysis(BaseModel):
    """The thresholds of the analysis at each step: canary against stable over the step's window."""

    model_config = ConfigDict(extra="forbid")

    min_requests: Annotated[int, Field(ge=1)] = 100  # canary (and stable) predictions before any verdict
    min_labelled: Annotated[int, Field(ge=1)] = 50  # labelled predictions per arm before accuracy counts
    accuracy_margin: Annotated[float, Field(ge=0, le=1)] = 0.05  # a canary this much worse is still fine
    alpha: Annotated[float, Field(gt=0, lt=0.5)] = 0.01  # each one-sided test's error rate, per look
    max_error_increase: Annotated[float, Field(ge=0, le=1)] = 0.01  # canary error rate over the stable's
    p99_ratio: Annotated[float, Field(ge=1)] = 2.0  # canary p99 may be this many times the stable's ...
    p99_slack_ms: Annotated[float, Field(ge=0)] = 100.0  # ... or this much slower, whichever is more
    max_label_shift: Annotated[float, Field(ge=0, le=1)] = 0.2  # total variation between class shares
    min_agreement: Annotated[float, Field(ge=0, le=1)] = 0.8  # shadow step: same answer as the stable


class RolloutPolicy(BaseModel):
    """How a challenger moves through traffic: weighted steps, each judged before the next."""

    model_config = ConfigDict(extra="forbid")

    steps: Annotated[list[Stage], Field(min_length=1, max_length=20)] = [5.0, 25.0, 50.0, 100.0]
    interval: Seconds = 60  # the shortest a step lasts: its analysis window
    deadline: Seconds | None = None  # how long a step may wait for evidence (default 5 × interval)
    shadow_first: bool = False  # a shadow step, judged on agreement, before any traffic moves
    analysis: Analysis = Field(default_factory=Analysis)

    @model_validator(mode="after")
    def _shadow_only_first(self) -> RolloutPolicy:
        if "shadow" in self.steps[1:]:
            raise ValueError("a shadow step can only be the first")
        weights = [s for s in self.steps if s != "shadow"]
        if weights != sorted(weights):
            raise ValueError("traffic steps must not go down")
        return self

    def stages(self) -> list[Stage]:
        """The steps in order, the shadow step first when ``shadow_first`` asks for one."""
        if self.shadow_first and self.steps[0] != "shadow":
            return ["shadow", *self.steps]
        return list(self.steps)

    def step_deadline(self) -> float:
        return self.deadline or 5 * self.interval


class Triggers(BaseModel):
    """What starts a retraining by itself (opt-in): a clock, a drift check on a clock, or both."""

    model_config = ConfigDict(extra="forbid")

    drift_every: Seconds | None = None  # check the stable's recent inputs against its training profile
    drift_window: Seconds | None = None  # how far back a check looks (default: drift_every)
    retrain_every: Seconds | None = None  # retrain on a clock
    retrain_on_drift: bool = False  # retrain when a scheduled check finds drift
    params: dict[str, Any] = Field(default_factory=dict)  # training parameters of a triggered run

    @model_validator(mode="after")
    def _drift_rule_needs_checks(self) -> Triggers:
        if self.retrain_on_drift and self.drift_every is None:
            raise ValueError("retrain_on_drift needs drift_every (the schedule of the drift check)")
        return self
