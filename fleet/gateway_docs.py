"""The gateway's own routes (monitoring and admin) and its page's text, as ``fleet.openapi`` shows them."""

from __future__ import annotations

from fleet.openapi import Operation, Tag

DESCRIPTION = """Five classic ML models behind one gateway, each under its seed's API contract:
**names**, **loans**, **digits**, **topics** and **titanic** (their routes are grouped below).

- **Calling:** JSON in, JSON out; every answer carries `X-Model-Version`. Send `X-Model-Version: vN`
  to pin a served version, `X-User-ID` or `X-Request-ID` to keep a caller on one side of a canary.
- **Refusals** are 4xx with a JSON body whose `detail` names the field and the problem; past capacity
  a route answers 503 with `Retry-After`.
- **Monitoring:** every answered prediction is logged; `POST /{model}/feedback` adds the true outcome;
  `GET /admin/report` is the HTML report (live accuracy, drift, latency); `/metrics` is Prometheus.
- **Admin** routes (`/admin/…`, `POST /loans/train`, `PUT /titanic/run-pipeline`) need
  `Authorization: Bearer <FLEET_ADMIN_TOKEN>` (use *Authorize* on this page); without the variable on
  the server they are off (403).

The project's README is served at [/readme](/readme)."""

TAGS: list[Tag] = [
    {"name": "monitoring", "description": "Feedback in; logged predictions, drift and the report out"},
    {"name": "admin", "description": "Versions and the routing plan (canary, shadow, promote, rollback)"},
]
OPERATIONS: dict[str, Operation] = {
    "POST /{model}/feedback": {
        "tag": "monitoring", "summary": "The true outcome of answered predictions",
        "description": "One `{request_id, label, item}` or a list of up to 1,000; `request_id` is the "
                       "`X-Request-ID` of the answer, `item` its row in a batch. Answers which ids the "
                       "log has never seen.",
        "example": {"request_id": "try-it-out", "label": "Hungarian"}},
    "GET /admin/predictions": {
        "tag": "monitoring", "summary": "Logged predictions, newest first", "admin": True,
        "description": "Filter by `request_id`, `model` and `since`; at most `limit` (1,000) rows.",
        "parameters": {"model": "names", "limit": 5}},
    "GET /admin/drift": {
        "tag": "monitoring", "summary": "Drift of recent inputs against each version's training profile",
        "description": "Per served version: each feature's measure, its threshold and whether it drifted.",
        "admin": True, "parameters": {"model": "loans"}},
    "GET /admin/report": {
        "tag": "monitoring", "summary": "The monitoring report (HTML)", "admin": True, "html": True,
        "description": "Live accuracy, drift and latency per model and version, as one HTML page, "
                       "rendered by its own process every minute while it is being read (header "
                       "X-Report-Rendered-At); the first read after a quiet spell, or `fresh=true`, "
                       "waits for a render that begins now."},
    "GET /admin/models": {
        "tag": "admin", "summary": "Every version of every model, with metrics and lineage", "admin": True,
        "description": "What serves each model now, and every version in the store."},
    "GET /admin/routing": {
        "tag": "admin", "summary": "The routing plan, and what each worker has loaded", "admin": True,
        "description": "Per model: stable, canary and weight, shadow, rollback history, and for every "
                       "worker its plan revision, loaded versions and any load error."},
    "PUT /admin/routing/{model}": {
        "tag": "admin", "summary": "Change what serves a model", "admin": True,
        "description": "Loaded and smoke-tested first, durable before the answer, on every worker within "
                       "2 s.",
        "example": {"stable": "names:v1"}},
    "POST /admin/routing/{model}/promote": {
        "tag": "admin", "summary": "The canary becomes the stable", "admin": True,
        "description": "The old stable is kept for rollback."},
    "POST /admin/routing/{model}/rollback": {
        "tag": "admin", "summary": "Back to the previous stable", "admin": True,
        "description": "The current stable is unloaded once every worker has swapped."},
    "POST /admin/rollouts/{model}": {
        "tag": "admin", "summary": "Roll a challenger out step by step, judged on live evidence",
        "admin": True,
        "description": "The challenger moves through the plan's traffic steps (or `steps` here); at each "
                       "step errors, p99 latency, class shares and, where feedback has arrived, live "
                       "accuracy are compared with the stable's. A clear loss rolls back at once; passing "
                       "every step promotes.",
        "example": {"tag": "titanic:v2", "steps": [5, 25, 50, 100], "interval": 60}},
    "GET /admin/rollouts": {
        "tag": "admin", "summary": "Running and ended rollouts, and every loop event with its evidence",
        "admin": True,
        "description": "Rollouts with their last analysis, and the newest events (rollout decisions, "
                       "scheduled drift checks, triggered retraining and its gate).",
        "parameters": {"model": "titanic", "limit": 20}},
    "POST /admin/rollouts/{model}/abort": {
        "tag": "admin", "summary": "Stop the running rollout and route its traffic back to the stable",
        "admin": True, "description": "The challenger stays registered; the stable serves throughout."},
}
