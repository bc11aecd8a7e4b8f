"""The loans routes as the docs page shows them (``fleet.openapi``): gateway paths, examples that work."""

from bentos.loans.schemas import EXAMPLE
from fleet.openapi import Operation, Tag

TAG: Tag = {"name": "loans", "description": "Credit card approval, gradient boosting on AER/CreditCard "
            "(seed 001: `/predict`, `/predict_batch`, `/train`)"}
OPERATIONS: dict[str, Operation] = {
    "POST /loans/predict": {
        "tag": "loans", "summary": "Approve one application",
        "description": "`prediction` 1 (approved) or 0, the calibrated probability of approval and the "
                       "model version. Every field is required; types are strict.",
        "example": EXAMPLE, "answer": {"prediction": 1, "probability": 0.88, "model_version": "v1"}},
    "POST /loans/predict_batch": {
        "tag": "loans", "summary": "Approve up to 1,000 applications in one call",
        "description": "A JSON array of applications; the answers keep their order.",
        "example": [EXAMPLE, {**EXAMPLE, "income": 1.5, "reports": 3, "owner": False}]},
    "POST /loans/train": {
        "tag": "loans", "summary": "Train a new version; it serves only if it passes the gate",
        "description": "Trains in a subprocess into vN+1, compares it with the stable on the same "
                       "held-out split (ROC AUC) and adopts it on every worker if it is not worse. "
                       "Admin token required.",
        "example": {"max_iter": 100, "learning_rate": 0.05}, "admin": True},
}
