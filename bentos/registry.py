"""Every model the fleet serves, by store name: the one list the gateway, training, the benchmark and
the retraining subprocess read."""

from __future__ import annotations

from bentos.digits import spec as digits
from bentos.loans import spec as loans
from bentos.names import spec as names
from bentos.titanic import spec as titanic
from bentos.topics import spec as topics
from fleet.spec import ModelSpec

SPECS: dict[str, ModelSpec] = {spec.name: spec for spec in (
    names.SPEC, loans.SPEC, digits.SKLEARN, digits.CNN, topics.SPEC, titanic.SPEC)}
