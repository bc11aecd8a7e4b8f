"""The seed's request and response shapes, validated at the edge, and the names a request may use."""

from __future__ import annotations

from typing import Annotated

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from bentos.digits.images import MAX_IMAGE_CHARS

# Request name → store model. The seed's clients send "clf.pickle"; it was the SVM.
MODEL_NAMES: dict[str, str] = {
    "digits_sklearn": "digits_sklearn",
    "sklearn": "digits_sklearn",
    "svm": "digits_sklearn",
    "clf.pickle": "digits_sklearn",
    "digits_cnn": "digits_cnn",
    "cnn": "digits_cnn",
}


def resolve(name: str) -> str | None:
    """The store model a request's ``model`` names, or None (the service answers "Invalid model name").

    Names resolve only against this table, exactly as written (the spec lists them as an ``enum``),
    never against paths or the store's contents.
    """
    return MODEL_NAMES.get(name)


class DigitRequest(BaseModel):
    """``{"request_id", "model", "image"}`` as in the seed; its task statement spelt ``model`` ``modelo``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    request_id: Annotated[str, Field(min_length=1, max_length=128)]
    model: Annotated[
        str | None,
        Field(max_length=64, validation_alias=AliasChoices("model", "modelo"),
              json_schema_extra={"enum": [*MODEL_NAMES, None]},
              description="Which model answers; without it the answer is the seed's 400 "
                          '{"detail": "Model name is required"}, with a name not listed here '
                          '{"detail": "Invalid model name"}.'),
    ] = None
    image: Annotated[
        str,
        Field(
            min_length=1,
            max_length=MAX_IMAGE_CHARS,
            description="Base64 of a PNG, JPEG, GIF, BMP, WEBP… image, optionally a data: URL.",
        ),
    ]


class DigitPrediction(BaseModel):
    """The seed's ``request_id`` and ``prediction``, plus the label's probability and the model's tag."""

    request_id: str
    prediction: int
    score: float
    model_version: str


# The seed 002 README's own example request image: an 8×8 JPEG of an eight (docs, tests, benchmarks).
SEED_JPEG = (
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw8UHRofHh0aHBwgJC4nICIsIxwcKDcpLDAxND"
    "Q0Hyc5PTgyPC4zNDL/wAALCAAIAAgBAREA/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQA"
    "AAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNk"
    "ZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx"
    "8vP09fb3+Pn6/9oACAEBAAA/AOYitTJ8BgJYkn8tZJ4maMLFEpnC5EhXJnBVh5YYZR884Ar/2Q=="
)
