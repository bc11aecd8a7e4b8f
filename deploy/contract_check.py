"""The seeds' API contracts, checked against any running server: the source tree, a built bento, a
container, a cluster. Read-only: nothing is trained and the routing plan is left alone.

    python -m deploy.contract_check http://127.0.0.1:3000            the all-in-one gateway
    python -m deploy.contract_check http://127.0.0.1:3000 --alone names  one model's own bento

Exits 1 when a contract is broken, naming the model and what differed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import httpx

from bentos.digits.schemas import SEED_JPEG
from bentos.loans.schemas import EXAMPLE as APPLICATION

MODELS = ("names", "loans", "digits", "topics", "titanic")


class ContractBroken(AssertionError):
    """A route answered, but not as the seed's clients expect."""


def expect(condition: bool, what: str, response: httpx.Response) -> None:
    if not condition:
        raise ContractBroken(f"{response.request.method} {response.request.url.path}: {what}; "
                             f"got {response.status_code} {response.text[:300]}")


def versioned(response: httpx.Response) -> None:
    """Every answered prediction says which model version gave it."""
    if response.request.method == "POST" and response.status_code == 200:
        expect(response.headers.get("X-Model-Version", "").startswith("v"), "an X-Model-Version header",
               response)


def names(client: httpx.Client, root: str) -> None:
    greeting = client.get(f"{root}/check_service")
    expect(greeting.json().get("Message") == "Hello world from service", "the seed's greeting", greeting)
    answer = client.post(f"{root}/get_prediction", json={"name": "Nakamura", "n_predictions": 2})
    expect(len(answer.json().get("predictions", [])) == 2, "two predictions", answer)


def loans(client: httpx.Client, root: str) -> None:
    single = client.post(f"{root}/predict", json=APPLICATION)
    expect(single.json().get("prediction") in (0, 1), "prediction 0 or 1", single)
    batch = client.post(f"{root}/predict_batch", json=[APPLICATION] * 3)
    expect(len(batch.json().get("predictions", [])) == 3, "three predictions", batch)


def digits(client: httpx.Client, root: str) -> None:
    path = f"{root}/predict" if root else "/predict/"  # the seed's own route has the trailing slash
    for model in ("clf.pickle", "cnn"):
        request = {"request_id": "123", "model": model, "image": SEED_JPEG}
        answer = client.post(path, json=request)
        body = answer.json()
        expect(answer.status_code == 200 and body.get("request_id") == "123" and body.get("prediction") == 8,
               f"the seed's image read as 8 by {model}", answer)
    request = {"request_id": "1", "model": "x.pickle", "image": SEED_JPEG}
    unknown = client.post(path, json=request)
    expect((unknown.status_code, unknown.json()) == (400, {"detail": "Invalid model name"}),
           "the seed's 400 for an unknown model", unknown)


def topics(client: httpx.Client, root: str) -> None:
    answer = client.get(f"{root}/classify", params={"sentence": "Introduction to Organic Chemistry"})
    scores = answer.json() if answer.status_code == 200 else []
    expect(bool(scores) and set(scores[0]) == {"label", "score"}, "a list of {label, score}", answer)


def titanic(client: httpx.Client, root: str) -> None:
    passengers = [{"Age": 22, "Sex": "male", "Embarked": "S"}, {"Sex": "female"}]
    answer = client.post(f"{root}/predict", json=passengers)
    expect(answer.status_code == 200 and len(answer.json().get("predictions", [])) == 2
           and set(answer.json()["predictions"]) <= {0, 1}, "two predictions of 0 or 1", answer)


CHECKS: dict[str, Callable[[httpx.Client, str], None]] = {
    "names": names, "loans": loans, "digits": digits, "topics": topics, "titanic": titanic,
}


def check(url: str, alone: str | None = None, timeout: float = 60) -> dict[str, str]:
    """``{model: "ok" | what broke}`` for every model (the gateway prefixes routes with the model's
    name; a model's own bento serves them at the root), and every answer carries its version."""
    results = {}
    hooks = {"response": [lambda response: response.read(), versioned]}
    with httpx.Client(base_url=url, timeout=timeout, event_hooks=hooks) as client:
        for model in [alone] if alone else MODELS:
            try:
                CHECKS[model](client, "" if alone else f"/{model}")
                results[model] = "ok"
            except (ContractBroken, httpx.HTTPError, ValueError, KeyError) as broken:
                results[model] = f"{type(broken).__name__}: {broken}"
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.contract_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url")
    parser.add_argument("--alone", choices=MODELS, help="the server is this model's own bento")
    args = parser.parse_args(argv)
    results = check(args.url, args.alone)
    for model, verdict in results.items():
        print(f"{model:8} {verdict}")
    return 0 if all(verdict == "ok" for verdict in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
