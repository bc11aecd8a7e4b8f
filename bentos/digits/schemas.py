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

    Names resolve only against this table, never against paths or the store's contents.
    """
    return MODEL_NAMES.get(name.strip().lower())


class DigitRequest(BaseModel):
    """``{"request_id", "model", "image"}`` as in the seed; its task statement spelt ``model`` ``modelo``."""

    model_config = ConfigDict(extra="forbid")

    request_id: Annotated[str, Field(min_length=1, max_length=128)]
    model: Annotated[
        str, Field(min_length=1, max_length=64, validation_alias=AliasChoices("model", "modelo"))
    ]
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
