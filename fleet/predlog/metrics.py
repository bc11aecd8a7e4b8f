"""The prediction log's Prometheus metrics and per-instance counts. The metrics are one set per
registry, shared by every log of the process (BentoML aggregates them across workers); ``Stats``
counts what one ``PredictionLog`` instance did, which is what tests and the benchmark look at.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any


class Metrics:
    """The log's Prometheus metrics. prometheus_client is imported here, not at module import, because
    BentoML sets its multiprocess directory in each worker after importing the service module."""

    _by_registry: weakref.WeakKeyDictionary[Any, Metrics] = weakref.WeakKeyDictionary()  # noqa: RUF012

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        kw = {"registry": registry}
        self.rows = Counter("fleet_predlog_rows", "Prediction-log rows by outcome: committed, spooled, "
                            "replayed (committed from the spool)", ["outcome"], **kw)
        self.dropped = Counter("fleet_predlog_dropped_rows", "Prediction-log rows lost, by reason",
                               ["reason"], **kw)
        self.spooled = Gauge("fleet_predlog_spooled_rows", "Rows waiting in the spool for the database",
                             multiprocess_mode="livesum", **kw)
        self.commit_seconds = Histogram(
            "fleet_predlog_commit_seconds", "Time of one group commit",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5), **kw)
        self.batch_rows = Histogram("fleet_predlog_batch_rows", "Rows per group commit",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096), **kw)
        self.accuracy = Gauge("fleet_live_accuracy", "Share of predictions matching feedback, sliding window",
                              ["model", "version"], multiprocess_mode="mostrecent", **kw)
        self.accuracy_n = Gauge("fleet_live_accuracy_samples", "Feedback rows in the accuracy window",
                                ["model", "version"], multiprocess_mode="mostrecent", **kw)

    @classmethod
    def of(cls, registry: Any = None) -> Metrics:
        if registry is None:
            from prometheus_client import REGISTRY as registry
        if registry not in cls._by_registry:  # one set per registry, shared by every log
            cls._by_registry[registry] = cls(registry)
        return cls._by_registry[registry]


@dataclass
class Stats:
    """Counts of this log instance (the metrics are per process and shared by every instance)."""

    commits: int = 0
    committed: int = 0
    spooled: int = 0
    replayed: int = 0
    dropped: int = 0
