"""``python -m training [--missing] [model ...]``: train the default models.

With ``--missing`` only the models whose planned tag (``deploy/routing.yaml``) is not in the store
are trained, so a second ``make serve`` starts at once.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial

from fleet import store
from fleet.routing import load_plan
from fleet.training import TrainingRun, print_metrics


def trainers(tiny: bool = False) -> dict[str, Callable[[], TrainingRun]]:
    """Each registered model's name and the run that produces it (``tiny``: seconds, for tests)."""
    from bentos.registry import SPECS

    return {name: partial(spec.train, spec.tiny if tiny else None) for name, spec in SPECS.items()}


def _is_missing(tag: str) -> bool:
    try:
        store.get(tag)
    except store.ModelNotFound:
        return True
    return False


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("models", nargs="*", help="models to train (default: all)")
    parser.add_argument("--missing", action="store_true", help="only models whose planned tag is absent")
    parser.add_argument("--tiny", action="store_true", help="seconds-long runs on small settings")
    args = parser.parse_args(argv)
    plan, runs = load_plan(), trainers(args.tiny)
    chosen = args.models or list(runs)
    if args.missing:
        chosen = [m for m in chosen if _is_missing(plan[m].stable)]
    if not chosen:
        print("Every planned model is in the store; nothing to train.")
    for model in chosen:
        run = runs[model]()
        print_metrics(model, run.tag, run.metrics, run.seconds)
        if args.missing and run.tag != plan[model].stable:
            planned = plan[model].stable
            print(f"  note: the plan serves {planned}; edit deploy/routing.yaml to serve {run.tag}")


if __name__ == "__main__":
    main()
