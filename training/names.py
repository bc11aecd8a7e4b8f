"""Train the surname nationality model: ``python -m training.names [--tiny]``."""

from __future__ import annotations

import argparse

from bentos.names.pipeline import NAME, TINY, train
from fleet.training import print_metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="seconds, on a small subset: a smoke test")
    args = parser.parse_args(argv)
    run = train(TINY if args.tiny else None)
    print_metrics(NAME, run.tag, run.metrics, run.seconds)


if __name__ == "__main__":
    main()
