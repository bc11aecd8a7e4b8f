"""How many workers a server starts and how its native thread pools share the cores."""

from __future__ import annotations

import os

import pytest

from fleet import serving

GIB = 1 << 30


def machine(monkeypatch: pytest.MonkeyPatch, cpus: int, files: dict[str, str], memory: int) -> None:
    """Pretend to run on ``cpus`` cores with these cgroup files and this much memory."""
    monkeypatch.delenv("FLEET_WORKERS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cpus)))
    monkeypatch.setattr(serving, "_read", lambda path: files.get(path, ""))
    monkeypatch.setattr(serving.psutil, "virtual_memory", lambda: type("Memory", (), {"total": memory})())


def test_one_worker_per_core_of_the_cgroup_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    machine(monkeypatch, 64, {"/sys/fs/cgroup/cpu.max": "200000 100000"}, 256 * GIB)
    assert serving.workers() == 2  # a pod limited to 2 CPUs on a 64-core node
    machine(monkeypatch, 64, {"/sys/fs/cgroup/cpu/cpu.cfs_quota_us": "300000",
                              "/sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000"}, 256 * GIB)
    assert serving.workers() == 3  # cgroup v1
    machine(monkeypatch, 64, {"/sys/fs/cgroup/cpu.max": "max 100000"}, 256 * GIB)
    assert serving.workers() == serving.MAX_WORKERS


def test_workers_fit_in_memory_and_the_override_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    machine(monkeypatch, 16, {"/sys/fs/cgroup/memory.max": str(3 * GIB)}, 64 * GIB)
    assert serving.workers() == 3
    monkeypatch.setenv("FLEET_WORKERS", "5")
    assert serving.workers() == 5


def test_native_thread_pools_get_a_share_of_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    machine(monkeypatch, 8, {}, 64 * GIB)
    monkeypatch.setitem(serving.SERVICE, "workers", 4)
    for name in serving.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "3")  # what the operator set stays
    serving.share_native_threads()
    assert os.environ["OMP_NUM_THREADS"] == "2" and os.environ["OPENBLAS_NUM_THREADS"] == "2"
    assert os.environ["MKL_NUM_THREADS"] == "3"
