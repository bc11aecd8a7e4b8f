"""Which version of each model serves: the routing plan in ``deploy/routing.yaml``.

The plan names exact tags; ``service.py`` declares them as BentoML models, so ``bentoml build``
packs exactly those, and the services load them at start. ``FLEET_ROUTING`` points elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from fleet import PROJECT_ROOT

DEFAULT_PLAN = PROJECT_ROOT / "deploy" / "routing.yaml"


def plan_path() -> Path:
    return Path(os.environ.get("FLEET_ROUTING", DEFAULT_PLAN))


def load_plan() -> dict[str, dict[str, str]]:
    with open(plan_path()) as handle:
        return yaml.safe_load(handle) or {}


def stable_tag(model: str) -> str:
    """The tag that answers for ``model`` (e.g. ``loans:v1``)."""
    try:
        return load_plan()[model]["stable"]
    except KeyError as missing:
        raise KeyError(f"{plan_path()} has no stable tag for {model!r}") from missing
