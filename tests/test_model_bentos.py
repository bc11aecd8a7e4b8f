"""Each model's own bento serves exactly the seed's routes, unprefixed, as the seed's clients call them."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from bentos.digits.schemas import SEED_JPEG
from bentos.loans.schemas import EXAMPLE as APPLICATION
from deploy.contract_check import check
from tests.conftest import serving
from tests.fuzz import fuzz


@pytest.mark.parametrize("model", ["names", "loans", "digits", "topics", "titanic"])
def test_each_model_bento_serves_the_seed_contract(routing_plan: Path, model: str) -> None:
    target = f"bentos.{model}.service:{model.capitalize()}"
    with serving(target, {"FLEET_ROUTING": str(routing_plan)}) as url, \
            httpx.Client(base_url=url, timeout=60) as client:
        assert check(url, alone=model) == {model: "ok"}
        assert response_is_versioned(client, model)
        fuzz(url, examples=5)  # the same edge and a truthful spec on each model's own bento


def response_is_versioned(client: httpx.Client, model: str) -> bool:
    probe = {"names": ("POST", "/get_prediction", {"name": "Ann"}),
             "loans": ("POST", "/predict", APPLICATION),
             "digits": ("POST", "/predict/", {"request_id": "1", "model": "cnn", "image": SEED_JPEG}),
             "topics": ("POST", "/classify", {"sentence": "Calculus"}),
             "titanic": ("POST", "/predict", [{"Sex": "female"}])}[model]
    response = client.request(probe[0], probe[1], json=probe[2])
    return response.status_code == 200 and response.headers["X-Model-Version"].startswith("v")
