"""The versions a serving worker holds of one model, and how a batch is scored across them.

A batch from BentoML's dispatcher may mix versions (stable, canary, shadow, pinned): items are grouped
by version and each group goes through its model in one call. A new plan is loaded and smoke-tested
off the request path, then swapped in with one reference assignment, so requests in flight finish on
the version they were routed to.
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import Histogram

from fleet import store

Scorer = Callable[[Any, list[Any]], list[dict[str, Any]]]

BATCH_SIZE = Histogram(
    "fleet_batch_size", "Items per model call, per model and version", ["model", "version"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)


class SmokeTestFailed(RuntimeError):
    """A version loaded but did not answer a known input sensibly."""


class ServedVersions:
    """``{version: model}`` for one store model, with the stable version used when none is asked."""

    def __init__(self, name: str, loader: Callable[[Path], Any], score: Scorer, smoke_input: Sequence[Any],
                 tags: list[str], stable: str):
        self.name, self._loader, self._score, self._smoke_input = name, loader, score, list(smoke_input)
        self._lock = threading.Lock()
        self.models: dict[str, Any] = {}
        self.stable = ""
        self.apply(tags, stable)

    def load(self, tag: str) -> Any:
        """Load exactly ``tag`` and check it answers the smoke input with finite scores."""
        _, model = store.load(tag, self._loader)
        outputs = self._score(model, self._smoke_input)
        if len(outputs) != len(self._smoke_input) or not all(_finite(o) for o in outputs):
            raise SmokeTestFailed(f"{tag} gave {outputs!r} for the smoke input")
        return model

    def apply(self, tags: list[str], stable: str) -> list[str]:
        """Hold exactly ``tags`` (already loaded ones are reused) with ``stable`` as default; all or nothing.

        Idempotent, so a retried call changes nothing more; the caller keeps versions that requests
        in flight may still be routed to in ``tags``.
        """
        with self._lock:
            current = self.models
            loaded = {}
            for tag in tags:
                version = store.parse_tag(tag)[1]
                loaded[version] = current.get(version) or self.load(tag)
            self.models, self.stable = loaded, store.parse_tag(stable)[1]
            return sorted(loaded, key=lambda v: int(v[1:]))

    def run(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Score ``[{"version": str | None, "input": …}]``; each output says which version produced it."""
        models, stable = self.models, self.stable
        groups: dict[str, list[int]] = defaultdict(list)
        for index, item in enumerate(items):
            groups[item.get("version") or stable].append(index)
        outputs: list[dict[str, Any]] = [{} for _ in items]
        for version, indices in groups.items():
            model = models.get(version)
            if model is None:
                for i in indices:
                    outputs[i] = {"error": f"{self.name}:{version} is not served", "model_version": version}
                continue
            BATCH_SIZE.labels(self.name, version).observe(len(indices))
            scored = self._score(model, [items[i]["input"] for i in indices])
            for i, output in zip(indices, scored, strict=True):
                outputs[i] = {**output, "model_version": version}
        return outputs


def _finite(output: dict[str, Any]) -> bool:
    numbers = [v for v in output.values() if isinstance(v, float)]
    numbers += [x for v in output.values() if isinstance(v, list) for x in v if isinstance(x, float)]
    return all(math.isfinite(x) for x in numbers)
