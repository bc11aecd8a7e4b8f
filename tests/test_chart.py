"""The Helm chart, offline: the same functions as ``python deploy/chart_check.py``.

Skipped when helm-python-sdk or kubernetes-validate is not installed (no cluster is ever needed).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytest.importorskip("helm_python", reason="helm-python-sdk is not installed: pip install helm-python-sdk")
pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed: pip install it")

SCRIPT = Path(__file__).resolve().parent.parent / "deploy" / "chart_check.py"
UNITS = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
         "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def load_script() -> ModuleType:
    """deploy/chart_check.py as a module (deploy/ is no package)."""
    spec = importlib.util.spec_from_file_location("chart_check", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["chart_check"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cc() -> ModuleType:
    module = load_script()
    try:
        module.helm.helm_sdk_version()
    except module.helm.HelmError as error:
        pytest.skip(f"helm-python-sdk cannot load its native library: {error}")
    return module


@pytest.fixture(scope="module")
def rendered(cc: ModuleType) -> dict[str, list[dict[str, Any]]]:
    return {name: cc.render_set(name) for name in cc.VALUE_SETS}


def quantity(value: str | int | float) -> float:
    """A Kubernetes quantity (500m, 3Gi, 2) as a number."""
    number, unit = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(value)).groups()
    return float(number) * UNITS.get(unit, 1)


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def least_replicas(cc: ModuleType, manifests: list[dict[str, Any]]) -> int:
    """The stable pod count the release never goes below (HPA minimum, else the Deployment's)."""
    hpas = cc.find(manifests, "HorizontalPodAutoscaler")
    if hpas:
        return hpas[0]["spec"]["minReplicas"]
    return cc.find(manifests, "Deployment", f"{cc.RELEASE}-bento-fleet")[0]["spec"]["replicas"]


def test_lint_is_clean(cc: ModuleType) -> None:
    assert cc.lint() == []
    for name in cc.VALUE_SETS:
        assert cc.lint(cc.set_values(name)) == [], name


@pytest.mark.parametrize("name", ["dev", "prod", "canary"])
def test_values_set_renders_and_validates(cc: ModuleType, rendered: dict, name: str) -> None:
    report = cc.check_manifests(name, rendered[name])
    assert report.problems == []
    assert {"Deployment", "Service", "ServiceAccount"} <= set(report.kinds)


def test_canary_route_splits_by_weight(cc: ModuleType, rendered: dict) -> None:
    values = cc.set_values("canary")
    route = cc.find(rendered["canary"], "HTTPRoute")[0]
    weights = cc.route_weights(route)
    stable, canary = f"{cc.RELEASE}-bento-fleet", f"{cc.RELEASE}-bento-fleet-canary"
    assert weights == {stable: 100 - values["canary"]["weight"], canary: values["canary"]["weight"]}
    assert sum(weights.values()) == 100
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert cc.find(rendered["canary"], "Service", canary)


@pytest.mark.parametrize("weight", [0, 35, 100])
def test_any_weight_sums_to_100(cc: ModuleType, weight: int) -> None:
    values = cc.merge(cc.set_values("canary"), {"canary": {"weight": weight}})
    weights = cc.route_weights(cc.find(cc.render(values), "HTTPRoute")[0])
    assert sorted(weights.values()) == sorted([weight, 100 - weight])


def test_canary_runs_its_own_tag(cc: ModuleType, rendered: dict) -> None:
    values = cc.set_values("canary")
    images = {d["metadata"]["name"]: container(d)["image"] for d in cc.find(rendered["canary"], "Deployment")}
    assert images[f"{cc.RELEASE}-bento-fleet"].endswith(f":{values['image']['tag']}")
    assert images[f"{cc.RELEASE}-bento-fleet-canary"].endswith(f":{values['canary']['image']['tag']}")


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_no_canary_objects_without_canary(cc: ModuleType, rendered: dict, name: str) -> None:
    assert len(cc.find(rendered[name], "Deployment")) == 1
    assert cc.find(rendered[name], "HTTPRoute") == []


def test_promotion_keeps_the_route_at_full_stable(cc: ModuleType) -> None:
    promoted = cc.merge(cc.set_values("canary"), {"image": {"tag": "1.1.0"}, "canary": {"enabled": False}})
    manifests = cc.render(promoted)
    assert cc.route_weights(cc.find(manifests, "HTTPRoute")[0]) == {f"{cc.RELEASE}-bento-fleet": 100}
    assert len(cc.find(manifests, "Deployment")) == 1
    assert cc.check_manifests("promoted", manifests).problems == []


@pytest.mark.parametrize("name", ["dev", "prod", "canary"])
def test_probes_and_port(cc: ModuleType, rendered: dict, name: str) -> None:
    for deployment in cc.find(rendered[name], "Deployment"):
        box = container(deployment)
        assert box["ports"] == [{"name": "http", "containerPort": 3000, "protocol": "TCP"}]
        assert box["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
        assert box["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        startup = box["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 60  # torch models: 10-30 s
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == "3000"
        assert annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("name", ["dev", "prod", "canary"])
def test_hardened_pods_and_secret_token(cc: ModuleType, rendered: dict, name: str) -> None:
    for deployment in cc.find(rendered[name], "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        box = container(deployment)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert isinstance(pod["securityContext"]["runAsUser"], int)
        assert box["securityContext"]["readOnlyRootFilesystem"] is True
        env = {item["name"]: item for item in box["env"]}
        assert "value" not in env["FLEET_ADMIN_TOKEN"]
        assert env["FLEET_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]["name"]
        mounts = {mount["mountPath"] for mount in box["volumeMounts"]}
        assert {"/tmp", env["BENTOML_HOME"]["value"]} <= mounts
        assert quantity(box["resources"]["requests"]["memory"]) >= 2 * 2**30
        # one serving worker per CPU of the limit, and each fits in the memory limit (~0.65 GiB + arbiter)
        workers = int(env["FLEET_WORKERS"]["value"])
        assert workers <= quantity(box["resources"]["limits"]["cpu"])
        assert 0.45 + 0.65 * workers <= quantity(box["resources"]["limits"]["memory"]) / 2**30


def test_prod_outsizes_dev(cc: ModuleType, rendered: dict) -> None:
    dev, prod = rendered["dev"], rendered["prod"]
    assert least_replicas(cc, prod) > least_replicas(cc, dev)
    dev_box, prod_box = container(cc.find(dev, "Deployment")[0]), container(cc.find(prod, "Deployment")[0])
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            dev_size, prod_size = (quantity(box["resources"][kind][resource]) for box in (dev_box, prod_box))
            assert prod_size > dev_size, f"{kind}.{resource}"


def test_bad_values_file_is_rejected(cc: ModuleType) -> None:
    rejected, line = cc.check_bad_values()
    assert rejected, line


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"replicaCount": -1}, "/replicaCount"),
        ({"replicas": 3}, "additional properties 'replicas'"),
        ({"canary": {"weight": 101}}, "/canary/weight"),
        ({"canary": {"weight": -5}}, "/canary/weight"),
        ({"resources": {"limits": {"memory": "4 gigs"}}}, "/resources/limits/memory"),
        ({"resources": {"requests": {"cpu": "two"}}}, "/resources/requests/cpu"),
        ({"canary": {"enabled": True}}, "/canary/image/tag"),
        ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"mode": "perModle"}, "/mode"),
        ({"perModel": {"recommender": {"enabled": True}}}, "additional properties 'recommender'"),
        ({"perModel": {"topics": {"replicaCount": -1}}}, "/perModel/topics/replicaCount"),
        ({"perModel": {"topics": {"autoscaling": {"minReplicas": 0}}}},
         "/perModel/topics/autoscaling/minReplicas"),
        ({"perModel": {"names": {"replicas": 2}}}, "additional properties 'replicas'"),
        ({"perModel": {"loans": {"resources": {"limits": {"memory": "lots"}}}}},
         "/perModel/loans/resources/limits/memory"),
    ],
)
def test_schema_rejects(cc: ModuleType, values: dict[str, Any], where: str) -> None:
    reason = cc.rejection(values)
    assert reason is not None and where in reason


def notes(cc: ModuleType, values: dict[str, Any]) -> str:
    """The NOTES.txt a user sees after ``helm install`` with ``values``."""
    with cc.helm.Chart.load(cc.CHART) as chart:
        files = chart.render(values, name=cc.RELEASE, namespace=cc.NAMESPACE, is_install=True)
    return next(text for path, text in files.items() if path.endswith("NOTES.txt"))


def test_prod_logs_to_the_database_secret_and_a_trial_is_warned(cc: ModuleType, rendered: dict) -> None:
    for deployment in cc.find(rendered["prod"], "Deployment") + cc.find(rendered["canary"], "Deployment"):
        env = {item["name"]: item for item in container(deployment)["env"]}
        assert env["DATABASE_URL"] == {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {
            "name": "bento-fleet-database", "key": "url"}}}  # from the Secret, never a literal
    dev_env = {item["name"] for item in container(cc.find(rendered["dev"], "Deployment")[0])["env"]}
    assert "DATABASE_URL" not in dev_env
    assert "WARNING: NO DATABASE" in notes(cc, cc.set_values("dev"))
    prod_notes = notes(cc, cc.set_values("prod"))
    assert "WARNING" not in prod_notes and 'Secret "bento-fleet-database"' in prod_notes


def test_prod_without_a_database_secret_does_not_render(cc: ModuleType) -> None:
    values = cc.set_values("prod")
    values["database"]["existingSecret"] = ""
    with pytest.raises(Exception, match=r"database\.existingSecret is empty"):
        cc.render(values)
    assert "database/existingSecret" in (cc.rejection({"database": {"existingSecret": "Not A Name"}}) or "")


def test_prod_saves_trained_versions_on_the_shared_claim_and_a_lone_folder_is_warned(
    cc: ModuleType, rendered: dict, per_model: list
) -> None:
    for manifests in (rendered["prod"], per_model):
        for deployment in cc.find(manifests, "Deployment"):
            pod = deployment["spec"]["template"]["spec"]
            env = {item["name"]: item.get("value") for item in container(deployment)["env"]}
            mounts = {m["name"]: m["mountPath"] for m in container(deployment)["volumeMounts"]}
            claims = {v["name"]: v.get("persistentVolumeClaim") for v in pod["volumes"]}
            assert claims["trained-models"] == {"claimName": "bento-fleet-trained-models"}
            assert env["FLEET_TRAINED_MODELS"] == mounts["trained-models"]
    dev = cc.find(rendered["dev"], "Deployment")[0]
    assert "FLEET_TRAINED_MODELS" not in {item["name"] for item in container(dev)["env"]}
    assert "NO SHARED MODEL FOLDER" not in notes(cc, cc.set_values("dev"))  # one pod: nothing to share
    scaled = cc.set_values("prod")
    scaled["trainedModels"]["existingClaim"] = ""
    assert "WARNING: NO SHARED MODEL FOLDER" in notes(cc, scaled)
    assert "NO SHARED MODEL FOLDER" not in notes(cc, cc.set_values("prod"))
    bad_claim = cc.rejection({"trainedModels": {"existingClaim": "Bad Name"}})
    assert bad_claim is not None and "trainedModels/existingClaim" in bad_claim


# mode perModel: each model's own bento (bentos/<model>/service.py) in its own Deployment, routed by path.
PER_MODEL = ("values-prod.yaml", "values-per-model.yaml")
MODELS = ("names", "loans", "digits", "topics", "titanic")
FULLNAME = "fleet-bento-fleet"
# A request through the gateway -> the model bento and the path it serves (the seeds' unprefixed routes).
ROUTED = [
    ("/names/get_prediction", "names", "/get_prediction"),
    ("/names/check_service", "names", "/check_service"),
    ("/loans/predict_batch", "loans", "/predict_batch"),
    ("/digits/predict", "digits", "/predict"),
    ("/topics/classify", "topics", "/classify"),
    ("/titanic/predict", "titanic", "/predict"),
    ("/titanic/readyz", "titanic", "/readyz"),
    ("/names", "names", "/"),
    ("/namesake/get_prediction", None, None),
    ("/admin/report", None, None),
]


def per_model_values(cc: ModuleType, **overrides: Any) -> dict[str, Any]:
    """values-prod.yaml + values-per-model.yaml, then ``overrides`` (as one more -f file)."""
    return cc.merge(cc.load_values(*PER_MODEL), overrides)


@pytest.fixture(scope="module")
def per_model(cc: ModuleType) -> list[dict[str, Any]]:
    return cc.render(cc.load_values(*PER_MODEL))


def by_model(cc: ModuleType, manifests: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    """model -> its object of ``kind`` (named <fullname>-<model>)."""
    return {m["metadata"]["name"].removeprefix(f"{FULLNAME}-"): m for m in cc.find(manifests, kind)}


def route(path: str, routes: list[dict[str, Any]]) -> tuple[str, str] | None:
    """What a Gateway does with ``path``: the first PathPrefix match (whole segments) and its rewrite."""
    for item in routes:
        for rule in item["spec"]["rules"]:
            prefix = rule["matches"][0]["path"]["value"]
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                rewrite = next(f["urlRewrite"]["path"] for f in rule["filters"] if f["type"] == "URLRewrite")
                assert rewrite["type"] == "ReplacePrefixMatch"
                rest = path[len(prefix):].lstrip("/")
                return rule["backendRefs"][0]["name"], rewrite["replacePrefixMatch"].rstrip("/") + "/" + rest
    return None


def nginx_route(path: str, ingress: dict[str, Any]) -> tuple[str, str] | None:
    """What ingress-nginx does with ``path``: the regex paths (anchored at the start) and rewrite-target."""
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/use-regex"] == "true"
    target = annotations["nginx.ingress.kubernetes.io/rewrite-target"]
    for item in ingress["spec"]["rules"][0]["http"]["paths"]:
        found = re.match(item["path"], path)
        if found:
            return item["backend"]["service"]["name"], found.expand(target.replace("$", "\\"))
    return None


def test_per_model_lints_renders_and_validates(cc: ModuleType, per_model: list[dict[str, Any]]) -> None:
    assert cc.lint(cc.load_values(*PER_MODEL)) == []
    report = cc.check_manifests("perModel", per_model)
    assert report.problems == []
    kinds = {kind: report.kinds.count(kind) for kind in set(report.kinds)}
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "HTTPRoute"):
        assert set(by_model(cc, per_model, kind)) == set(MODELS), kind
        assert kinds[kind] == len(MODELS), kind
    assert not cc.find(per_model, "Deployment", FULLNAME) and not cc.find(per_model, "Service", FULLNAME)


def test_per_model_images_and_selectors(cc: ModuleType, per_model: list[dict[str, Any]]) -> None:
    deployments = by_model(cc, per_model, "Deployment")
    services = by_model(cc, per_model, "Service")
    budgets = by_model(cc, per_model, "PodDisruptionBudget")
    for model in MODELS:
        assert container(deployments[model])["image"] == f"registry.example.com/bento-fleet-{model}:1.0.0"
        # each Service and PDB reaches its own model's pods only, each HPA scales its own Deployment
        for selector in (services[model]["spec"]["selector"],
                         budgets[model]["spec"]["selector"]["matchLabels"]):
            chosen = [name for name, d in deployments.items()
                      if cc.selects(selector, d["spec"]["template"]["metadata"]["labels"])]
            assert chosen == [model]
        target = by_model(cc, per_model, "HorizontalPodAutoscaler")[model]["spec"]["scaleTargetRef"]
        assert target["name"] == f"{FULLNAME}-{model}"
    values = per_model_values(cc, perModel={
        "names": {"enabled": True, "image": {"tag": "2.0.0"}},
        "loans": {"enabled": True, "image": {"repository": "ghcr.io/x/loans"}}})
    images = {m: container(d)["image"] for m, d in by_model(cc, cc.render(values), "Deployment").items()}
    assert images["names"] == "registry.example.com/bento-fleet-names:2.0.0"
    assert images["loans"] == "ghcr.io/x/loans:1.0.0"
    assert images["topics"] == "registry.example.com/bento-fleet-topics:1.0.0"


@pytest.mark.parametrize(("path", "model", "rewritten"), ROUTED)
def test_per_model_routes_strip_the_model_prefix(
    cc: ModuleType, per_model: list[dict[str, Any]], path: str, model: str | None, rewritten: str | None
) -> None:
    want = (f"{FULLNAME}-{model}", rewritten) if model else None
    assert route(path, cc.find(per_model, "HTTPRoute")) == want
    assert nginx_route(path, cc.find(per_model, "Ingress")[0]) == want
    for item in cc.find(per_model, "HTTPRoute"):
        assert item["spec"]["parentRefs"] == [{"name": "fleet-gateway", "namespace": "gateway-system"}]
        assert item["spec"]["hostnames"] == ["fleet.example.com"]


def test_a_disabled_model_has_no_objects(cc: ModuleType) -> None:
    manifests = cc.render(per_model_values(cc, perModel={"loans": {"enabled": False}}))
    assert cc.check_manifests("no loans", manifests).problems == []
    assert [label for label in map(cc.label, manifests) if "loans" in label] == []
    ingress = cc.find(manifests, "Ingress")[0]
    assert "/loans" not in str(ingress) and nginx_route("/loans/predict", ingress) is None
    assert route("/loans/predict", cc.find(manifests, "HTTPRoute")) is None
    assert set(by_model(cc, manifests, "Deployment")) == set(MODELS) - {"loans"}


def test_topics_replicas_and_node_pool_land_on_topics_only(cc: ModuleType, per_model: list) -> None:
    hpas = by_model(cc, per_model, "HorizontalPodAutoscaler")
    pods = {m: d["spec"]["template"]["spec"] for m, d in by_model(cc, per_model, "Deployment").items()}
    workers = {m: {e["name"]: e.get("value") for e in container(d)["env"]}["FLEET_WORKERS"]
               for m, d in by_model(cc, per_model, "Deployment").items()}
    assert (hpas["topics"]["spec"]["minReplicas"], hpas["topics"]["spec"]["maxReplicas"]) == (4, 12)
    assert pods["topics"]["nodeSelector"] == {"fleet.example.com/pool": "topics"}
    assert pods["topics"]["tolerations"][0]["value"] == "topics"
    assert workers["topics"] == "2"
    for model in set(MODELS) - {"topics"}:
        assert (hpas[model]["spec"]["minReplicas"], hpas[model]["spec"]["maxReplicas"]) == (2, 4), model
        assert "nodeSelector" not in pods[model] and "tolerations" not in pods[model], model
        assert workers[model] == "1", model
    topics = {"enabled": True, "replicaCount": 5}
    manifests = cc.render(per_model_values(cc, autoscaling={"enabled": False}, perModel={"topics": topics}))
    assert cc.find(manifests, "HorizontalPodAutoscaler") == []
    replicas = {m: d["spec"]["replicas"] for m, d in by_model(cc, manifests, "Deployment").items()}
    assert replicas == {**{m: 3 for m in MODELS}, "topics": 5}  # the others: values-prod.yaml's replicaCount


def test_per_model_pods_are_the_all_in_one_pods(cc: ModuleType, rendered: dict, per_model: list) -> None:
    """Same hardening, probes, scratch, token and database Secrets as the gateway; only the image, the
    sizing, the scheduling and the model label differ."""

    def comparable(deployment: dict[str, Any]) -> dict[str, Any]:
        pod = dict(deployment["spec"]["template"]["spec"])
        for key in ("nodeSelector", "tolerations", "affinity"):
            pod.pop(key, None)
        box = {key: value for key, value in container(deployment).items()
               if key not in ("image", "resources")}
        box["env"] = [item for item in box["env"] if item["name"] != "FLEET_WORKERS"]
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        return {**pod, "containers": [box], "annotations": annotations}

    gateway = comparable(cc.find(rendered["prod"], "Deployment", FULLNAME)[0])
    for model, deployment in by_model(cc, per_model, "Deployment").items():
        assert comparable(deployment) == gateway, model
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels["bento-fleet/model"] == model and labels["bento-fleet/track"] == "stable"
        box = container(deployment)
        workers = int({e["name"]: e.get("value") for e in box["env"]}["FLEET_WORKERS"])
        assert workers <= quantity(box["resources"]["limits"]["cpu"])
    monitor = cc.find(per_model, "ServiceMonitor")[0]
    assert "bento-fleet/model" in monitor["spec"]["targetLabels"]
    for service in cc.find(per_model, "Service"):
        assert cc.selects(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])


def test_the_all_in_one_has_no_model_objects(cc: ModuleType, rendered: dict) -> None:
    for name, manifests in rendered.items():
        if name == "perModel":  # the one value set in the other mode
            continue
        assert "bento-fleet/model" not in str(manifests), name
        assert cc.find(manifests, "Deployment", FULLNAME), name


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"canary": {"enabled": True, "image": {"tag": "1.1.0"}}}, "canary.enabled works in mode allInOne"),
        ({"perModel": {"topics": {"enabled": True, "autoscaling": {"minReplicas": 20}}}}, "model topics"),
        ({"perModel": {m: {"enabled": False} for m in MODELS}}, "every model disabled"),
        ({"database": {"existingSecret": ""}}, r"database\.existingSecret is empty"),
    ],
)
def test_per_model_refuses_to_render(cc: ModuleType, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(Exception, match=message):
        cc.render(per_model_values(cc, **overrides))

