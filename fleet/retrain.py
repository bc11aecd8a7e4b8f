"""Retraining through the API, outside the serving workers' interpreter.

``POST /loans/train`` and ``PUT /titanic/run-pipeline`` start ``python -m fleet.retrain`` (niced), which
trains a challenger into the store the server serves from (beside it when that store is read-only,
as in the image: ``fleet.store``) and scores the stable version on the same
held-out split; the worker only awaits the subprocess, so serving goes on at full speed in its own
interpreter. One training per model at a time across every worker (a lock file; a second request is a
409).
"""

from __future__ import annotations

import asyncio
import fcntl
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from fleet import PROJECT_ROOT, store
from fleet.http import Problem
from fleet.paths import state_dir
from fleet.spec import ModelSpec

RESULT = "FLEET-RETRAIN-RESULT "  # the line of the subprocess's output that carries its answer


def resolve(ref: str) -> ModelSpec:
    """The spec a ``module:ATTRIBUTE`` reference names (the subprocess finds its model this way)."""
    module, _, attribute = ref.partition(":")
    return getattr(importlib.import_module(module), attribute)


async def challenge(spec: ModelSpec, stable_tag: str, params: dict[str, Any]) -> dict[str, Any]:
    """Train a challenger (saved, not served) and the stable's metrics on the same split, in a subprocess."""
    folder = state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"training-{spec.name}.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as busy:
            raise Problem(409, {"detail": f"{spec.name} is already training; try again when it finishes"}
                          ) from busy
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "fleet.retrain", spec.ref, stable_tag, json.dumps(params),
            cwd=PROJECT_ROOT, env={**os.environ, "FLEET_MODEL_STORE": str(store.store_path())},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        output, _ = await process.communicate()
    lines = output.decode(errors="replace").splitlines()
    answers = [line.removeprefix(RESULT) for line in lines if line.startswith(RESULT)]
    if process.returncode != 0 or not answers:
        raise Problem(500, {"detail": f"training {spec.name} failed", "log": lines[-15:]})
    return json.loads(answers[-1])


def feedback_rows(spec: ModelSpec) -> list[dict[str, Any]]:
    """Labelled predictions from the log as training rows, where the model can take them (its spec's
    ``feedback_row``): the new data a triggered retraining adds to the training source."""
    if spec.feedback_row is None:
        return []
    from fleet.predlog import LogReader

    reader = LogReader()
    try:
        return [spec.feedback_row(inputs, label) for inputs, label in reader.labelled_inputs(spec.name)]
    finally:
        reader.close()


def main(argv: list[str]) -> None:
    ref, stable_tag, params = argv
    os.nice(10)  # the serving workers come first
    if os.environ.get("FLEET_MODEL_STORE"):
        store.use_store(Path(os.environ["FLEET_MODEL_STORE"]))
    spec = resolve(ref)
    if spec.evaluate is None:
        raise SystemExit(f"{spec.name} declares no evaluation; it cannot be retrained through the API")
    chosen = json.loads(params)
    extra = feedback_rows(spec) if chosen.pop("with_feedback", False) else []
    run = spec.train({**chosen, "extra_rows": extra} if extra else chosen)
    _, stable = store.load(stable_tag, spec.load)
    result = {"tag": run.tag, "metrics": run.metrics, "seconds": run.seconds, "feedback_rows": len(extra),
              "stable_version": store.parse_tag(stable_tag)[1], "stable_metrics": spec.evaluate(stable)}
    print(RESULT + json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
