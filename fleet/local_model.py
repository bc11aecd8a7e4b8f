"""One model served inside the worker that answers: its loaded versions and its adaptive batching.

No second process and no second HTTP stack on the request path: a request awaits BentoML's own
adaptive batcher (``CorkDispatcher``, what ``@bentoml.api(batchable=True)`` runs inside a worker),
wrapped around the model's batch scorer, which runs in a thread so the event loop keeps accepting
requests. One batch is in flight per model per worker. A request's items travel as one job, so a
1,000-row ``predict_batch`` is one entry in the queue, not 1,000. A job still queued when its
request's latency budget runs out (``fleet.admission``) leaves the queue and is refused with a 503.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bentoml._internal.marshal.dispatcher import CorkDispatcher

from fleet.admission import queue_deadline
from fleet.batching import BATCHING, learnt_wait
from fleet.http import Problem
from fleet.routing import Route
from fleet.spec import ModelSpec
from fleet.versions import ServedVersions

Item = dict[str, Any]  # {"version": str | None, "input": …}


class Job(list[Item]):
    """One request's items, one entry in the model's queue; ``deadline``: when it must have left it."""

    deadline: float | None = None


def _overloaded() -> list[dict[str, Any]]:
    """What a request gets when it waited past the model's ``max_latency_ms`` or its own latency
    budget for its batch."""
    raise Problem(503, {"detail": "the model is overloaded: this request waited its latency budget for "
                                  "a batch; retry after 1 s"})


def _abandon(dispatcher: CorkDispatcher, job: Job) -> None:
    """Take ``job`` out of the queue and refuse its request, unless its batch has already started."""
    for entry in dispatcher._queue:
        if entry.data is job:
            dispatcher._queue.remove(entry)
            entry.future.cancel()  # the dispatcher answers a cancelled request with ``_overloaded``
            return


class LocalModel:
    """A store model in this worker: ``await score(inputs, version)`` batches with concurrent requests."""

    def __init__(self, spec: ModelSpec, route: Route) -> None:
        self.spec = spec
        self.versions = ServedVersions(spec.name, spec.load, spec.score, spec.smoke_input,
                                       route.kept_tags(), route.stable)
        self.batched = BATCHING and spec.batching.enabled
        self._infer: Callable[[Job], Awaitable[list[dict]]] | None = None

    async def score(self, inputs: list[Any], version: str | None = None) -> list[dict[str, Any]]:
        """Score ``inputs`` with ``version`` (None: the stable); each output names its version."""
        items = Job({"version": version, "input": x} for x in inputs)
        if self.batched:
            outputs = await self._dispatcher()(items)
        else:
            outputs = await asyncio.to_thread(self.versions.run, items)
        missing = [o["error"] for o in outputs if "error" in o]
        if missing:
            raise Problem(409, {"detail": missing[0]})
        return outputs

    async def apply(self, tags: list[str], stable: str) -> list[str]:
        """Load and smoke-test ``tags`` off the event loop, then swap them in (all or nothing)."""
        return await asyncio.to_thread(self.versions.apply, tags, stable)

    def _dispatcher(self) -> Callable[[Job], Awaitable[list[dict]]]:
        """Created on first use, inside the worker's running event loop (BentoML's requirement)."""
        if self._infer is None:
            learnt_wait()
            cap = self.spec.batching.max_batch_size
            dispatcher = CorkDispatcher(self.spec.batching.max_latency_ms, cap, fallback=_overloaded,
                                        get_batch_size=lambda job: min(len(job), cap))
            queued = dispatcher(self._run_jobs)

            async def infer(job: Job) -> list[dict]:
                """An idle model with nothing queued scores the request at once, holding the dispatcher's
                one-batch-in-flight semaphore; otherwise the request queues for the next batch. Going
                through the dispatcher's controller costs an idle model 1.3 ms per request here."""
                if dispatcher._queue or dispatcher._sema.is_locked() or dispatcher._controller is None:
                    return await self._queued(dispatcher, queued, job)
                dispatcher._sema.acquire()
                try:
                    (outputs,) = await asyncio.to_thread(self._run_jobs, (job,))
                finally:
                    dispatcher._sema.release()
                return outputs

            self._infer = infer
        return self._infer

    @staticmethod
    async def _queued(dispatcher: CorkDispatcher, queued: Callable[[Job], Awaitable[list[dict] | None]],
                      job: Job) -> list[dict]:
        """Wait for a batch, but not past the request's queue deadline."""
        job.deadline = queue_deadline()
        if job.deadline is None:
            outputs = await queued(job)
        else:
            left = job.deadline - time.monotonic()
            if left <= 0:
                _overloaded()
            timer = asyncio.get_running_loop().call_later(left, _abandon, dispatcher, job)
            try:
                outputs = await queued(job)
            finally:
                timer.cancel()
        if outputs is None:  # its batch started after its deadline (``_run_jobs``)
            _overloaded()
        return outputs

    def _run_jobs(self, jobs: tuple[list[Item], ...]) -> list[list[dict[str, Any]] | None]:
        """One model call for every queued request's items; each request gets its own slice back.

        A job whose deadline passed before its batch started gets None: on a saturated event loop the
        ``_abandon`` timer can fire after the dispatcher has already taken the job."""
        now = time.monotonic()
        late = [getattr(job, "deadline", None) is not None and job.deadline <= now for job in jobs]
        kept = [item for job, gone in zip(jobs, late, strict=True) if not gone for item in job]
        outputs = self.versions.run(kept) if kept else []
        sliced: list[list[dict[str, Any]] | None] = []
        start = 0
        for job, gone in zip(jobs, late, strict=True):
            sliced.append(None if gone else outputs[start:start + len(job)])
            start += 0 if gone else len(job)
        return sliced
