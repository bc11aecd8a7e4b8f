"""``make image-check``: run the image ``make image`` built, on 127.0.0.1, the way the Helm chart runs it
(dev and prod values: user, read-only root, writable mounts, capabilities, environment, all read from
the rendered chart by ``deploy/pod_runtime.py``), and check the seeds' contracts against the container.

Measures start-to-ready (``podman run`` until ``/readyz`` answers 200), checks the container runs as a
non-root user and that its HEALTHCHECK passes, runs ``deploy/contract_check.py`` against it, then
changes the routing plan and predicts once more (the plan is written where the pod can write), and
retrains titanic in the pod and predicts with the version it serves then. The
figures go to deploy/image/.last-check.json and the terminal. Exits 1 when anything fails; exits 0 with
a ``skipped`` reason when no container tool works here (say so when reporting).

Env: IMAGE (default: the image in deploy/image/.last-image.json), CONTAINERS_CONF (default: ours).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # run as a script from anywhere

from deploy.contract_check import check  # noqa: E402
from deploy.pod_runtime import SECRET_STAND_IN, pod_runtime, podman_flags  # noqa: E402
from fleet.local_server import free_port  # noqa: E402

TOKEN = "image-check-token"  # a throw-away admin token for this container only


def podman(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)


def wait_ready(url: str, container: str, timeout: float) -> None:
    """Return once ``/readyz`` answers 200; raises with the container's log if it never does."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"not ready in {timeout} s:\n{podman('logs', '--tail', '40', container).stdout}")


def change_plan_and_predict(url: str) -> str:
    """A routing change (written back where the pod can write) and a prediction after it: "ok" or why not."""
    admin = {"Authorization": f"Bearer {TOKEN}"}
    stable = httpx.get(f"{url}/admin/routing", headers=admin, timeout=30).json()["titanic"]["stable"]
    changed = httpx.put(f"{url}/admin/routing/titanic", json={"stable": stable, "shadow": stable},
                        headers=admin, timeout=60)
    if changed.status_code != 200:
        return f"routing change answered {changed.status_code}: {changed.text[:300]}"
    answer = httpx.post(f"{url}/titanic/predict", json=[{"Sex": "female", "Pclass": 1}], timeout=30)
    if answer.status_code != 200:
        return f"prediction answered {answer.status_code}: {answer.text[:300]}"
    return "ok"


def retrain_and_predict(url: str) -> str:
    """``PUT /titanic/run-pipeline`` in the pod (its model store is read-only: the new version is saved
    under BENTOML_HOME), then a prediction answered by the version it reports serving: "ok" or why not."""
    admin = {"Authorization": f"Bearer {TOKEN}"}
    ran = httpx.put(f"{url}/titanic/run-pipeline", headers=admin, timeout=600)
    if ran.status_code != 200:
        return f"run-pipeline answered {ran.status_code}: {ran.text[:300]}"
    serving = ran.json()["model_version"]
    answer = httpx.post(f"{url}/titanic/predict", json=[{"Sex": "female", "Pclass": 1}], timeout=30)
    if answer.headers.get("X-Model-Version") != serving:
        return f"after retraining {serving} serves, but {answer.headers.get('X-Model-Version')} answered"
    return "ok" if ran.json()["promoted"] else f"ok (not promoted: {ran.json()['detail']})"


def run_checks(image: str, values_set: str) -> dict:
    port, name = free_port(), f"fleet-image-check-{values_set}-{os.getpid()}"
    url = f"http://127.0.0.1:{port}"
    pod = pod_runtime(values_set)
    started = time.monotonic()
    run = podman("run", "-d", "--rm", "--name", name, "-p", f"127.0.0.1:{port}:{pod.port}",
                 *podman_flags(pod, {SECRET_STAND_IN: TOKEN}), image)
    if run.returncode != 0:
        raise RuntimeError(f"podman run failed: {run.stderr[-2000:]}")
    try:
        wait_ready(url, name, timeout=180)
        ready_s = time.monotonic() - started  # from `podman run`, container creation included
        user = podman("exec", name, "id", "-u").stdout.strip()
        health = podman("healthcheck", "run", name)
        contracts = check(url)
        routing = httpx.get(f"{url}/admin/routing", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        return {"image": image, "values": values_set, "start_to_ready_s": round(ready_s, 1), "uid": user,
                "healthcheck": "healthy" if health.returncode == 0 else health.stderr.strip()[-300:],
                "serving": {model: route["stable"] for model, route in routing.json().items()},
                "contracts": contracts, "plan_change": change_plan_and_predict(url),
                "retraining": retrain_and_predict(url)}
    finally:
        podman("stop", "-t", "10", name, timeout=60)


def main() -> int:
    os.environ.setdefault("CONTAINERS_CONF", str(HERE / "containers.conf"))
    if not shutil.which("podman") or podman("info").returncode != 0:
        print("skipped: podman is missing or does not work here (make image installs it)")
        return 0
    last = HERE / ".last-image.json"
    image = os.environ.get("IMAGE") or (json.loads(last.read_text())["image"] if last.exists() else "")
    if not image or podman("image", "exists", image).returncode != 0:
        print(f"no image {image or '(none built)'}: run make image first", file=sys.stderr)
        return 1
    results = [run_checks(image, values_set) for values_set in ("dev", "prod")]
    (HERE / ".last-check.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    ok = all(result["uid"] not in ("", "0") and result["healthcheck"] == "healthy"
             and result["plan_change"] == "ok" and result["retraining"].startswith("ok")
             and all(verdict == "ok" for verdict in result["contracts"].values()) for result in results)
    print("image check passed" if ok else "image check FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
