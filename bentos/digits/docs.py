"""The digits route as the docs page shows it (``fleet.openapi``): gateway path, the seed's example."""

from bentos.digits.schemas import SEED_JPEG
from fleet.openapi import Operation, Tag

TAG: Tag = {"name": "digits", "description": "Handwritten digit from an image, an SVC or a small CNN "
            "chosen by name (seed 002: `POST /predict/`)"}
OPERATIONS: dict[str, Operation] = {
    "POST /digits/predict": {
        "tag": "digits", "summary": "The digit in a base64 image",
        "description": "`model` is `clf.pickle`/`svm`/`sklearn` (the SVC) or `cnn`; any common image "
                       "format, optionally a data: URL, at most 2 MiB. The example is the seed's own "
                       "8×8 JPEG of an eight. The seed's path with its trailing slash works too.",
        "example": {"request_id": "123", "model": "clf.pickle", "image": SEED_JPEG},
        "answer": {"request_id": "123", "prediction": 8, "score": 0.97, "model_version": "v1"}},
}
