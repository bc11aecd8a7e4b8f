"""``python -m fleet models`` lists every version of every planned model with its metrics and lineage;
``python -m fleet cards`` writes the model cards and the README metrics table from the store."""

from __future__ import annotations

import argparse

from fleet import cards, store
from fleet.routing import load_plan


def list_models() -> None:
    plan = load_plan()
    for name, roles in plan.items():
        print(f"{name}  (serving {roles.get('stable')})")
        for version in store.versions(name):
            meta = store.get(f"{name}:{version}").info.metadata
            metrics = ", ".join(f"{k}={v}" for k, v in meta.get("metrics", {}).items())
            data_hash = meta.get("dataset", {}).get("sha256", "?")[:12]
            lineage = f"data {data_hash}, commit {str(meta.get('git_commit'))[:8]}"
            print(f"  {version:>5}  {meta.get('trained_at', '?')}  {lineage}  {metrics}")


def write_cards() -> None:
    tags = {name: roles["stable"] for name, roles in load_plan().items()}
    for path in cards.write(tags):
        print(f"wrote {path}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fleet", description=__doc__)
    parser.add_argument("command", choices=["models", "cards"])
    args = parser.parse_args(argv)
    {"models": list_models, "cards": write_cards}[args.command]()


if __name__ == "__main__":
    main()
