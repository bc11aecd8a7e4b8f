"""Drift's first step: logged inputs as basic features, each numeric or categorical (lists of tokens).

A model declares each input field's kind (``KINDS``); text becomes its length, words and characters,
an image (8×8 or any square array of pixels) its mean, contrast, ink share and ink centre, so
``fleet.drift`` only ever compares numbers and categories.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

KINDS = ("numeric", "categorical", "text", "image")
MISSING = "__missing__"
_WORD = re.compile(r"\w+")


def _columns(data: Any, names: Iterable[str]) -> dict[str, list[Any]]:
    """A DataFrame, a list of records or a dict of columns → {feature: values}; absent keys are None."""
    if hasattr(data, "to_dict") and hasattr(data, "columns"):
        data = data.to_dict(orient="list")
    if isinstance(data, Mapping):
        return {n: list(data.get(n, [])) for n in names}
    records = list(data)
    return {n: [r.get(n) if isinstance(r, Mapping) else None for r in records] for n in names}


def _number(value: Any) -> float:
    if value is None or isinstance(value, str):
        return float("nan")
    try:
        number = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return number if np.isfinite(number) else float("nan")


def _category(value: Any) -> list[str]:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return [MISSING]
    return [str(value)]


def _text_parts(values: list[Any]) -> dict[str, tuple[str, list[Any]]]:
    texts = [v if isinstance(v, str) else None for v in values]
    return {
        "length": ("numeric", [float(len(t)) if t is not None else float("nan") for t in texts]),
        "words": ("categorical", [_WORD.findall(t.lower()) or [""] if t is not None else [MISSING]
                                  for t in texts]),
        "chars": ("categorical", [[c for c in t.lower() if not c.isspace()] or [""] if t is not None
                                  else [MISSING] for t in texts]),
    }


def _as_images(values: list[Any]) -> np.ndarray | None:
    """``(n, h, w)`` when every value is a finite image of one shape (flat squares are reshaped)."""
    try:
        images = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        return None
    if images.ndim == 2 and images.shape[1] and int(np.sqrt(images.shape[1])) ** 2 == images.shape[1]:
        side = int(np.sqrt(images.shape[1]))
        images = images.reshape(len(images), side, side)
    if images.ndim != 3 or not images.size or not np.isfinite(images).all():
        return None
    return images


def _image_stats(images: np.ndarray) -> np.ndarray:
    """Per image: mean, std, ink share (pixels over a quarter of its brightest) and ink centre (row,
    column, 0..1)."""
    flat = images.reshape(len(images), -1)
    peak = flat.max(axis=1, keepdims=True)
    ink = ((flat > 0.25 * peak) & (peak > 0)).mean(axis=1)
    weight = images.clip(min=0)
    total = weight.sum(axis=(1, 2))
    safe = np.where(total > 0, total, 1)
    rows = np.arange(images.shape[1]) / max(1, images.shape[1] - 1)
    cols = np.arange(images.shape[2]) / max(1, images.shape[2] - 1)
    row = np.where(total > 0, (weight.sum(axis=2) * rows).sum(axis=1) / safe, 0.5)
    col = np.where(total > 0, (weight.sum(axis=1) * cols).sum(axis=1) / safe, 0.5)
    return np.stack([flat.mean(axis=1), flat.std(axis=1), ink, row, col], axis=1)


def _image_parts(values: list[Any]) -> dict[str, tuple[str, list[Any]]]:
    """Image statistics per record; records that are not images of the common shape count as missing."""
    stats = np.full((len(values), 5), np.nan)
    images = _as_images(values)
    if images is not None:
        stats = _image_stats(images)
    else:
        for i, value in enumerate(values):
            one = _as_images([value])
            if one is not None:
                stats[i] = _image_stats(one)[0]
    names = ("mean", "std", "ink", "row_centre", "col_centre")
    return {name: ("numeric", stats[:, i].tolist()) for i, name in enumerate(names)}


def basic_features(data: Any, kinds: Mapping[str, str]) -> dict[str, tuple[str, list[Any]]]:
    """{feature: (numeric|categorical, per-record values)}; text and images expand to several."""
    unknown = set(kinds.values()) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown kinds {sorted(unknown)}; use {KINDS}")
    columns = _columns(data, kinds)
    features: dict[str, tuple[str, list[Any]]] = {}
    for name, kind in kinds.items():
        values = columns[name]
        if kind == "numeric":
            features[name] = ("numeric", [_number(v) for v in values])
        elif kind == "categorical":
            features[name] = ("categorical", [_category(v) for v in values])
        else:
            parts = _text_parts(values) if kind == "text" else _image_parts(values)
            features |= {f"{name}.{part}": value for part, value in parts.items()}
    return features
