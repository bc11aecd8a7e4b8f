"""Train the digit models: ``python -m training.digits [--tiny] [--model sklearn|cnn]``."""

from __future__ import annotations

import argparse

from bentos.digits.pipeline import NAMES, TINY, train
from fleet.training import print_metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", choices=sorted(NAMES), help="train only this one (default: both)")
    parser.add_argument("--tiny", action="store_true", help="a few seconds' run, for smoke tests")
    args = parser.parse_args(argv)
    for kind in [args.model] if args.model else list(NAMES):
        run = train(kind, TINY[kind] if args.tiny else None)
        print_metrics(NAMES[kind], run.tag, run.metrics, run.seconds)
        confused = run.details["confusion"]["most_confused"]
        pairs = ", ".join(f"{p['true']}→{p['predicted']} ×{p['count']}" for p in confused)
        print(f"  most confused (true→predicted): {pairs or 'none'}")


if __name__ == "__main__":
    main()
