"""What every service of the fleet shares: its worker count, the models a bento packs, gated retraining."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

import bentoml
import psutil
from bentoml.models import BentoModel

from fleet import store
from fleet.admission import Admission
from fleet.edge import Edge
from fleet.http import RequestId, serve_problems
from fleet.lifetime import Readiness, die_with_parent
from fleet.openapi import Described, Docs
from fleet.retrain import challenge
from fleet.root_bodies import parse_root_bodies_once
from fleet.routing import route
from fleet.traffic import Traffic

MAX_WORKERS = 8  # each worker holds a copy of every planned version (~0.4 GiB for all six models)
WORKER_MEMORY_BYTES = 1 << 30  # memory set aside per worker when capping the count


def workers() -> int:
    """One worker per core this process may use (its CPU set and cgroup quota, so a pod with a 2-CPU
    limit on a 64-core node gets 2), capped by memory and MAX_WORKERS; ``FLEET_WORKERS`` overrides."""
    if os.environ.get("FLEET_WORKERS"):
        return max(1, int(os.environ["FLEET_WORKERS"]))
    by_memory = memory_limit() // WORKER_MEMORY_BYTES
    return max(1, min(cores(), MAX_WORKERS, by_memory))


def cores() -> int:
    """Cores available to this process: its CPU affinity, lowered by a cgroup CPU quota if any."""
    available = len(os.sched_getaffinity(0))
    quota = _read("/sys/fs/cgroup/cpu.max")  # cgroup v2: "max 100000" or "200000 100000"
    if quota and not quota.startswith("max"):
        limit, period = (int(x) for x in quota.split()[:2])
        available = min(available, max(1, limit // period))
    v1_quota = _read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")  # cgroup v1: -1 when unlimited
    v1_period = _read("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
    if v1_quota.lstrip("-").isdigit() and v1_period.isdigit() and int(v1_quota) > 0:
        available = min(available, max(1, int(v1_quota) // int(v1_period)))
    return available


def memory_limit() -> int:
    """Bytes of memory this process may use: the machine's, lowered by a cgroup memory limit if any."""
    limit = psutil.virtual_memory().total
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        value = _read(path)
        if value and value.isdigit():
            limit = min(limit, int(value))
    return limit


def _read(path: str) -> str:
    try:
        with open(path) as handle:
            return handle.read().strip()
    except OSError:
        return ""


def _on(variable: str) -> bool:
    return os.environ.get(variable, "off").lower() in {"on", "1", "true", "yes"}


def observability() -> dict[str, Any]:
    """BentoML's per-request access log and OpenTelemetry spans, off unless asked for.

    Every prediction is already in the prediction log under its request id, and no trace exporter is
    set by default, yet the two took about a third of a names request's CPU here (a span per response
    message, a log line per request; names at 32 clients on two workers: 742 req/s without them,
    464-495 with). ``FLEET_ACCESS_LOG=on`` and ``FLEET_TRACING=on`` bring them back
    (the exporter is then BentoML's ``tracing`` configuration).
    """
    config: dict[str, Any] = {"logging": {"access": {"enabled": _on("FLEET_ACCESS_LOG")}}}
    if not _on("FLEET_TRACING"):
        config["tracing"] = {"excluded_urls": ".*"}  # the middleware stays, and passes every request by
    return config


# ``@bentoml.service(name=..., **SERVICE)`` for the gateway and every per-model bento.
SERVICE: dict[str, Any] = {"workers": workers(), "traffic": {"timeout": 300}, **observability()}
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def thread_share() -> int:
    """Threads per worker for its native pools (torch, OpenMP, BLAS): the cores shared out."""
    return max(1, cores() // SERVICE["workers"])


def share_native_threads() -> None:
    """Give each worker's OpenMP and BLAS pools its share of the cores, unless the environment says.

    Runs where the service is imported, before ``bentoml serve`` spawns the workers, which inherit it:
    the pools read these variables once, when the library loads, and only in a process started after.
    With every pool at its default (one thread per core in every worker) a one-row loans prediction
    costs 42 ms here instead of 26 ms: the workers' spinning OpenMP threads fight over the cores.
    """
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, str(thread_share()))


share_native_threads()
if bentoml.server_context.worker_index is not None:  # a worker of ``bentoml serve``, importing its service
    die_with_parent()


def worker_index() -> int:
    """This worker's number under ``bentoml serve`` (1-based there), 0 elsewhere."""
    return bentoml.server_context.worker_index or 0


def limit_threads() -> None:
    """Share the cores between workers: torch would otherwise start one thread per core in each."""
    import torch

    torch.set_num_threads(thread_share())


def add_edge(service: Any, describe: Callable[[], Described], admin: tuple[str, ...] = ()) -> None:
    """The same HTTP edge in front of every service, gateway and per-model bentos alike (outermost
    first): body and token checks (``admin``: path prefixes beyond ``/admin`` that need the token),
    the docs page and spec (``describe``: ``fleet.openapi.gateway`` or ``model_bento``), per-route
    admission, request ids, and ``/readyz`` naming its generation; and the one handler that turns a
    ``Problem`` raised under any route into its answer."""
    serve_problems()
    parse_root_bodies_once()
    service.add_asgi_middleware(Edge, admin=("/admin", *admin))
    service.add_asgi_middleware(Docs, describe=describe)
    service.add_asgi_middleware(Admission, exempt=admin)
    for middleware in (RequestId, Readiness):
        service.add_asgi_middleware(middleware)


def declare_models(service: Any, *models: str) -> None:
    """Record every tag the plan names for ``models`` on the service, so ``bentoml build`` packs them."""
    tags = {tag for name in models for tag in route(name).kept_tags()}
    service.models.extend(BentoModel(tag) for tag in sorted(tags))


def follow_plan(traffic: Traffic) -> asyncio.Task[None]:
    """Start following other workers' plan changes (call from an ``on_startup`` hook)."""
    return asyncio.get_running_loop().create_task(traffic.follow())


async def train_gated(traffic: Traffic, model: str, params: dict[str, Any]) -> dict[str, Any]:
    """Train a challenger in a subprocess, judge it against the stable on the same held-out data, adopt it
    if it passes (every worker then serves it). One that fails stays registered but unserved."""
    spec = traffic.spec(model)
    result = await challenge(spec, traffic.plan[model].stable, params)
    verdict = spec.gate.judge(result["metrics"], result["stable_metrics"])
    if verdict["passed"]:
        await traffic.adopt(model, result["tag"])
    new = store.parse_tag(result["tag"])[1]
    serving = new if verdict["passed"] else result["stable_version"]
    refusal = None if verdict["passed"] else (
        f"{new} is registered but not served: {verdict['metric']} {verdict['challenger']:.4f} < stable "
        f"{serving}'s {verdict['stable']:.4f} - {verdict['tolerance']}")
    return {**result, "gate": verdict, "promoted": verdict["passed"], "serving_version": serving,
            "new_model_version": new, "refusal": refusal}
