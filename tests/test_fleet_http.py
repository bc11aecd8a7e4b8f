"""The all-in-one gateway served for real (``bentoml serve service:Fleet`` on 127.0.0.1), called with
the seeds' own example requests, with bad input, and through BentoML's Python client."""

from __future__ import annotations

import concurrent.futures
import math

import bentoml
import httpx
import pytest

from bentos.digits.schemas import SEED_JPEG
from bentos.loans.schemas import EXAMPLE as APPLICATION
from tests.conftest import ADMIN


def _versioned(response: httpx.Response) -> dict | list:
    """A successful answer that says which version answered, in the header and in object bodies."""
    assert response.status_code == 200, response.text
    version = response.headers["X-Model-Version"]
    assert version.startswith("v")
    body = response.json()
    if isinstance(body, dict) and "model_version" in body:
        assert body["model_version"] == version
    return body


def _names_the_field(response: httpx.Response, field: str) -> None:
    """A 4xx whose body locates the problem at ``field`` (``detail[].loc``), not merely mentions it."""
    assert 400 <= response.status_code < 500, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list), response.text
    assert any(field in [str(part) for part in problem["loc"]] for problem in detail), response.text


# names (seed 000)
def test_names_check_service(fleet: httpx.Client) -> None:
    assert _versioned(fleet.get("/names/check_service"))["Message"] == "Hello world from service"


def test_a_names_request_refused_for_the_class_count_is_not_logged(fleet: httpx.Client) -> None:
    refused = fleet.post("/names/get_prediction", json={"name": "Jordan", "n_predictions": 19},
                         headers={"X-Request-ID": "more-than-the-classes"})
    _names_the_field(refused, "n_predictions")
    logged = fleet.get("/admin/predictions", params={"request_id": "more-than-the-classes"}, headers=ADMIN)
    assert logged.status_code == 200 and logged.json() == []


def test_names_seed_example_gives_descending_log_probabilities(fleet: httpx.Client) -> None:
    body = _versioned(fleet.post("/names/get_prediction", json={"name": "Jordan", "n_predictions": 2}))
    assert len(body["predictions"]) == 2 and len(set(body["predictions"])) == 2
    probabilities = body["probabilities"]
    assert probabilities == sorted(probabilities, reverse=True) and all(p <= 0 for p in probabilities)
    assert sum(math.exp(p) for p in probabilities) <= 1 + 1e-6


def test_names_folds_case_and_accents_like_training(fleet: httpx.Client) -> None:
    answers = [fleet.post("/names/get_prediction", json={"name": n, "n_predictions": 3}).json()
               for n in ("Müller", "MULLER", "muller")]
    assert answers[0]["predictions"] == answers[1]["predictions"] == answers[2]["predictions"]


@pytest.mark.parametrize(
    ("body", "field"),
    [({"n_predictions": 2}, "name"), ({"name": "", "n_predictions": 2}, "name"),
     ({"name": "x" * 65}, "name"), ({"name": "1234"}, "name"),
     ({"name": "Jordan", "n_predictions": 0}, "n_predictions"),
     ({"name": "Jordan", "n_predictions": 19}, "n_predictions"),
     ({"name": "Jordan", "n_predictions": "two"}, "n_predictions")],
)
def test_names_bad_input_names_the_field(fleet: httpx.Client, body: dict, field: str) -> None:
    _names_the_field(fleet.post("/names/get_prediction", json=body), field)


# loans (seed 001)
def test_loans_single_and_batch_agree(fleet: httpx.Client) -> None:
    single = _versioned(fleet.post("/loans/predict", json=APPLICATION))
    batch = _versioned(fleet.post("/loans/predict_batch", json=[APPLICATION, {**APPLICATION, "reports": 9}]))
    assert single["prediction"] in (0, 1) and 0 <= single["probability"] <= 1
    assert batch["predictions"][0] == single["prediction"]
    assert batch["probabilities"][0] == pytest.approx(single["probability"])
    assert batch["probabilities"][1] < batch["probabilities"][0]  # nine derogatory reports


@pytest.mark.parametrize(
    ("body", "field"),
    [({**APPLICATION, "income": "lots"}, "income"),
     ({k: v for k, v in APPLICATION.items() if k != "age"}, "age"),
     ({**APPLICATION, "expenditure": 120.0}, "expenditure"), ({**APPLICATION, "age": -3}, "age")],
)
def test_loans_bad_input_names_the_field(fleet: httpx.Client, body: dict, field: str) -> None:
    _names_the_field(fleet.post("/loans/predict", json=body), field)


def test_loans_batch_limits(fleet: httpx.Client) -> None:
    assert fleet.post("/loans/predict_batch", json=[]).status_code == 400
    assert fleet.post("/loans/predict_batch", json=[APPLICATION] * 1001).status_code == 400


# digits (seed 002)
@pytest.mark.parametrize("field", ["model", "modelo"])
def test_digits_seed_jpeg_is_an_eight(fleet: httpx.Client, field: str) -> None:
    body = _versioned(fleet.post("/digits/predict",
                                 json={"request_id": "123", field: "clf.pickle", "image": SEED_JPEG}))
    assert (body["request_id"], body["prediction"]) == ("123", 8)


def test_digits_unknown_model_is_the_seed_400(fleet: httpx.Client) -> None:
    for name in ("nope", "../../etc/passwd", "clf.pickle/../x"):
        response = fleet.post("/digits/predict", json={"request_id": "1", "model": name, "image": SEED_JPEG})
        assert (response.status_code, response.json()) == (400, {"detail": "Invalid model name"})


def test_digits_seed_paths_and_missing_model_answer_as_the_seed_tests_expect(fleet: httpx.Client) -> None:
    """The seed's curl posts to ``/predict/`` (no redirect may be in between) and its test
    ``test_missing_model_field`` expects this exact 400."""
    ok = fleet.post("/digits/predict/", json={"request_id": "123", "model": "clf.pickle", "image": SEED_JPEG})
    assert ok.status_code == 200 and ok.json()["prediction"] == 8
    for model in ({}, {"model": " "}):
        response = fleet.post("/digits/predict/", json={"request_id": "1", "image": SEED_JPEG, **model})
        assert (response.status_code, response.json()) == (400, {"detail": "Model name is required"})


@pytest.mark.parametrize("image", ["%%%not-base64", "aGVsbG8gd29ybGQ=", ""])
def test_digits_bad_images_are_400_naming_image(fleet: httpx.Client, image: str) -> None:
    _names_the_field(fleet.post("/digits/predict", json={"request_id": "1", "model": "cnn", "image": image}),
                     "image")


# topics (seed 003)
def test_topics_get_and_post_agree(fleet: httpx.Client) -> None:
    sentence = "Introduction to Organic Chemistry"
    got = _versioned(fleet.get("/topics/classify", params={"sentence": sentence}))
    posted = _versioned(fleet.post("/topics/classify", json={"sentence": sentence}))
    assert got == posted and len(got) == 1
    assert set(got[0]) == {"label", "score"} and 0 < got[0]["score"] <= 1


def test_topics_bad_input(fleet: httpx.Client) -> None:
    _names_the_field(fleet.get("/topics/classify", params={"sentence": "   "}), "sentence")
    _names_the_field(fleet.get("/topics/classify"), "sentence")
    _names_the_field(fleet.post("/topics/classify", json={"sentence": "x" * 513}), "sentence")


# titanic (seed 004)
def test_titanic_seed_minimal_passengers(fleet: httpx.Client) -> None:
    body = _versioned(fleet.post("/titanic/predict", json=[
        {"Age": 22, "Sex": "male", "Embarked": "S"}, {"Age": 30, "Sex": "female", "Pclass": 1}]))
    assert body["predictions"] == [0, 1]


@pytest.mark.parametrize(
    ("body", "field"),
    [([{"Age": 22, "Sex": "Robot"}], "Sex"), ([{"Age": 22}], "Sex"), ([], "root"),
     ({"Age": 22, "Sex": "male"}, "root"), ([{"Sex": "male", "Pclass": 7}], "Pclass")],
)
def test_titanic_bad_input_names_the_field(fleet: httpx.Client, body: object, field: str) -> None:
    _names_the_field(fleet.post("/titanic/predict", json=body), field)


# every route
def test_bodies_that_are_not_json_or_too_large_are_refused(fleet: httpx.Client) -> None:
    bad = fleet.post("/loans/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert bad.status_code == 400
    huge = fleet.post("/loans/predict", content=b"x" * (4 * 1024 * 1024 + 1),
                      headers={"content-type": "application/json"})
    assert huge.status_code == 413 and "larger than" in huge.json()["detail"]
    assert fleet.get("/names/check_service").status_code == 200  # still serving


def test_concurrent_requests_are_all_answered(fleet: httpx.Client) -> None:
    def ask(i: int) -> int:
        return fleet.post("/names/get_prediction", json={"name": f"Name{i}", "n_predictions": 1}).status_code

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        codes = list(pool.map(ask, range(256)))
    assert codes == [200] * 256
    metrics = _samples(fleet.get("/metrics").text, "fleet_batch_size", 'model="names"')
    assert metrics["_sum"] > metrics["_count"], metrics  # some batches held several requests


def _samples(text: str, name: str, label: str) -> dict[str, float]:
    """The _sum and _count of a histogram, added over its label sets that contain ``label``."""
    found = {"_sum": 0.0, "_count": 0.0}
    for line in text.splitlines():
        for suffix in found:
            if line.startswith(f"{name}{suffix}{{") and label in line:
                found[suffix] += float(line.split()[-1])
    return found


def test_openapi_and_swagger_show_every_model(fleet: httpx.Client) -> None:
    paths = fleet.get("/docs.json").json()["paths"]
    for route in ("/names/get_prediction", "/names/check_service", "/loans/predict", "/loans/predict_batch",
                  "/loans/train", "/digits/predict", "/topics/classify", "/titanic/predict",
                  "/titanic/run-pipeline"):
        assert route in paths
    assert "swagger" in fleet.get("/").text.lower()


def test_python_client(fleet_url: str) -> None:
    with bentoml.SyncHTTPClient(fleet_url) as client:
        names = client.names_get_prediction({"name": "Jordan", "n_predictions": 2})
        survival = client.titanic_predict([{"Sex": "female", "Pclass": 1}])
        digit = client.digits_predict({"request_id": "7", "model": "cnn", "image": SEED_JPEG})
    assert len(names["predictions"]) == 2 and survival["predictions"] == [1] and digit["prediction"] == 8


# retraining through the API: behind the admin token, and gated against the stable
def test_training_needs_the_admin_token(fleet: httpx.Client) -> None:
    assert fleet.post("/loans/train", json={}).status_code == 401
    assert fleet.post("/loans/train", json={}, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert fleet.put("/titanic/run-pipeline").status_code == 401


def test_the_gate_keeps_a_worse_model_registered_but_unserved(fleet: httpx.Client) -> None:
    before = fleet.post("/loans/predict", json=APPLICATION).json()["model_version"]
    worse = {"epochs": 10, "learning_rate": 0.001, "max_depth": 1}
    trained = fleet.post("/loans/train", json=worse, headers=ADMIN)
    assert trained.status_code == 200, trained.text
    body = trained.json()
    assert body["promoted"] is False and body["gate"]["passed"] is False
    assert body["gate"]["challenger"] < body["gate"]["stable"] - body["gate"]["tolerance"]
    assert int(body["new_model_version"][1:]) > int(before[1:])
    assert "not served" in body["message"]
    assert body["model_version"] == trained.headers["X-Model-Version"] == before  # what answers now
    assert fleet.post("/loans/predict", json=APPLICATION).json()["model_version"] == before
    _names_the_field(fleet.post("/loans/train", json={"learning_rate": 5}, headers=ADMIN), "learning_rate")


def test_run_pipeline_serves_a_challenger_that_passes(fleet: httpx.Client) -> None:
    before = fleet.post("/titanic/predict", json=[{"Sex": "male"}]).json()["model_version"]
    pipeline = fleet.put("/titanic/run-pipeline", headers=ADMIN)
    assert pipeline.status_code == 200, pipeline.text
    body = pipeline.json()
    assert body["msg"] == "Completed pipeline." and body["gate"]["passed"] is body["promoted"]
    served = fleet.post("/titanic/predict", json=[{"Sex": "male"}]).json()["model_version"]
    assert served == body["model_version"] == (body["new_model_version"] if body["promoted"] else before)
