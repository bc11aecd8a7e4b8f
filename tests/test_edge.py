"""The HTTP edge under a corpus of bad requests: every one a 4xx whose JSON body names the problem, the
server ready afterwards, nothing logged at ERROR; on the gateway and on a per-model bento alike.

The corpus covers both body shapes (objects and the list bodies of ``predict_batch`` and titanic):
malformed JSON, oversized declared and chunked bodies, content types and encodings no route parses,
NaN/Infinity/huge numbers, deep nesting, 10,000-key objects, unicode and image edge cases, wrong
types the README says are refused, and header abuse.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from PIL import Image

from bentos.loans.schemas import EXAMPLE as APPLICATION
from fleet.local_server import LocalServer, bentoml_serve, free_port, running
from tests.conftest import ADMIN_TOKEN

OVER_LIMIT = 4 * 1024 * 1024 + 1
PASSENGER = {"PassengerId": 892, "Pclass": 3, "Sex": "male", "Age": 34.5, "Fare": 7.83, "Embarked": "Q"}


@dataclass
class Case:
    name: str
    path: str
    body: bytes | None = None
    status: int = 400
    says: str = ""  # words the answer must contain (the field or the problem), case-insensitive
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "application/json"})
    method: str = "POST"
    chunked: bool = False


def _png(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def malformed(path: str) -> list[Case]:
    """Bodies no JSON route can take, whatever its shape."""
    deep_list = b"[" * 10_000 + b"]" * 10_000
    deep_object = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
    many_keys = json.dumps({f"k{i}": i for i in range(10_000)}).encode()
    return [
        Case("truncated list", path, b"[{", says="not valid JSON"),
        Case("open bracket", path, b"[", says="not valid JSON"),
        Case("open brace", path, b"{", says="not valid JSON"),
        Case("NUL byte", path, b"\x00", says="not valid JSON"),
        Case("garbage", path, b"garbage", says="not valid JSON"),
        Case("missing value", path, b'{"a":}', says="not valid JSON"),
        Case("trailing comma", path, b'[1,]', says="not valid JSON"),
        Case("not UTF-8", path, b'{"name": "\xff\xfe"}', says="not UTF-8"),
        Case("deep list", path, deep_list, says="nested deeper"),
        Case("deep object", path, deep_object, says="nested deeper"),
        Case("5,000-digit integer", path, b'{"x": ' + b"9" * 5000 + b"}", says="digits"),
        Case("NaN", path, b'{"x": NaN}', says="NaN"),
        Case("Infinity", path, b'[{"x": Infinity}]', says="Infinity"),
        Case("-Infinity", path, b'{"x": -Infinity}', says="Infinity"),
        Case("1e309", path, b'{"x": 1e309}', says="out of range"),
        Case("lone surrogate", path, b'{"x": "\\ud800"}', says="surrogate"),
        Case("10,000 keys", path, many_keys, says="keys"),
        Case("gzip encoded", path, gzip.compress(b"{}"), 415, "Content-Encoding",
             {"content-type": "application/json", "content-encoding": "gzip"}),
        Case("multipart without boundary", path, b"x", 415, "Content-Type",
             {"content-type": "multipart/form-data"}),
        Case("XML", path, b"<a/>", 415, "Content-Type", {"content-type": "application/xml"}),
        Case("declared over the limit", path, b" " * OVER_LIMIT, 413, "larger than"),
        Case("chunked over the limit", path, b" " * OVER_LIMIT, 413, "larger than", chunked=True),
    ]


def typed() -> list[Case]:
    """Wrong types and values the README says are refused, one route's fields each."""
    def case(name: str, path: str, body: object, says: str) -> Case:
        return Case(name, path, json.dumps(body).encode(), says=says)

    return [
        case("n_predictions true", "/names/get_prediction", {"name": "Ann", "n_predictions": True},
             "n_predictions"),
        case("n_predictions 2.5", "/names/get_prediction", {"name": "Ann", "n_predictions": 2.5},
             "n_predictions"),
        case("name of digits only", "/names/get_prediction", {"name": "1234"}, "letter"),
        case("name of emoji only", "/names/get_prediction", {"name": "\U0001F600"}, "letter"),
        case("name of a right-to-left mark", "/names/get_prediction", {"name": "\u202e"}, "letter"),
        case("name of zero-width spaces", "/names/get_prediction", {"name": "\u200b\u200b"}, "letter"),
        case("name too long", "/names/get_prediction", {"name": "a" * 10_000}, "name"),
        case("unknown field", "/names/get_prediction", {"name": "Ann", "extra": 1}, "extra"),
        case("owner 'yes'", "/loans/predict", {**APPLICATION, "owner": "yes"}, "owner"),
        case("active false", "/loans/predict", {**APPLICATION, "active": False}, "active"),
        case("age as a string", "/loans/predict", {**APPLICATION, "age": "37"}, "age"),
        case("negative income", "/loans/predict", {**APPLICATION, "income": -1}, "income"),
        case("empty batch", "/loans/predict_batch", [], "too_short"),
        case("batch of 1,001", "/loans/predict_batch", [APPLICATION] * 1001, "too_long"),
        case("batch of numbers", "/loans/predict_batch", [1, 2], "dictionary"),
        case("Fare false", "/titanic/predict", [{**PASSENGER, "Fare": False}], "Fare"),
        case("Sex unknown", "/titanic/predict", [{**PASSENGER, "Sex": "x"}], "Sex"),
        case("passenger not a list", "/titanic/predict", PASSENGER, "list"),
        case("topics empty sentence", "/topics/classify", {"sentence": "   "}, "sentence"),
        case("topics top_k 0", "/topics/classify", {"sentence": "Calculus", "top_k": 0}, "top_k"),
        case("digits no model", "/digits/predict", {"request_id": "1", "image": _png(8, 8)},
             "Model name is required"),
        case("digits unknown model", "/digits/predict",
             {"request_id": "1", "model": "../../etc/passwd", "image": _png(8, 8)}, "model"),
        case("digits image not base64", "/digits/predict",
             {"request_id": "1", "model": "cnn", "image": "!!!"}, "image"),
        case("digits image of text", "/digits/predict",
             {"request_id": "1", "model": "cnn", "image": base64.b64encode(b"hello").decode()}, "image"),
        case("digits image empty data URL", "/digits/predict",
             {"request_id": "1", "model": "cnn", "image": "data:image/png;base64,"}, "image"),
        case("digits image a pixel bomb", "/digits/predict",
             {"request_id": "1", "model": "cnn", "image": _png(5000, 5000)}, "image"),
        case("feedback NaN label", "/names/feedback", {"request_id": "a", "label": float("nan")}, "NaN"),
        case("feedback surrogate id", "/names/feedback", {"request_id": "\ud800", "label": "x"}, "surrogate"),
        case("feedback 1,001 items", "/names/feedback", [{"request_id": "a", "label": "x"}] * 1001,
             "too_long"),
    ]


def abuse() -> list[Case]:
    """Headers and methods used against the edge."""
    body = json.dumps({"name": "Ann"}).encode()
    route = "/names/get_prediction"
    return [
        Case("unknown pinned version", route, body, 400, "X-Model-Version",
             {"content-type": "application/json", "x-model-version": "v999"}),
        Case("pinned version not a version", route, body, 400, "X-Model-Version",
             {"content-type": "application/json", "x-model-version": "../v1"}),
        Case("admin change without token, bad body", "/admin/routing", b'{"nonsense": 1}', 401,
             "Authorization", method="PUT"),
        Case("admin change with a wrong token", "/admin/routing", b"{}", 401, "Authorization",
             {"content-type": "application/json", "authorization": "Bearer nope"}, method="PUT"),
        Case("admin read with a basic token", "/admin/models", None, 401, "Authorization",
             {"authorization": "Basic dXNlcjpwYXNz"}, method="GET"),
        Case("unknown route", "/nowhere", None, 404, "not found", {}, method="GET"),
        Case("unknown query parameter", "/topics/classify?sentence=Calculus&topk=3", None, 400, "topk", {},
             method="GET"),
        Case("unknown model's feedback", "/nobody/feedback", b'{"request_id": "a", "label": 1}', 404,
             "nobody"),
    ]


def gateway_corpus() -> list[Case]:
    routes = ["/names/get_prediction", "/loans/predict", "/loans/predict_batch", "/digits/predict",
              "/topics/classify", "/titanic/predict", "/names/feedback"]
    return [c for route in routes for c in malformed(route)] + typed() + abuse()


def _send(client: httpx.Client, case: Case) -> httpx.Response:
    content: object = case.body
    if case.chunked and case.body is not None:
        data = case.body
        content = (data[i:i + 65536] for i in range(0, len(data), 65536))  # no length: chunked
    return client.request(case.method, case.path, content=content, headers=case.headers)


def _names_problem(response: httpx.Response, case: Case) -> bool:
    body = response.json()
    text = json.dumps(body).lower()
    return bool(body.get("detail") or body.get("error")) and case.says.lower() in text


@pytest.fixture(scope="module")
def gateway(routing_plan: Path) -> Iterator[LocalServer]:
    port = free_port()
    env = {"FLEET_ROUTING": str(routing_plan), "FLEET_ADMIN_TOKEN": ADMIN_TOKEN}
    with running(bentoml_serve("service:Fleet", port), port, env) as server:
        yield server


def _run(server: LocalServer, corpus: list[Case]) -> None:
    wrong = []
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for case in corpus:
            response = _send(client, case)
            if response.status_code != case.status or not _names_problem(response, case):
                wrong.append(f"{case.name} {case.method} {case.path}: {response.status_code} "
                             f"{response.text[:200]}")
        assert client.get("/readyz").status_code == 200, "the server is not ready after the corpus"
    assert not wrong, "\n".join(wrong)
    lines = server.log.read_text().splitlines()
    errors = [line for line in lines if "[ERROR]" in line or "Traceback" in line]
    assert not errors, "\n".join(errors[:10])


def test_the_gateway_refuses_every_bad_request_clearly(gateway: LocalServer) -> None:
    corpus = gateway_corpus()
    assert len(corpus) >= 100
    _run(gateway, corpus)
    print(f"\n{len(corpus)} bad requests, each a 4xx naming its problem")


def test_a_model_bento_has_the_same_edge(routing_plan: Path) -> None:
    port = free_port()
    env = {"FLEET_ROUTING": str(routing_plan), "FLEET_ADMIN_TOKEN": ADMIN_TOKEN}
    corpus = [
        *malformed("/predict"),
        Case("Fare false", "/predict", json.dumps([{**PASSENGER, "Fare": False}]).encode(), says="Fare"),
        Case("pipeline without token", "/run-pipeline", b"{}", 401, "Authorization", method="PUT"),
    ]
    with running(bentoml_serve("bentos.titanic.service:Titanic", port), port, env) as server:
        _run(server, corpus)


def test_seed_paths_answer_with_and_without_a_trailing_slash(gateway: LocalServer) -> None:
    body = {"name": "Jordan", "n_predictions": 2}
    with httpx.Client(base_url=gateway.url, timeout=60, follow_redirects=False) as client:
        for path in ("/names/get_prediction", "/names/get_prediction/"):
            response = client.post(path, json=body)
            assert response.status_code == 200 and len(response.json()["predictions"]) == 2, path
        no_type = client.post("/names/get_prediction", content=json.dumps(body))  # curl -d sends a form type
        assert no_type.status_code == 200


def test_metrics_stay_bounded_whatever_paths_callers_invent(gateway: LocalServer) -> None:
    """Every path becomes a label in BentoML's request metrics unless bounded: 1,000 invented paths
    must leave /metrics within 1 % of its size, with known routes still labelled by their template."""
    with httpx.Client(base_url=gateway.url, timeout=60) as client:
        def invent(i: int) -> None:
            token = uuid.uuid4().hex
            if i % 3 == 0:
                client.get(f"/{token}")
            elif i % 3 == 1:
                client.post(f"/{token}/feedback", json={"request_id": "a", "label": 1})
            else:
                client.post(f"/names/get_prediction/{token}", json={"name": "Ann"})

        assert client.post("/names/get_prediction", json={"name": "Ann"}).status_code == 200
        for i in range(30):  # every kind of answer once, so each label set exists before measuring
            invent(i)
        before = len(client.get("/metrics").text)
        for i in range(1000):
            invent(i)
        text = client.get("/metrics").text
    print(f"\n/metrics {before} bytes before 1,000 invented paths, {len(text)} after")
    assert abs(len(text) - before) / before < 0.01
    assert 'endpoint="/names/get_prediction"' in text and 'endpoint="/{model}/feedback"' in text
    assert 'endpoint="other"' in text


def test_list_bodies_are_parsed_as_bentoml_does_without_a_schema_per_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # BentoML's root-input parser built a JSON schema for every request (over half of titanic's CPU
    # under load); after parse_root_bodies_once it is built once per input class, with the same
    # answers and the same refusals.
    from _bentoml_sdk.io_models import IORootModel, ensure_io_descriptor
    from pydantic import TypeAdapter, ValidationError

    from bentos.titanic.schemas import Passengers
    from fleet.root_bodies import parse_root_bodies_once

    parse_root_bodies_once()
    descriptor = ensure_io_descriptor(Passengers)
    assert issubclass(descriptor, IORootModel)
    built = []
    schema = TypeAdapter.json_schema
    monkeypatch.setattr(TypeAdapter, "json_schema",
                        lambda self, *a, **k: built.append(1) or schema(self, *a, **k))
    body = json.dumps([PASSENGER, {"Sex": "female"}]).encode()
    parsed = [descriptor.model_validate_json(body) for _ in range(3)]
    assert len(built) <= 1
    assert [p.model_dump()[1]["Sex"] for p in parsed] == ["female"] * 3
    assert parsed[0].model_dump() == descriptor.model_validate(json.loads(body)).model_dump()
    with pytest.raises(ValidationError, match="Sex"):
        descriptor.model_validate_json(json.dumps([{"Age": 3}]))


def test_an_api_method_is_bound_once_per_instance_not_per_request(monkeypatch: pytest.MonkeyPatch) -> None:
    # BentoML looks the API method up on the instance for every request, and each lookup built the
    # function's signature anew (5 % of a names worker's event loop); bound once, it answers the same.
    import inspect

    import bentoml

    from fleet.http import _bound_once

    @bentoml.service
    class Echo:
        @bentoml.api
        def echo(self, text: str = "hi") -> str:
            return text.upper()

    instance = Echo()
    _bound_once(instance, "echo")
    signatures, signature = [], inspect.signature

    def counted(function, *args, **kwargs):
        signatures.append(function)
        return signature(function, *args, **kwargs)

    monkeypatch.setattr(inspect, "signature", counted)
    answers = [instance.echo.local(text=t) for t in ("a", "b")] + [instance.echo.local()]
    assert answers == ["A", "B", "HI"] and signatures == []
