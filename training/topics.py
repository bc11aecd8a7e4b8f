"""Train the topic model: ``python -m training.topics [--tiny]``."""

from __future__ import annotations

import argparse

from bentos.topics.pipeline import NAME, TINY, train
from fleet.training import print_metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiny", action="store_true", help="a few hundred titles, a short fit: seconds")
    args = parser.parse_args(argv)
    run = train(TINY if args.tiny else None)
    print_metrics(NAME, run.tag, run.metrics, run.seconds)
    kept = run.details["identical_titles_kept_apart"]
    print(f"  classes: {', '.join(run.details['classes'])}")
    print(f"  identical titles: {kept['titles']} titles in {kept['rows']} rows, "
          f"{kept['crossing_splits']} of them in two splits")


if __name__ == "__main__":
    main()
