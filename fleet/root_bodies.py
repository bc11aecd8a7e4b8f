"""List bodies (titanic's passengers, loans' batch) parsed without building their JSON schema each time.

BentoML 1.4 parses the body of an API whose input is one positional list (a "root" input) in
``IORootModel.model_validate_json``, which first calls ``model_json_schema()`` to learn whether the
body is a string or a file: a new pydantic ``TypeAdapter`` and a whole JSON schema per request. For
titanic that was over half of a worker's CPU under load (py-spy: 960 of 1,769 samples). The answer
depends only on the class, so ``parse_root_bodies_once`` computes it once per class and parses exactly
as BentoML does after that. ``tests/test_edge.py`` fails if a BentoML upgrade moves the method.
"""

from __future__ import annotations

import json
from typing import Any


def parse_root_bodies_once() -> None:
    """Replace ``IORootModel.model_validate_json`` with its once-per-class form (idempotent)."""
    from _bentoml_sdk.io_models import IORootModel

    if getattr(IORootModel.model_validate_json, "parses_once", False):
        return
    raw_bodies: dict[type, bool] = {}

    def model_validate_json(cls: type[IORootModel], json_data: str | bytes | bytearray, **kwargs: Any
                            ) -> IORootModel:
        raw = raw_bodies.get(cls)
        if raw is None:
            raw = raw_bodies[cls] = cls.model_json_schema().get("type") in ("string", "file")
        return cls.model_validate(json_data if raw else json.loads(json_data), **kwargs)

    model_validate_json.parses_once = True  # type: ignore[attr-defined]
    IORootModel.model_validate_json = classmethod(model_validate_json)  # type: ignore[method-assign,assignment]
