"""Request and prediction ids are UUIDv7: unique, and in the order they were made, so the log's indexes
on them grow at their end (see fleet.ids)."""

from __future__ import annotations

import time
import uuid

from fleet.http import new_request_id
from fleet.ids import time_ordered_id
from fleet.predlog import Prediction


def test_ids_are_uuid7_in_the_order_they_were_made() -> None:
    made = []
    for _ in range(2000):
        made.append(time_ordered_id())
        if len(made) % 500 == 0:
            time.sleep(0.002)  # across milliseconds too
    assert len(set(made)) == len(made) and made == sorted(made)
    parsed = uuid.UUID(made[0])
    assert (parsed.version, parsed.variant, len(made[0])) == (7, uuid.RFC_4122, 32)
    now_ms = time.time_ns() // 1_000_000
    assert now_ms - 5000 < int(made[-1][:12], 16) <= now_ms  # the first 48 bits are the millisecond


def test_request_and_prediction_ids_are_time_ordered() -> None:
    first = Prediction("r", "names", "v1", "stable", "Nakamura", {}, 1.0).id
    request = new_request_id()
    second = Prediction("r", "names", "v1", "stable", "Nakamura", {}, 1.0).id
    assert first < request < second
    assert uuid.UUID(request).version == 7
