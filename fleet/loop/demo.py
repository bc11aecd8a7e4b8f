"""Traffic for trying the closed loop on a laptop: Titanic passengers sent to a running gateway, each
by a caller of its own (so the canary split spreads), with the true outcome sent back as feedback.

    python -m fleet.loop.demo [--url http://127.0.0.1:3000] [--seconds 120] [--shifted] [--no-feedback]

``--shifted`` sends one unusual passenger over and over (what a drift check should flag). Progress and
the status codes are printed every five seconds.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

Passenger = Callable[[], tuple[dict[str, Any], int]]
SHIFTED = {"Sex": "female", "Pclass": 1, "Age": 78, "SibSp": 5, "Parch": 5}


def real_passengers(seed: int = 1) -> Passenger:
    """Passengers of the training source in random order, each with whether they survived."""
    from data.titanic import load

    rows = itertools.cycle(load().dropna().sample(frac=1.0, random_state=seed).to_dict("records"))
    lock = threading.Lock()

    def next_passenger() -> tuple[dict[str, Any], int]:
        with lock:
            row = dict(next(rows))
        survived = int(row.pop("Survived"))
        return {**row, **{k: int(row[k]) for k in ("Pclass", "SibSp", "Parch")}}, survived

    return next_passenger


def shifted_passengers() -> Passenger:
    return lambda: (dict(SHIFTED), 1)


class Traffic:
    """``callers`` threads calling ``/titanic/predict`` until stopped; every status code is counted."""

    def __init__(self, url: str, passenger: Passenger, feedback: bool = True, callers: int = 4) -> None:
        self.url, self.passenger, self.feedback = url, passenger, feedback
        self.codes: collections.Counter[int] = collections.Counter()
        self.versions: collections.Counter[str] = collections.Counter()
        self._stop, self._ids = threading.Event(), itertools.count()
        self._threads = [threading.Thread(target=self._call, daemon=True) for _ in range(callers)]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _call(self) -> None:
        run = uuid.uuid4().hex[:8]
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                n = next(self._ids)
                passenger, survived = self.passenger()
                headers = {"X-User-ID": f"user-{run}-{n}", "X-Request-ID": f"demo-{run}-{n}"}
                try:
                    answer = client.post("/titanic/predict", json=[passenger], headers=headers)
                except httpx.HTTPError as failed:
                    self.codes[type(failed).__name__] += 1
                    continue
                self.codes[answer.status_code] += 1
                self.versions[answer.headers.get("X-Model-Version", "")] += 1
                if self.feedback and answer.status_code == 200:
                    client.post("/titanic/feedback", json={"request_id": headers["X-Request-ID"],
                                                           "label": bool(survived)})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fleet.loop.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:3000")
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--shifted", action="store_true")
    parser.add_argument("--no-feedback", action="store_true")
    args = parser.parse_args(argv)
    source = shifted_passengers() if args.shifted else real_passengers()
    started = time.monotonic()
    with Traffic(args.url, source, feedback=not args.no_feedback) as traffic:
        while (left := args.seconds - (time.monotonic() - started)) > 0:
            time.sleep(min(5.0, left))
            print(f"{time.monotonic() - started:5.0f} s  codes {dict(traffic.codes)}  "
                  f"versions {dict(traffic.versions)}", flush=True)


if __name__ == "__main__":
    main()
