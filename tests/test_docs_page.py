"""The page at ``/`` as a new user meets it: Bento Fleet's own page and spec, operations grouped by model,
and examples that work when sent as the page's "Try it out" sends them."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from bentos.digits.schemas import SEED_JPEG
from tests.browser import INSTALL, find_chromium, headless

CHROMIUM = find_chromium()
PLACEHOLDERS = ("created with BentoML", "BentoML Team", "customize this README", "googletagmanager",
                "img.shields.io", "badgen.net")
TRY_IT_OUT = [("post", "/names/get_prediction"), ("post", "/loans/predict"), ("post", "/loans/predict_batch"),
              ("post", "/digits/predict"), ("post", "/topics/classify"), ("post", "/titanic/predict")]


def test_the_spec_says_what_this_server_is(fleet: httpx.Client) -> None:
    spec = fleet.get("/docs.json").json()
    assert spec["info"]["title"] == "Bento Fleet" and "plan revision" in spec["info"]["version"]
    assert not any(text in str(spec) for text in PLACEHOLDERS)
    groups = ["names", "loans", "digits", "topics", "titanic", "monitoring", "admin", "infrastructure"]
    assert [t["name"] for t in spec["tags"]] == groups
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            assert operation.get("summary") and len(operation["tags"]) == 1, f"{method} {path}"
            admin = path.startswith("/admin") or path in ("/loans/train", "/titanic/run-pipeline")
            assert bool(operation.get("security")) == admin, f"{method} {path}"
    assert "post" in spec["paths"]["/topics/classify"]  # BentoML's spec had only the GET
    assert "text/html" in spec["paths"]["/admin/report"]["get"]["responses"]["200"]["content"]
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_the_constraints_the_code_enforces_are_in_the_spec(fleet: httpx.Client) -> None:
    """A client generated from the spec learns what the server refuses: a name needs a letter, and the
    digits model is one of a listed set (each value listed is accepted, one not listed refused)."""
    schemas = fleet.get("/docs.json").json()["components"]["schemas"]
    fields = [schema.get("properties", {}) for schema in schemas.values()]
    name = next(f["name"] for f in fields if "n_predictions" in f)
    for sent in ("Smith", "  Ng", "123", "- -"):
        answer = fleet.post("/names/get_prediction", json={"name": sent})
        assert (answer.status_code == 200) == bool(re.search(name["pattern"], sent)), (sent, answer.text)
    model = next(f["model"] for f in fields if "image" in f)
    body = {"request_id": "1", "image": SEED_JPEG}
    for listed in model["enum"]:
        answer = fleet.post("/digits/predict", json={**body, "model": listed})
        assert answer.status_code == (200 if listed else 400), (listed, answer.text)
    refused = fleet.post("/digits/predict", json={**body, "model": "SVM"})
    assert refused.json() == {"detail": "Invalid model name"}


@pytest.mark.parametrize(("method", "path"), TRY_IT_OUT)
def test_each_example_in_the_spec_works_as_sent(fleet: httpx.Client, method: str, path: str) -> None:
    operation = fleet.get("/docs.json").json()["paths"][path][method]
    example = operation["requestBody"]["content"]["application/json"]["example"]
    answer = fleet.request(method, path, json=example)
    assert answer.status_code == 200, answer.text
    assert answer.headers["X-Model-Version"].startswith("v")
    shown = operation["responses"]["200"]["content"]["application/json"].get("example")
    if shown is not None:  # the answer shown on the page has the shape of the real one
        assert type(shown) is type(answer.json())
        assert not isinstance(shown, dict) or set(shown) == set(answer.json()), (shown, answer.json())


def test_the_query_example_works_as_sent(fleet: httpx.Client) -> None:
    operation = fleet.get("/docs.json").json()["paths"]["/topics/classify"]["get"]
    params = {p["name"]: p["example"] for p in operation["parameters"] if "example" in p}
    answer = fleet.get("/topics/classify", params=params)
    assert answer.status_code == 200 and len(answer.json()) == params["top_k"]


@pytest.mark.skipif(CHROMIUM is None, reason=f"no Chromium found: {INSTALL}")
def test_the_page_renders_in_headless_chromium(fleet_url: str, tmp_path: Path) -> None:
    dom = headless(CHROMIUM, "--virtual-time-budget=15000", "--dump-dom", f"{fleet_url}/")
    assert "<title>Bento Fleet</title>" in dom
    assert "Bento Fleet" in re.sub(r"<[^>]+>", " ", dom.split("</head>", 1)[1])  # the page's own header
    for tag in ("names", "loans", "digits", "topics", "titanic", "monitoring", "admin"):
        assert f'id="operations-tag-{tag}"' in dom, f"no {tag} group on the page"
    assert not any(text in dom for text in PLACEHOLDERS)
    images = re.findall(r'<img[^>]+src="([^"]+)"', dom)
    assert all(src.startswith(("data:", "/", "./")) for src in images), images
    shot = tmp_path / "docs.png"
    headless(CHROMIUM, "--virtual-time-budget=15000", f"--screenshot={shot}", "--window-size=1280,2400",
             f"{fleet_url}/")
    assert shot.stat().st_size > 20_000
    print(f"\nscreenshot of the docs page: {shot}")


def test_readme_commands_are_the_ones_that_work() -> None:
    """Admin curl examples send the token (else they answer 401/403 as written), and the Helm README
    names the bento the build makes."""
    root = Path(__file__).resolve().parent.parent
    text = (root / "README.md").read_text()
    commands = re.findall(r"curl [^\n]*(?:\\\n[^\n]*)*", text)
    admin = [c for c in commands if re.search(r"/(admin|loans/train|titanic/run-pipeline)", c)]
    assert admin and all("Authorization: Bearer" in c for c in admin), [c for c in admin if "Bearer" not in c]
    name = re.search(r"^name: (\S+)", (root / "bentofile.yaml").read_text(), re.M).group(1)
    helm = (root / "deploy/helm/README.md").read_text()
    assert f"{name}:<version>" in helm and "fleet:<version>" not in helm.replace(f"{name}:<version>", "")
