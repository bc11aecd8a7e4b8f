"""The monitoring loop's HTTP edge: feedback in, live accuracy and drift out, from the prediction log."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from fleet import drift, monitor, store
from fleet.http import Problem
from fleet.predlog import DatabaseUnavailable, PredictionLog
from fleet.predlog.database import is_unavailable
from fleet.routing import Route

MAX_FEEDBACK = 1000
ACCURACY_REFRESH_SECONDS = float(os.environ.get("FLEET_ACCURACY_REFRESH_SECONDS", "30"))
REPORT_WAIT_SECONDS = 60.0  # how long a request for a fresh report waits for the report's process
logger = logging.getLogger(__name__)
T = TypeVar("T")


class Feedback(BaseModel):
    """The true outcome of one answered prediction (``item``: its position in a batch request)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    request_id: Annotated[str, Field(min_length=1, max_length=128)]
    label: StrictBool | StrictInt | Annotated[StrictStr, Field(min_length=1, max_length=100)]
    item: Annotated[int, Field(ge=0, lt=MAX_FEEDBACK)] = 0


FeedbackBody = Feedback | Annotated[list[Feedback], Field(min_length=1, max_length=MAX_FEEDBACK)]


UNAVAILABLE = "the prediction log's database is unavailable; try again shortly"


@contextlib.contextmanager
def unavailable_is_503(detail: str = UNAVAILABLE) -> Iterator[None]:
    """A database that cannot be reached becomes a 503 with Retry-After (the edge adds it), never a
    500; any other database error still propagates as the bug it is."""
    try:
        yield
    except (DatabaseUnavailable, sa.exc.SQLAlchemyError) as error:
        if isinstance(error, sa.exc.SQLAlchemyError) and not is_unavailable(error):
            raise
        logger.warning("prediction log database unavailable: %s", error)
        raise Problem(503, {"detail": detail}) from error


async def with_database(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``call`` in a thread, under ``unavailable_is_503``: the caller still holds what it sent, so
    nothing it is owed was lost."""
    with unavailable_is_503("the prediction log's database is unavailable; nothing was stored, "
                            "try again shortly"):
        return await asyncio.to_thread(call, *args, **kwargs)


async def store_feedback(log: PredictionLog, models: list[str], body: FeedbackBody) -> dict[str, Any]:
    """Store labels under each store model that answered the request (``digits`` covers both image
    models); say which request ids the log has never seen."""
    items = [body] if isinstance(body, Feedback) else body
    rows = [item.model_dump() for item in items]
    for model in models:
        await with_database(log.add_feedback_many, model, rows)
    ids = [item.request_id for item in items]
    unseen = set(ids)
    await log.see_own_writes()
    for model in models:
        unseen &= set(await with_database(log.unmatched_feedback, model, ids, flushed=True))
    return {"stored": len(rows), "unmatched": sorted(unseen)}


def drift_now(log: PredictionLog, plan: dict[str, Route], models: list[str] | None = None) -> dict[str, Any]:
    """For each version a model serves (stable, canary, shadow): its recent logged inputs against the
    drift profile saved with it at training time."""
    results: dict[str, Any] = {}
    for name in models or list(plan):
        if name not in plan:
            raise Problem(404, {"detail": f"no model named {name!r}"})
        route = plan[name]
        for tag in route.served_tags():
            reference = store.get(tag).info.metadata.get("drift_profile")
            if reference is None:
                results[tag] = {"error": "this version was saved without a drift profile"}
                continue
            results[tag] = drift.check(log, name, store.parse_tag(tag)[1], reference).to_dict()
    return results


async def refresh_accuracy(log: PredictionLog) -> None:
    """Keep the live accuracy gauges (per model and version, last 1,000 labelled predictions) fresh."""
    while True:
        try:
            await asyncio.to_thread(log.refresh_accuracy_gauges)
        except Exception:  # the database may be down; serving goes on and the next round retries
            logger.warning("could not refresh live accuracy", exc_info=True)
        await asyncio.sleep(ACCURACY_REFRESH_SECONDS)


async def report_page(fresh: bool) -> tuple[str, str]:
    """The report's last render and when it began (ISO), from the report's own process
    (``fleet.monitor``); a new one is asked for and awaited if ``fresh``, if there is none yet, or if
    the last is older than two intervals (nobody read the report for a while, so none was rendered;
    should that render not come in time, the old one is served, its time in the header)."""
    monitor.seen()
    path = monitor.rendered()
    if fresh or path is None or time.time() - path.stat().st_mtime > 2 * monitor.interval():
        path = await monitor.fresh(REPORT_WAIT_SECONDS) or (None if fresh else path)
    if path is None:
        raise Problem(503, {"detail": "the report is being rendered in its own process; try again shortly"})
    text = await asyncio.to_thread(path.read_text, encoding="utf-8")
    return text, datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="seconds")
