"""Which version of each model answers: the routing plan in ``deploy/routing.yaml``.

Per model a ``stable`` tag, optionally a ``canary`` with a traffic weight (0–100 %), a ``shadow`` that
scores a copy of traffic but never answers, and the ``previous`` stables (for rollback); ``revision``
counts the changes (``fleet.plan_sync``). Each service declares every tag the plan names, so
``bentoml build`` packs exactly those; ``FLEET_ROUTING`` points at another plan. The split is sticky:
the same caller key always lands on the same version.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from fleet import PROJECT_ROOT, SOURCE_CHECKOUT, store
from fleet.loop.policy import RolloutPolicy, Triggers
from fleet.paths import state_dir, write_atomically

DEFAULT_PLAN = PROJECT_ROOT / "deploy" / "routing.yaml"
Role = Literal["stable", "canary", "shadow", "pinned"]


class Gate(BaseModel):
    """A challenger is promoted only if ``metric`` ≥ the stable's on the same held-out split − tolerance."""

    model_config = ConfigDict(extra="forbid")

    metric: str
    tolerance: Annotated[float, Field(ge=0, le=1)] = 0.01

    def judge(self, challenger: dict[str, float], stable: dict[str, float]) -> dict[str, Any]:
        """The comparison a training response shows, and whether the challenger passes."""
        ours, theirs = challenger[self.metric], stable[self.metric]
        return {"metric": self.metric, "challenger": ours, "stable": theirs, "tolerance": self.tolerance,
                "passed": ours >= theirs - self.tolerance}


class Serving(BaseModel):
    """What answers for one model: what an admin sets, and the core of its routing plan."""

    model_config = ConfigDict(extra="forbid")

    stable: str
    canary: str | None = None
    canary_weight: Annotated[float, Field(ge=0, le=100)] = 0
    shadow: str | None = None

    @model_validator(mode="after")
    def _tags_are_well_formed(self) -> Serving:
        _check_tags(self.served_tags())
        return self

    def served_tags(self) -> list[str]:
        """Stable, canary and shadow: the tags that must be loaded, in that order, without repeats."""
        return list(dict.fromkeys(t for t in (self.stable, self.canary, self.shadow) if t))


class Route(Serving):
    """The routing plan of one model: what serves, the rollback history and its closed loop (how a
    challenger rolls out, what triggers one; ``fleet.loop``). Its retraining gate is declared with the
    model, in its spec."""

    previous: list[str] = Field(default_factory=list)
    allow_pinning: bool = True
    rollout: RolloutPolicy = Field(default_factory=RolloutPolicy)
    triggers: Triggers | None = None

    def kept_tags(self) -> list[str]:
        """What a serving worker holds for this route: the served tags and the rollback target."""
        return list(dict.fromkeys([*self.served_tags(), *self.previous[-1:]]))

    def choose(self, model: str, key: str | None) -> tuple[str, Role]:
        """The tag that answers for this caller key, and in which role (sticky by key)."""
        if self.canary and self.canary_weight > 0 and sticky_percent(model, key) < self.canary_weight:
            return self.canary, "canary"
        return self.stable, "stable"


class RouteChange(Serving):
    """What ``PUT /admin/routing/{model}`` may set; the history stays as it is."""

    def applied_to(self, current: Route) -> Route:
        """The new route; a new stable pushes the old one onto ``previous`` for rollback."""
        previous = current.previous
        if self.stable != current.stable:
            previous = [*previous, current.stable]
        return current.model_copy(update={**self.model_dump(), "previous": previous})


def _check_tags(tags: list[str]) -> None:
    for tag in tags:
        try:
            store.parse_tag(tag)
        except store.ModelNotFound as bad:
            raise ValueError(str(bad)) from bad


def sticky_percent(model: str, key: str | None) -> float:
    """A caller key's fixed place in [0, 100) for this model; a random one when there is no key."""
    key = key or uuid.uuid4().hex
    digest = hashlib.sha256(f"{model}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 / 100


def plan_path() -> Path:
    """The plan in force: ``FLEET_ROUTING``, else in a bento the plan its last change wrote (its packed
    ``deploy/routing.yaml`` is read-only in the image) if there is one, else ``deploy/routing.yaml``."""
    if os.environ.get("FLEET_ROUTING"):
        return Path(os.environ["FLEET_ROUTING"])
    written = written_plan()
    return written if written.exists() else DEFAULT_PLAN


def written_plan() -> Path:
    """Where a change of the plan is written: ``FLEET_ROUTING``, the project's plan in a source checkout,
    else the state folder (``fleet.paths``)."""
    if os.environ.get("FLEET_ROUTING"):
        return Path(os.environ["FLEET_ROUTING"])
    return DEFAULT_PLAN if SOURCE_CHECKOUT else state_dir() / "routing.yaml"


def parse_plan(raw: dict[str, Any]) -> dict[str, Route]:
    """Each model's route; ``revision`` (how many changes the plan has seen) is not a model."""
    return {name: Route.model_validate(route) for name, route in raw.items() if name != "revision"}


def load_plan(path: Path | None = None) -> dict[str, Route]:
    with open(path or plan_path()) as handle:
        return parse_plan(yaml.safe_load(handle) or {})


def plan_text(plan: dict[str, Route], revision: int | None = None) -> str:
    body: dict[str, Any] = {"revision": revision} if revision else {}
    body |= {name: {"stable": route.stable, **route.model_dump(exclude_defaults=True)}
             for name, route in plan.items()}
    text = "# Written by Bento Fleet's routing tools; see README \"Rolling out a new version\".\n"
    return text + yaml.safe_dump(body, sort_keys=False)


def save_plan(plan: dict[str, Route], path: Path | None = None, revision: int | None = None, *,
              durable: bool = False) -> None:
    """Write the plan atomically (a reader never sees half a file); ``durable``: fsync'd too."""
    write_atomically(path or written_plan(), plan_text(plan, revision), durable=durable)


def route(model: str) -> Route:
    try:
        return load_plan()[model]
    except KeyError as missing:
        raise KeyError(f"{plan_path()} has no route for {model!r}") from missing


def stable_tag(model: str) -> str:
    """The tag that answers for ``model`` when nothing else is asked (e.g. ``loans:v1``)."""
    return route(model).stable
