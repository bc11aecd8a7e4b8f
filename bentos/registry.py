"""Every model the fleet serves, by store name: the one list the gateway, training, the benchmark and
the retraining subprocess read."""

from __future__ import annotations

from bentos.digits import docs as digits_docs
from bentos.digits import spec as digits
from bentos.loans import docs as loans_docs
from bentos.loans import spec as loans
from bentos.names import docs as names_docs
from bentos.names import spec as names
from bentos.titanic import docs as titanic_docs
from bentos.titanic import spec as titanic
from bentos.topics import docs as topics_docs
from bentos.topics import spec as topics
from fleet.openapi import Operation, Tag
from fleet.spec import ModelSpec

SPECS: dict[str, ModelSpec] = {spec.name: spec for spec in (
    names.SPEC, loans.SPEC, digits.SKLEARN, digits.CNN, topics.SPEC, titanic.SPEC)}

# Each seed contract's routes as the docs page shows them, in the page's order.
_DOCS = (names_docs, loans_docs, digits_docs, topics_docs, titanic_docs)
TAGS: list[Tag] = [m.TAG for m in _DOCS]
OPERATIONS: dict[str, Operation] = {key: operation for m in _DOCS for key, operation in m.OPERATIONS.items()}
