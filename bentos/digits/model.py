"""The two digit models, both reading ``(n, 8, 8)`` arrays of 0..16 ink: an RBF SVM and a small CNN.

Both answer ``predict(images) -> (labels, scores)`` where the score is the probability of the label,
and the label is the argmax of the same probabilities, so the two never disagree. ``predict`` is the
model as trained and evaluated; ``serve`` is what the fleet serves: a faster form of the same model
(the SVM as matrix products, the CNN fused) when it answers as the trained one does, checked at load.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import torch
from sklearn.calibration import CalibratedClassifierCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.svm import SVC
from torch import nn

from bentos.digits.fused_cnn import FusedDigits, fused
from data.digits import load as load_digits
from fleet.compiled_svc import CompiledSVC

SIZE = 8
CLASSES = list(range(10))
SKLEARN_FILE = "pipeline.joblib"
WEIGHTS_FILE = "weights.pt"
CONFIG_FILE = "config.json"
BATCH = 1024  # CNN inference chunk: bounds memory for big batches


def _as_batch(images: np.ndarray) -> np.ndarray:
    """``(n, 8, 8)`` float; a single ``(8, 8)`` image becomes a batch of one."""
    array = np.asarray(images, dtype=np.float32)
    if array.shape == (SIZE, SIZE):
        array = array[None]
    if array.ndim != 3 or array.shape[1:] != (SIZE, SIZE):
        raise ValueError(f"expected images of shape (n, {SIZE}, {SIZE}), got {array.shape}")
    return array


def _answer(proba: np.ndarray) -> tuple[list[int], list[float]]:
    labels = proba.argmax(axis=1)
    return [int(k) for k in labels], [float(p) for p in proba[np.arange(len(proba)), labels]]


def _flatten(images: np.ndarray) -> np.ndarray:
    return np.asarray(images, dtype=np.float64).reshape(len(images), -1)


def build_sklearn(params: dict[str, Any]) -> Pipeline:
    """The seed's RBF SVM on the 64 raw pixels, its scores turned into probabilities.

    Temperature scaling (one parameter, fitted on cross-validated scores) keeps the SVM's ranking of
    the digits; ``SVC(probability=True)`` is deprecated in scikit-learn 1.9.
    """
    svm = SVC(C=params["C"], gamma=params["gamma"])
    calibrated = CalibratedClassifierCV(
        svm, method="temperature", cv=params["calibration_folds"], ensemble=False
    )
    return make_pipeline(FunctionTransformer(_flatten), calibrated)


class SklearnDigits:
    """A fitted scikit-learn pipeline: ``(n, 8, 8)`` images → digits and their probabilities."""

    framework = "sklearn"

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self._fast = _compiled(pipeline)

    @classmethod
    def fit(cls, images: np.ndarray, labels: np.ndarray, params: dict[str, Any]) -> SklearnDigits:
        return cls(build_sklearn(params).fit(_as_batch(images), labels))

    @classmethod
    def load(cls, folder: Path) -> SklearnDigits:
        return cls(joblib.load(Path(folder) / SKLEARN_FILE))

    def save(self, folder: Path) -> None:
        joblib.dump(self.pipeline, Path(folder) / SKLEARN_FILE)

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """``(n, 10)`` probabilities, columns in digit order (the trained pipeline)."""
        batch = _as_batch(images)
        if not len(batch):
            return np.zeros((0, len(CLASSES)))
        return self.pipeline.predict_proba(batch)

    def served_proba(self, images: np.ndarray) -> np.ndarray:
        """``predict_proba`` through the compiled form when there is one."""
        batch = _as_batch(images)
        if self._fast is None or not len(batch):
            return self.predict_proba(batch)
        return self._fast.predict_proba(_flatten(batch))

    def predict(self, images: np.ndarray) -> tuple[list[int], list[float]]:
        return _answer(self.predict_proba(images))

    def serve(self, images: np.ndarray) -> tuple[list[int], list[float]]:
        return _answer(self.served_proba(images))


def _compiled(pipeline: Pipeline) -> CompiledSVC | None:
    """The SVM as matrix products (``fleet.compiled_svc``) if it answers a hundred real digits and a
    blank image as the pipeline does; otherwise None, and the pipeline serves."""
    fast = CompiledSVC.of(pipeline)
    if fast is None:
        return None
    return fast if fast.matches(pipeline, _probes()) else None


@functools.cache
def _probes() -> np.ndarray:
    """A blank image and a hundred real digits of every class: what a served form must answer alike.

    Read once per process (reading the digits takes ~30 ms, and every load of either model checks
    its served form against them); read-only, since every load shares it."""
    probes = np.concatenate([np.zeros((1, SIZE, SIZE)), load_digits()[0][::18]]).astype(np.float32)
    probes.setflags(write=False)
    return probes


class DigitNet(nn.Module):
    """Two 3×3 conv blocks on the 1×8×8 image (8→4→2), then a linear layer over 10 digits."""

    def __init__(self, channels: int = 32, dropout: float = 0.25) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.BatchNorm2d(2 * channels), nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(2 * channels * 4, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class DigitEnsemble(nn.Module):
    """Several ``DigitNet``s trained from different seeds; the output is the log of their mean softmax,
    so a softmax of it is the averaged probability.

    Why: on 270 test images one net moved between 97.8 % and 100 % with the seed (split and start; one
    image is 0.37 points); averaging a few nets removes most of that luck at a few seconds each.
    """

    def __init__(self, members: int, channels: int = 32, dropout: float = 0.25) -> None:
        super().__init__()
        self.members = nn.ModuleList(DigitNet(channels, dropout) for _ in range(members))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probabilities = torch.stack([torch.softmax(net(x), dim=1) for net in self.members]).mean(dim=0)
        return torch.log(probabilities.clamp_min(1e-12))


def network(config: dict[str, Any]) -> DigitNet | DigitEnsemble:
    """One net, or an ensemble when the config names more than one member (older versions name none)."""
    members = config.get("members", 1)
    if members > 1:
        return DigitEnsemble(members, config["channels"], config["dropout"])
    return DigitNet(config["channels"], config["dropout"])


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """``(n, 1, 8, 8)`` in 0..1, the scale the network trains on."""
    return torch.from_numpy(_as_batch(images) / 16.0).unsqueeze(1)


class CnnDigits:
    """A trained ``DigitNet`` and its config; weights are a plain state_dict, loaded weights-only."""

    framework = "torch"

    def __init__(self, net: DigitNet | DigitEnsemble, config: dict[str, Any]) -> None:
        self.net = net.eval()
        self.config = config
        self._fast: FusedDigits | None = None  # the served form, made once the weights are final

    @classmethod
    def create(cls, config: dict[str, Any]) -> CnnDigits:
        return cls(network(config), config)

    @classmethod
    def load(cls, folder: Path) -> CnnDigits:
        folder = Path(folder)
        config = json.loads((folder / CONFIG_FILE).read_text())
        model = cls.create(config)
        state = torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        model.net.load_state_dict(state)
        model._fast = fused(model.net, to_tensor(_probes()))
        return model

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        torch.save(self.net.state_dict(), folder / WEIGHTS_FILE)
        (folder / CONFIG_FILE).write_text(json.dumps(self.config, indent=2))

    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """``(n, 10)`` softmax probabilities of the trained network, in chunks of BATCH."""
        self.net.eval()
        return self._probabilities(images, lambda chunk: torch.softmax(self.net(chunk), dim=1))

    def served_proba(self, images: np.ndarray) -> np.ndarray:
        """``predict_proba`` through the fused form when there is one."""
        if self._fast is None:
            return self.predict_proba(images)
        return self._probabilities(images, self._fast)

    def predict(self, images: np.ndarray) -> tuple[list[int], list[float]]:
        return _answer(self.predict_proba(images))

    def serve(self, images: np.ndarray) -> tuple[list[int], list[float]]:
        return _answer(self.served_proba(images))

    @staticmethod
    def _probabilities(images: np.ndarray, net: Callable[[torch.Tensor], torch.Tensor]) -> np.ndarray:
        tensor = to_tensor(images)
        with torch.inference_mode():
            parts = [net(chunk) for chunk in tensor.split(BATCH)]
        return torch.cat(parts).numpy().astype(np.float64) if parts else np.zeros((0, len(CLASSES)))
