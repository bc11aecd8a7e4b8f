"""Bento Fleet's command line.

    python -m fleet models                       every version of every model, metrics and lineage
    python -m fleet cards                        model cards and the README metrics table, from the store
    python -m fleet report [--out report.html]   the monitoring report (traffic, latency, accuracy, drift)
    python -m fleet routing show                 the plan a running server follows
    python -m fleet routing set MODEL --stable T [--canary T --weight W] [--shadow T]
    python -m fleet routing promote MODEL        canary becomes stable
    python -m fleet routing rollback MODEL       back to the previous stable
    python -m fleet routing export [--out F]     the plan in force as YAML (from the database, if shared)
    python -m fleet rollout start MODEL TAG [--steps 5,25,50,100] [--interval 60s] [--shadow-first]
    python -m fleet rollout status [MODEL]       running rollouts, their last analysis, the loop's events
    python -m fleet rollout abort MODEL          stop the rollout, traffic back to the stable

``routing`` and ``rollout`` talk to a running server's admin API (``--url``, token from
``FLEET_ADMIN_TOKEN``), which loads the new versions and swaps them without a restart; with ``--file``
``routing`` edits the plan file instead (before a server starts or a bento is built).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import httpx

from fleet import cards, plan_sync, store
from fleet.routing import RouteChange, load_plan, plan_text


def list_models() -> None:
    for name, route in load_plan().items():
        print(f"{name}  (stable {route.stable}, canary {route.canary} at {route.canary_weight} %, "
              f"shadow {route.shadow})")
        for row in store.catalogue(name):
            metrics = ", ".join(f"{k}={v}" for k, v in row["metrics"].items())
            lineage = f"data {str(row['dataset_sha256'])[:12]}, commit {str(row['git_commit'])[:8]}"
            print(f"  {row['version']:>5}  {row['trained_at']}  {lineage}  {metrics}")


def write_cards() -> None:
    tags = {name: route.stable for name, route in load_plan().items()}
    for path in cards.write(tags):
        print(f"wrote {path}")


def _admin(url: str) -> httpx.Client:
    token = os.environ.get("FLEET_ADMIN_TOKEN", "")
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=300)


def _answer(response: httpx.Response) -> None:
    print(json.dumps(response.json(), indent=2))
    if response.status_code >= 400:
        sys.exit(1)


def routing(args: argparse.Namespace) -> None:
    if args.action == "export":
        current = plan_sync.read()
        text = plan_text(current.routes, current.number)
        if args.out:
            with open(args.out, "w") as handle:
                handle.write(text)
        else:
            print(text, end="")
        return
    if args.file:
        _edit_plan_file(args)
        return
    with _admin(args.url) as api:
        if args.action == "show":
            response = api.get("/admin/routing")
        elif args.action == "set":
            response = api.put(f"/admin/routing/{args.model}", json=_change(args).model_dump())
        else:
            response = api.post(f"/admin/routing/{args.model}/{args.action}")
    _answer(response)


def seconds(text: str) -> float:
    """``90``, ``90s``, ``5m`` or ``1h`` as seconds."""
    scale = {"s": 1, "m": 60, "h": 3600}.get(text[-1:])
    return float(text[:-1]) * scale if scale else float(text)


def rollout(args: argparse.Namespace) -> None:
    with _admin(args.url) as api:
        if args.action == "start":
            body: dict = {"tag": args.tag}
            if args.steps:
                body["steps"] = [s if s == "shadow" else float(s) for s in args.steps.split(",")]
            if args.interval:
                body["interval"] = seconds(args.interval)
            if args.shadow_first:
                body["shadow_first"] = True
            response = api.post(f"/admin/rollouts/{args.model}", json=body)
        elif args.action == "abort":
            response = api.post(f"/admin/rollouts/{args.model}/abort")
        else:
            response = api.get("/admin/rollouts", params={"model": args.model} if args.model else {})
    _answer(response)


def _change(args: argparse.Namespace) -> RouteChange:
    return RouteChange(stable=args.stable, canary=args.canary, canary_weight=args.weight, shadow=args.shadow)


def _edit_plan_file(args: argparse.Namespace) -> None:
    """Change the plan file itself (no server needed); a running server's workers follow it."""
    if args.action in ("promote", "rollback"):
        sys.exit("promote and rollback act on a running server; use set with --file to edit the plan")
    store.get(args.stable)
    held = plan_sync.lock()
    try:
        current = plan_sync.read()
        routes = {**current.routes, args.model: _change(args).applied_to(current.routes[args.model])}
        plan_sync.write(plan_sync.Revision(current.number + 1, routes), held)
    finally:
        plan_sync.unlock(held)
    print(json.dumps({name: route.model_dump() for name, route in routes.items()}, indent=2))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fleet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("models")
    commands.add_parser("cards")
    commands.add_parser("report", add_help=False)
    plan = commands.add_parser("routing")
    plan.add_argument("action", choices=["show", "set", "promote", "rollback", "export"])
    plan.add_argument("model", nargs="?")
    plan.add_argument("--stable")
    plan.add_argument("--canary")
    plan.add_argument("--weight", type=float, default=0)
    plan.add_argument("--shadow")
    plan.add_argument("--url", default="http://127.0.0.1:3000")
    plan.add_argument("--file", action="store_true", help="edit deploy/routing.yaml instead of a server")
    plan.add_argument("--out", help="export: write the plan to this file")
    loop = commands.add_parser("rollout")
    loop.add_argument("action", choices=["start", "status", "abort"])
    loop.add_argument("model", nargs="?")
    loop.add_argument("tag", nargs="?")
    loop.add_argument("--steps", help="traffic steps in %%, comma-separated (shadow: a shadow step)")
    loop.add_argument("--interval", help="the shortest a step lasts: 60, 60s, 5m")
    loop.add_argument("--shadow-first", action="store_true")
    loop.add_argument("--url", default="http://127.0.0.1:3000")
    args, rest = parser.parse_known_args(argv)
    if args.command == "report":
        from fleet import report

        report.main(rest)
    elif args.command == "models":
        list_models()
    elif args.command == "cards":
        write_cards()
    elif args.command == "rollout":
        rollout(args)
    else:
        routing(args)


if __name__ == "__main__":
    main()
