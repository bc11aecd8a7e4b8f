"""What is benchmarked per model: the gateway route, the seed-shaped request bodies, the in-process batch.

The seeds' own examples (kept with the schemas) and a few more inputs feed the HTTP requests (cycled)
and the in-process ceiling, so both score the same texts, names and images. Model classes are imported
lazily: the routing plan and the store must be chosen (environment) before ``fleet`` is imported.
"""

from __future__ import annotations

import importlib
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from bentos.digits.schemas import SEED_JPEG
from bentos.loans.schemas import EXAMPLE as APPLICATION
from bentos.titanic.schemas import EXAMPLE as PASSENGER

MODELS = ("names", "loans", "digits_sklearn", "digits_cnn", "topics", "titanic")

SURNAMES = ("Jordan", "Nakamura", "Kowalski", "Rossi", "Müller", "Ivanov", "O'Brien", "Garcia")
TITLES = ("Introduction to Organic Chemistry", "Linear Algebra", "Principles of Microeconomics",
          "Modern European History", "Data Structures and Algorithms", "Introduction to Sociology",
          "Cell Biology Laboratory", "Shakespeare's Comedies")
PASSENGERS = (PASSENGER, {"Age": 30, "Sex": "female", "Pclass": 1},
              {"Age": 4, "Sex": "male", "Pclass": 3, "SibSp": 1, "Parch": 1})
APPLICATIONS = (APPLICATION, {**APPLICATION, "reports": 2, "income": 2.1}, {**APPLICATION, "age": 58.0})


@dataclass(frozen=True)
class Target:
    """One model: its gateway route, request bodies (cycled) and the service's torch thread count."""

    model: str
    path: str
    bodies: tuple[Any, ...]
    torch_threads: int | None = None

    def requests(self) -> Iterator[bytes]:
        """Pre-encoded JSON bodies, cycled forever (encoding is not the client's job under load)."""
        encoded = [json.dumps(body).encode() for body in self.bodies]
        return itertools.cycle(encoded)


def _digit_request(model: str) -> tuple[dict[str, str], ...]:
    return tuple({"request_id": str(i), "model": model, "image": SEED_JPEG} for i in range(3))


TARGETS: dict[str, Target] = {
    "names": Target("names", "/names/get_prediction",
                    tuple({"name": n, "n_predictions": 2} for n in SURNAMES), torch_threads=1),
    "loans": Target("loans", "/loans/predict", APPLICATIONS),
    "digits_sklearn": Target("digits_sklearn", "/digits/predict", _digit_request("clf.pickle"), 1),
    "digits_cnn": Target("digits_cnn", "/digits/predict", _digit_request("cnn"), 1),
    "topics": Target("topics", "/topics/classify", tuple({"sentence": t} for t in TITLES)),
    "titanic": Target("titanic", "/titanic/predict", tuple([p] for p in PASSENGERS)),
}


# The pydantic request shape the gateway validates each body against.
DIGIT_REQUEST = "bentos.digits.schemas:DigitRequest"
REQUEST_TYPES = {
    "names": "bentos.names.schemas:NameRequest", "loans": "bentos.loans.schemas:Application",
    "digits_sklearn": DIGIT_REQUEST, "digits_cnn": DIGIT_REQUEST,
    "topics": "bentos.topics.schemas:TopicRequest", "titanic": "bentos.titanic.schemas:Passengers",
}


def imported(path: str) -> Any:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def edge(model: str) -> Callable[[bytes], Any]:
    """What the gateway does to a body before any model call: JSON → pydantic (and, for digits, the
    image decoded to 8×8)."""
    from pydantic import TypeAdapter

    adapter = TypeAdapter(imported(REQUEST_TYPES[model]))
    if not model.startswith("digits"):
        return adapter.validate_json
    from bentos.digits.images import decode

    return lambda body: decode(adapter.validate_json(body).image)


def batch_inputs(model: str, size: int) -> list[Any]:
    """``size`` items in the form a model spec's ``score`` receives them."""
    if model == "names":
        return [SURNAMES[i % len(SURNAMES)] for i in range(size)]
    if model == "topics":
        return [TITLES[i % len(TITLES)] for i in range(size)]
    if model in ("loans", "titanic"):
        rows = APPLICATIONS if model == "loans" else PASSENGERS
        return [rows[i % len(rows)] for i in range(size)]
    from bentos.digits.images import decode

    return [decode(SEED_JPEG)] * size  # the gateway decodes; the model gets 8×8 arrays


def scorer(model: str) -> Callable[[list[Any]], Any]:
    """The planned version, loaded as a serving worker loads it, bound to its spec's batch ``score``."""
    from bentos.registry import SPECS
    from fleet import store
    from fleet.routing import stable_tag

    spec = SPECS[model]
    _, loaded = store.load(stable_tag(model), spec.load)
    return lambda items: spec.score(loaded, items)
