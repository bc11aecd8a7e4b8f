"""Offline checks of the bento-fleet Helm chart: ``python deploy/chart_check.py``.

Lints the chart, renders it with the dev, prod and canary values, validates every manifest against
the Kubernetes OpenAPI schemas (kubernetes-validate, strict), checks the CRD kinds it has no schema
for (HTTPRoute, ServiceMonitor) and the references between objects by hand, and makes sure that
``ci/bad-values.yaml`` is rejected. Needs ``helm-python-sdk`` and ``kubernetes-validate``; no
cluster, no helm binary, no network. Exits non-zero on any failure.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

try:
    import helm_python as helm
    import kubernetes_validate
except ImportError as exc:  # the tests skip; the script says what to install
    helm = kubernetes_validate = None  # type: ignore[assignment]
    IMPORT_ERROR: str | None = f"{exc.name} is not installed: pip install helm-python-sdk kubernetes-validate"
else:
    IMPORT_ERROR = None

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "deploy" / "helm" / "bento-fleet"
BAD_VALUES = CHART / "ci" / "bad-values.yaml"
KUBE_VERSION = "1.32.0"
RELEASE = "fleet"
NAMESPACE = "fleet"
# Each check renders the chart with these files layered in order, as `helm -f a -f b` would.
VALUE_SETS: dict[str, tuple[str, ...]] = {
    "dev": ("values-dev.yaml",),
    "prod": ("values-prod.yaml",),
    "canary": ("values-prod.yaml", "values-canary.yaml"),
    "perModel": ("values-prod.yaml", "values-per-model.yaml"),
}
# Kinds from CRDs, absent from the core schemas: the fields each one must have.
CRD_REQUIRED: dict[tuple[str, str], tuple[str, ...]] = {
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): ("metadata.name", "spec.parentRefs", "spec.rules"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"): ("metadata.name", "spec.selector", "spec.endpoints"),
}
Manifest = dict[str, Any]


@dataclass
class Report:
    """The outcome of one values set."""

    name: str
    kinds: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    by_hand: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One summary line."""
        status = "OK  " if not self.problems else "FAIL"
        counts = sorted(Counter(self.kinds).items())
        kinds = ", ".join(f"{kind} x{n}" if n > 1 else kind for kind, n in counts)
        hand = f"; CRDs checked by hand: {', '.join(self.by_hand)}" if self.by_hand else ""
        return (f"{status} {self.name:<7} {len(self.kinds)} objects ({kinds}) valid for Kubernetes "
                f"{KUBE_VERSION}{hand}")


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's layering of values files: maps merge, null deletes a key, anything else replaces."""
    merged = dict(base)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_values(*files: str | Path) -> dict[str, Any]:
    """The user values of ``files`` (relative to the chart) layered in order."""
    values: dict[str, Any] = {}
    for name in files:
        values = merge(values, yaml.safe_load((CHART / name).read_text()) or {})
    return values


def set_values(name: str) -> dict[str, Any]:
    """The user values of one of ``VALUE_SETS``."""
    return load_values(*VALUE_SETS[name])


def lint(values: dict[str, Any] | None = None) -> list[str]:
    """``helm lint --strict``: warnings and errors (info such as "icon is recommended" is ignored)."""
    report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}")
    found = [f"{m['path']}: {m['error'].strip()}" for m in report["messages"] if m["severity"] >= 2]
    return found or [error.strip() for error in report["errors"]]


def render(values: dict[str, Any] | None = None) -> list[Manifest]:
    """``helm template``: every rendered object (NOTES.txt left out), schema of the values enforced."""
    with helm.Chart.load(CHART) as chart:
        files = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return [doc for path, text in sorted(files.items()) if path.endswith((".yaml", ".yml"))
            for doc in yaml.safe_load_all(text) if doc]


def render_set(name: str) -> list[Manifest]:
    """The objects of one of ``VALUE_SETS``."""
    return render(set_values(name))


def dig(obj: Any, dotted: str) -> Any:
    """The value at a dotted path, or None."""
    for key in dotted.split("."):
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


def find(manifests: Iterable[Manifest], kind: str, name: str | None = None) -> list[Manifest]:
    """The objects of one kind (and name)."""
    return [m for m in manifests if m["kind"] == kind and name in (None, m["metadata"]["name"])]


def label(manifest: Manifest) -> str:
    """Kind/name, for messages."""
    return f"{manifest.get('kind')}/{dig(manifest, 'metadata.name')}"


def validate(manifest: Manifest) -> str | None:
    """Strict schema validation; returns a problem, or None. Raises SchemaNotFoundError for CRDs."""
    try:
        kubernetes_validate.validate(manifest, KUBE_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        where = ".".join(str(part) for part in error.path)
        return f"{label(manifest)}: {where}: {error.message}"
    return None


def check_crd(manifest: Manifest) -> list[str]:
    """Hand checks of a CRD kind: known apiVersion/kind, required fields, HTTPRoute backends."""
    required = CRD_REQUIRED.get((manifest["apiVersion"], manifest["kind"]))
    if required is None:
        return [f"{label(manifest)}: {manifest['apiVersion']} has no schema and no hand check"]
    problems = [f"{label(manifest)}: missing {path}" for path in required if not dig(manifest, path)]
    if manifest["kind"] == "HTTPRoute":
        problems += check_route(manifest)
    if manifest["kind"] == "ServiceMonitor":
        problems += [f"{label(manifest)}: endpoint without port" for endpoint in
                     dig(manifest, "spec.endpoints") or [] if not endpoint.get("port")]
    return problems


def route_weights(route: Manifest) -> dict[str, int]:
    """Backend Service name -> weight of an HTTPRoute's rules."""
    return {ref["name"]: ref.get("weight", 1) for rule in route["spec"].get("rules", [])
            for ref in rule.get("backendRefs", [])}


def check_route(route: Manifest) -> list[str]:
    """Every parentRef named; every backend has name, port and weight; the weights make 100 %."""
    problems = [f"{label(route)}: parentRef without name" for ref in
                dig(route, "spec.parentRefs") or [] if not ref.get("name")]
    for rule in route["spec"].get("rules", []):
        for ref in rule.get("backendRefs", []):
            if not (ref.get("name") and isinstance(ref.get("port"), int)
                    and isinstance(ref.get("weight"), int) and 0 <= ref["weight"] <= 1_000_000):
                problems.append(f"{label(route)}: bad backendRef {ref}")
    total = sum(route_weights(route).values())
    return problems + ([] if total == 100 else [f"{label(route)}: weights sum to {total}, not 100"])


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """Whether matchLabels select these labels."""
    return bool(selector) and all(labels.get(key) == value for key, value in selector.items())


def pod_labels(manifests: list[Manifest]) -> list[dict[str, str]]:
    """The pod labels of every Deployment."""
    return [dig(d, "spec.template.metadata.labels") or {} for d in find(manifests, "Deployment")]


def unmatched_selectors(manifests: list[Manifest]) -> list[str]:
    """Deployments whose selector misses their own pods; Services and PDBs that select no pods."""
    pods = pod_labels(manifests)
    problems = [f"{label(d)}: selector does not match its pod labels" for d in find(manifests, "Deployment")
                if not selects(dig(d, "spec.selector.matchLabels"), dig(d, "spec.template.metadata.labels"))]
    for item in [*find(manifests, "Service"), *find(manifests, "PodDisruptionBudget")]:
        selector = dig(item, "spec.selector.matchLabels") or dig(item, "spec.selector")
        if not any(selects(selector, labels) for labels in pods):
            problems.append(f"{label(item)}: selects no pods")
    return problems


def dangling_references(manifests: list[Manifest]) -> list[str]:
    """HPA targets, HTTPRoute and Ingress backends that name objects the chart does not render."""
    services = {s["metadata"]["name"] for s in find(manifests, "Service")}
    deployments = {d["metadata"]["name"] for d in find(manifests, "Deployment")}
    wanted = [(h, "Deployment", dig(h, "spec.scaleTargetRef.name"), deployments)
              for h in find(manifests, "HorizontalPodAutoscaler")]
    wanted += [(r, "Service", name, services)
               for r in find(manifests, "HTTPRoute") for name in route_weights(r)]
    wanted += [(i, "Service", dig(path, "backend.service.name"), services) for i in find(manifests, "Ingress")
               for rule in dig(i, "spec.rules") or [] for path in dig(rule, "http.paths") or []]
    return [f"{label(item)}: {kind} {name} is not rendered" for item, kind, name, names in wanted
            if name not in names]


def check_references(manifests: list[Manifest]) -> list[str]:
    """What schemas cannot see: selectors that select pods, references to objects that exist."""
    return unmatched_selectors(manifests) + dangling_references(manifests)


def check_manifests(name: str, manifests: list[Manifest]) -> Report:
    """Schema-validate every object, hand-check CRD kinds, cross-check references."""
    report = Report(name, kinds=[m["kind"] for m in manifests])
    for manifest in manifests:
        try:
            problem = validate(manifest)
            report.problems += [problem] if problem else []
        except kubernetes_validate.SchemaNotFoundError:
            report.by_hand.append(manifest["kind"])
            report.problems += check_crd(manifest)
    report.problems += check_references(manifests)
    return report


def check_set(name: str) -> Report:
    """Lint, render and validate one of ``VALUE_SETS``."""
    values = set_values(name)
    problems = [f"lint: {problem}" for problem in lint(values)]
    try:
        manifests = render(values)
    except helm.HelmError as error:
        return Report(name, problems=[*problems, f"render: {error}"])
    report = check_manifests(name, manifests)
    report.problems = problems + report.problems
    return report


def rejection(values: dict[str, Any]) -> str | None:
    """Why rendering these values fails (the schema's message), or None when they are accepted."""
    try:
        render(values)
    except helm.HelmValuesError as error:
        return str(error)
    return None


def check_bad_values() -> tuple[bool, str]:
    """Whether ``ci/bad-values.yaml`` is rejected, and a one-line account."""
    reason = rejection(yaml.safe_load(BAD_VALUES.read_text()))
    path = BAD_VALUES.relative_to(ROOT)
    if reason is None:
        return False, f"FAIL bad     {path} was accepted"
    errors = len(re.findall(r"^- at ", reason, flags=re.MULTILINE))
    return True, f"OK   bad     {path} rejected by values.schema.json ({errors} errors)"


def main() -> int:
    """Run every check and print one line per values set; 0 only when all pass."""
    if IMPORT_ERROR:
        print(f"chart_check: {IMPORT_ERROR}", file=sys.stderr)
        return 2
    failed = False
    for problem in lint():
        print(f"FAIL lint (default values): {problem}")
        failed = True
    for name in VALUE_SETS:
        report = check_set(name)
        print(report.line() if not report.problems else f"FAIL {name:<7} {len(report.problems)} problems")
        for problem in report.problems:
            print(f"     - {problem}")
        failed |= bool(report.problems)
    rejected, line = check_bad_values()
    print(line)
    failed |= not rejected
    print(f"chart_check: {'FAILED' if failed else 'all checks passed'} (helm {helm.helm_sdk_version()}, "
          f"kubernetes-validate {kubernetes_validate.__version__})")
    return int(failed)


if __name__ == "__main__":
    sys.exit(main())
