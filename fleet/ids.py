"""Ids for requests and logged predictions: UUIDv7 (RFC 9562) as 32 hex digits, the time first.

Ids made one after another sort together, so a database index on them grows at its end. Random ids
(uuid4) land anywhere in the index, and every insert touches a page of its own. On a 400 MB SQLite
log that made a shipped row cost 56-81 us of CPU, against 12-25 us with time-ordered ids (1,000-row
shipments, same database).
"""

from __future__ import annotations

import random
import threading
import time

_last = 0
_lock = threading.Lock()


def time_ordered_id() -> str:
    """48 bits of Unix milliseconds, the version (7), 12 bits of the millisecond's fraction (RFC 9562's
    method 3), the variant (0b10) and 62 random bits; within a process each id sorts after the last,
    even where the clock is coarse. The bits come from ``random`` (reseeded in a forked child), not
    ``os.urandom``: an id is no secret, and in a profile of a busy serving worker 103 of this
    function's 119 samples were in that system call (idle, 1.9 -> 1.3 us a call)."""
    global _last
    ms, fraction = divmod(time.time_ns(), 1_000_000)
    value = (ms << 80 | 0x7 << 76 | (fraction * 4096 // 1_000_000) << 64
             | 0b10 << 62 | random.getrandbits(62))
    with _lock:
        value = _last = max(value, _last + 1)
    return f"{value:032x}"
