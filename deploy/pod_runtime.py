"""How the Helm chart runs the container, read from the rendered chart: user, read-only root, the
writable mounts, capabilities and environment of the stable Deployment.

``make image-check`` turns it into ``podman run`` flags, and the suite runs the built bento the same way
without containers (a private mount namespace whose root is read-only), so a server that writes where
the pod cannot is caught before a cluster sees it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.chart_check import find, render_set

# What the emulated pod and the container get instead of the chart's Secret reference.
SECRET_STAND_IN = "FLEET_ADMIN_TOKEN"


@dataclass(frozen=True)
class PodRuntime:
    """The stable container's runtime settings, as the chart renders them for one values set."""

    uid: int
    gid: int
    read_only_root: bool
    writable: tuple[str, ...]  # mount paths of the pod's emptyDir volumes
    env: dict[str, str]  # literal values; Secret references are left to the caller
    secrets: tuple[str, ...]
    drop_capabilities: tuple[str, ...]
    no_new_privileges: bool
    port: int


def pod_runtime(values_set: str) -> PodRuntime:
    """The runtime of the stable Deployment rendered with ``values_set`` (dev, prod, canary)."""
    (deployment,) = [d for d in find(render_set(values_set), "Deployment")
                     if d["spec"]["template"]["metadata"]["labels"].get("bento-fleet/track") == "stable"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    security = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    # emptyDirs, and claims (the trained-models volume): writable, and empty when a pod first starts
    writable_volumes = {v["name"] for v in pod.get("volumes", [])
                        if "emptyDir" in v or "persistentVolumeClaim" in v}
    mounts = container.get("volumeMounts", [])
    env: dict[str, Any] = {e["name"]: e.get("value") for e in container.get("env", [])}
    return PodRuntime(
        uid=int(security["runAsUser"]), gid=int(security.get("runAsGroup", security["runAsUser"])),
        read_only_root=bool(security.get("readOnlyRootFilesystem")),
        writable=tuple(m["mountPath"] for m in mounts if m["name"] in writable_volumes),
        env={name: str(value) for name, value in env.items() if value is not None},
        secrets=tuple(name for name, value in env.items() if value is None),
        drop_capabilities=tuple(security.get("capabilities", {}).get("drop", [])),
        no_new_privileges=security.get("allowPrivilegeEscalation") is False,
        port=int(container["ports"][0]["containerPort"]),
    )


def podman_flags(pod: PodRuntime, secrets: dict[str, str]) -> list[str]:
    """``podman run`` flags that give the container exactly the pod's user, filesystem and environment."""
    flags = ["--user", f"{pod.uid}:{pod.gid}"]
    if pod.read_only_root:
        flags.append("--read-only")
    for path in pod.writable:  # emptyDir: empty, writable by the pod's group (fsGroup)
        flags += ["--tmpfs", f"{path}:rw,mode=1777"]
    flags += [f"--cap-drop={cap}" for cap in pod.drop_capabilities]
    if pod.no_new_privileges:
        flags += ["--security-opt", "no-new-privileges"]
    for name, value in {**pod.env, **secrets}.items():
        flags += ["-e", f"{name}={value}"]
    return flags


def read_only_root(argv: list[str], writable: list[Path], read_only: list[Path]) -> list[str]:
    """``argv`` in a private mount namespace whose root filesystem is read-only.

    ``writable`` folders stay writable (the pod's emptyDirs); ``read_only`` ones inside them are made
    read-only again (the bento and its models, which the image holds read-only). Needs root and
    ``unshare`` (util-linux); the process still runs as root, so only the read-only mounts are emulated,
    not the pod's user.
    """
    steps = [f"mount --bind {shlex.quote(str(p))} {shlex.quote(str(p))}" for p in writable]
    steps.append("mount -o remount,bind,ro /")
    for path in read_only:
        quoted = shlex.quote(str(path))
        steps += [f"mount --bind {quoted} {quoted}", f"mount -o remount,bind,ro {quoted}"]
    script = " && ".join([*steps, 'exec "$@"'])
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *argv]
