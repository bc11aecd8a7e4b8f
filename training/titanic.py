"""Train the Titanic survival model: ``python -m training.titanic``."""

from __future__ import annotations

from bentos.titanic.pipeline import NAME, train
from fleet.training import print_metrics


def main() -> None:
    run = train()
    print_metrics(NAME, run.tag, run.metrics, run.seconds)


if __name__ == "__main__":
    main()
