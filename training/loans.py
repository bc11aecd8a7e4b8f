"""Train the loans approval model: ``python -m training.loans``."""

from __future__ import annotations

from bentos.loans.pipeline import NAME, train
from fleet.training import print_metrics


def main() -> None:
    run = train()
    print_metrics(NAME, run.tag, run.metrics, run.seconds)


if __name__ == "__main__":
    main()
