"""Each model's own bento serves exactly the seed's routes, unprefixed, as the seed's clients call them."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from bentos.digits.schemas import SEED_JPEG
from bentos.loans.schemas import EXAMPLE as APPLICATION
from tests.conftest import serving


def _seed_calls(client: httpx.Client, model: str) -> None:
    if model == "names":
        assert client.get("/check_service").json()["Message"] == "Hello world from service"
        answer = client.post("/get_prediction", json={"name": "Jordan", "n_predictions": 2})
        assert len(answer.json()["predictions"]) == 2
    elif model == "loans":
        assert client.post("/predict", json=APPLICATION).json()["prediction"] in (0, 1)
        assert len(client.post("/predict_batch", json=[APPLICATION] * 3).json()["predictions"]) == 3
    elif model == "digits":
        seed_request = {"request_id": "123", "model": "clf.pickle", "image": SEED_JPEG}
        answer = client.post("/predict/", json=seed_request)
        assert answer.json() | {"score": 0} == {"request_id": "123", "prediction": 8, "score": 0,
                                                "model_version": answer.headers["X-Model-Version"]}
        bad = client.post("/predict/", json={"request_id": "1", "model": "x.pickle", "image": SEED_JPEG})
        assert (bad.status_code, bad.json()) == (400, {"detail": "Invalid model name"})
    elif model == "topics":
        answer = client.get("/classify", params={"sentence": "Mapa aprende un nuevo lenguaje"})
        assert set(answer.json()[0]) == {"label", "score"}
    elif model == "titanic":
        answer = client.post("/predict", json=[{"Age": 22, "Sex": "male", "Embarked": "S"}])
        assert answer.json()["predictions"] in ([0], [1])


@pytest.mark.parametrize("model", ["names", "loans", "digits", "topics", "titanic"])
def test_each_model_bento_serves_the_seed_contract(routing_plan: Path, model: str) -> None:
    target = f"bentos.{model}.service:{model.capitalize()}"
    with serving(target, {"FLEET_ROUTING": str(routing_plan)}) as url, \
            httpx.Client(base_url=url, timeout=60) as client:
        _seed_calls(client, model)
        assert response_is_versioned(client, model)


def response_is_versioned(client: httpx.Client, model: str) -> bool:
    probe = {"names": ("POST", "/get_prediction", {"name": "Ann"}),
             "loans": ("POST", "/predict", APPLICATION),
             "digits": ("POST", "/predict/", {"request_id": "1", "model": "cnn", "image": SEED_JPEG}),
             "topics": ("POST", "/classify", {"sentence": "Calculus"}),
             "titanic": ("POST", "/predict", [{"Sex": "female"}])}[model]
    response = client.request(probe[0], probe[1], json=probe[2])
    return response.status_code == 200 and response.headers["X-Model-Version"].startswith("v")
