"""``make image-check``: run the image ``make image`` built, on 127.0.0.1, and check the seeds' contracts
against the container, not the source tree.

Measures start-to-ready (``podman run`` until ``/readyz`` answers 200), checks the container runs as a
non-root user and that its HEALTHCHECK passes, then runs ``deploy/contract_check.py`` against it. The
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


def run_checks(image: str) -> dict:
    port, name = free_port(), f"fleet-image-check-{os.getpid()}"
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    run = podman("run", "-d", "--rm", "--name", name, "-p", f"127.0.0.1:{port}:3000",
                 "-e", f"FLEET_ADMIN_TOKEN={TOKEN}", image)
    if run.returncode != 0:
        raise RuntimeError(f"podman run failed: {run.stderr[-2000:]}")
    try:
        wait_ready(url, name, timeout=180)
        ready_s = time.monotonic() - started  # from `podman run`, container creation included
        user = podman("exec", name, "id", "-u").stdout.strip()
        health = podman("healthcheck", "run", name)
        contracts = check(url)
        routing = httpx.get(f"{url}/admin/routing", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        return {"image": image, "start_to_ready_s": round(ready_s, 1), "uid": user,
                "healthcheck": "healthy" if health.returncode == 0 else health.stderr.strip()[-300:],
                "serving": {model: route["stable"] for model, route in routing.json().items()},
                "contracts": contracts}
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
    result = run_checks(image)
    (HERE / ".last-check.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    ok = (result["uid"] not in ("", "0") and result["healthcheck"] == "healthy"
          and all(verdict == "ok" for verdict in result["contracts"].values()))
    print("image check passed" if ok else "image check FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
