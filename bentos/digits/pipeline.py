"""Train a new version of a digit model and save it to the store (CLI and retraining)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score
from torch import nn

from bentos.digits.images import INK_MAX, SIZE, decode, normalise
from bentos.digits.model import CLASSES, CnnDigits, SklearnDigits, to_tensor
from bentos.digits.schemas import SEED_JPEG, DigitRequest
from fleet import drift, store
from fleet.training import SEED, Timer, TrainingRun, progress, split_indices

NAMES = {"sklearn": "digits_sklearn", "cnn": "digits_cnn"}
DEFAULTS: dict[str, dict[str, Any]] = {
    # gamma: the best of 0.0005-0.003 (C 3-30 made no difference) by 5-fold CV on the training split
    # with the shifted copies: 99.36 % at 0.0015-0.003 against 99.21 % at 0.001 (2026-12-02).
    "sklearn": {
        "C": 10.0, "gamma": 0.0015, "calibration_folds": 5, "recentre": True, "shift": 1, "seed": SEED,
        "split_seed": SEED,
    },
    # The held-out split is the data's (``split_seed``); ``seed`` is the training run's. Over training
    # seeds SEED .. SEED+4 on that split: 99.63 % each (one error, image 1632), 51-88 s (2026-12-02).
    # Over five other splits (split_seed = seed = SEED .. SEED+4): 99.63 / 99.26 / 98.15 / 99.63 / 99.63 %.
    # SEED+2's test split holds five digits (1658, 1729, 418, 683, 421) that this net misses and the SVM
    # misses four of. None of these reached 99 % there (2026-12-02): 5 members x 60 epochs, 64 channels,
    # random rotations (+-10 degrees) and scaling, averaging over 1-pixel shifts at prediction, keeping
    # the epoch of lowest validation loss or breaking validation-accuracy ties by it. The best, rotations
    # with shift-averaging, won one image on SEED+1 and SEED+2 (98.52 %), at five times the prediction
    # cost, and validation did not prefer it: not adopted.
    "cnn": {
        "channels": 32, "dropout": 0.25, "epochs": 40, "batch_size": 64, "learning_rate": 3e-3,
        "weight_decay": 1e-4, "shift": 1, "train_fraction": 1.0, "torch_threads": 1, "members": 3,
        "seed": SEED, "split_seed": SEED,
    },
}
# For tests: seconds, not accuracy. The SVM is fast enough on all the data.
TINY: dict[str, dict[str, Any]] = {
    "sklearn": {},
    "cnn": {"channels": 16, "epochs": 6, "members": 2},
}
Model = SklearnDigits | CnnDigits


CARD = {
    "source": "scikit-learn load_digits: UCI Optical Recognition of Handwritten Digits (1,797 "
              "8x8 images, 0-16)",
    "licence": "UCI ML repository, CC BY 4.0",
    "label": "the digit 0-9 drawn in the image",
    "limitations": [
        "Learnt from 43 writers' handwriting; typed fonts are read less reliably.",
        "Any image is reduced to 8x8 grey levels: fine detail is lost.",
    ],
    "misuse": ["Not for reading cheques, forms or anything where a misread digit costs money."],
    "reproducibility": "digits_sklearn is deterministic (libsvm, a fixed split and calibration folds). "
                       "digits_cnn is seeded and trained on one thread, so a second run on the same machine "
                       "repeats it; a different CPU or torch build can round convolutions differently, "
                       "pick another best epoch and move a single net by an image or two (0.37 points each) "
                       "-- the reason it averages several nets. On this split five training seeds gave "
                       "99.63 % each; which 270 images are held out matters more: over five random splits "
                       "one reached 98.15 % (five hard images). Training times depend on the host.",
}

def train(kind: str, params: dict[str, Any] | None = None) -> TrainingRun:
    """Fit on the training split (the CNN keeps its best epoch on validation), report on the held-out
    test split, and save as the next version with what it learnt from and how it scored."""
    from data.digits import load

    if kind not in NAMES:
        raise ValueError(f"unknown digits model {kind!r}; expected one of {sorted(NAMES)}")
    timer = Timer()
    params = {**DEFAULTS[kind], **(params or {})}
    images, labels = load()
    train_idx, val_idx, test_idx = split_indices(len(labels), stratify=labels, seed=params["split_seed"])
    if kind == "sklearn":
        fitted: Model = _fit_sklearn(images[train_idx], labels[train_idx], params)
    else:
        fitted = _fit_cnn(images, labels, train_idx, val_idx, params)
    metrics, confusion = _evaluate(fitted, images, labels, val_idx, test_idx)
    answers = examples(fitted, images[test_idx], labels[test_idx])
    tag = store.save(
        NAMES[kind],
        fitted.save,
        labels={"task": "image-classification", "framework": fitted.framework},
        metadata={
            "training_seconds": timer.seconds(),
            "drift_profile": drift.profile({"pixels": list(images[train_idx])}, {"pixels": "image"}),
            "card": CARD,
            "metrics": metrics,
            "confusion": confusion,
            "examples": answers,
            "dataset": {
                "source": "sklearn.datasets.load_digits",
                **store.fingerprint([(im.tolist(), int(y)) for im, y in zip(images, labels, strict=True)]),
                "splits": {"train": len(train_idx), "val": len(val_idx), "test": len(test_idx)},
                "class_balance": {str(k): int((labels == k).sum()) for k in CLASSES},
            },
            "params": params,
            "classes": CLASSES,
            "input": {"shape": [SIZE, SIZE], "range": [0.0, INK_MAX], "polarity": "ink high"},
            "input_schema": DigitRequest.model_json_schema(),
            "pixel_profile": pixel_profile(images[train_idx]),
        },
    )
    return TrainingRun(tag=tag, metrics=metrics, seconds=timer.seconds(), details={"confusion": confusion})


def examples(fitted: Model, test_images: np.ndarray, test_labels: np.ndarray) -> list[dict[str, Any]]:
    """The card's "answers to expect": the seed README's JPEG of an eight, as the service decodes it,
    and the first test image of each digit."""
    picks = [("seed 002 README's JPEG (an eight)", decode(SEED_JPEG))]
    picks += [(f"first test image of a {d}", test_images[np.flatnonzero(test_labels == d)[0]])
              for d in CLASSES if (test_labels == d).any()]
    predicted, score = fitted.predict(np.stack([image for _, image in picks]))
    return [{"input": name, "prediction": int(p), "score": round(float(q), 3)}
            for (name, _), p, q in zip(picks, predicted, score, strict=True)]


def train_all(params: dict[str, dict[str, Any]] | None = None) -> list[TrainingRun]:
    """Both models, each with its own entry of ``params`` (e.g. ``TINY``)."""
    params = params or {}
    return [train(kind, params.get(kind)) for kind in NAMES]


def pixel_profile(images: np.ndarray) -> dict[str, Any]:
    """What the training inputs look like, so served inputs can be compared with them for drift."""
    return {
        "mean": round(float(images.mean()), 4),
        "std": round(float(images.std()), 4),
        "ink_fraction": round(float((images > 0).mean()), 4),
        "mean_image": np.round(images.mean(axis=0), 3).tolist(),
        "std_image": np.round(images.std(axis=0), 3).tolist(),
    }


def recentred(images: np.ndarray) -> np.ndarray:
    """Each digit as ``decode`` sees it in a large image: cropped, centred and averaged back to 8×8.

    Re-centring moves a digit by up to half a pixel; the SVM, unlike the CNN, is not trained on
    shifts, and learning these copies too lifts it on large images (94 % → 98 %) at no cost on 8×8.
    """
    return np.stack([normalise(np.kron(image, np.ones((4, 4))) * (255 / INK_MAX)) for image in images])


def shifted_copies(images: np.ndarray, shift: int) -> list[np.ndarray]:
    """Each image moved ``shift`` pixels left, right, up and down, the edge it leaves filled with no ink.

    The SVM has no notion of neighbouring pixels, so a digit drawn a pixel off is a new point to it;
    learning these copies (a "virtual SVM") took it from 98.15 % to 99.26 % held out.
    """
    padded = np.pad(images, ((0, 0), (shift, shift), (shift, shift)))
    return [padded[:, shift + dy : shift + dy + SIZE, shift + dx : shift + dx + SIZE]
            for dy, dx in ((0, shift), (0, -shift), (shift, 0), (-shift, 0))]


def augmented(
    images: np.ndarray, labels: np.ndarray, params: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """The training images with their re-centred and shifted copies, each image's copies side by side.

    Side by side because the calibration folds (unshuffled, stratified) then take whole runs of one
    class: an image and its copies land in the same fold, so the temperature is fitted on scores of
    digits the fold's SVM has not seen in any form.
    """
    copies = [images]
    if params["recentre"]:
        copies.append(recentred(images))
    if params.get("shift", 0) > 0:
        copies += shifted_copies(images, params["shift"])
    stacked = np.stack(copies, axis=1)  # (n, copies, 8, 8)
    return stacked.reshape(-1, SIZE, SIZE), np.repeat(labels, len(copies))


def _fit_sklearn(images: np.ndarray, labels: np.ndarray, params: dict[str, Any]) -> SklearnDigits:
    images, labels = augmented(images, labels, params)
    fitted = SklearnDigits.fit(images, labels, params)
    progress(NAMES["sklearn"], 1, 1, train_accuracy=accuracy_score(labels, fitted.predict(images)[0]))
    return fitted


def _shifted(batch: torch.Tensor, shift: int, generator: torch.Generator) -> torch.Tensor:
    """Each image moved by up to ``shift`` pixels: decoded client images are rarely centred exactly."""
    if shift <= 0:
        return batch
    padded = nn.functional.pad(batch, (shift,) * 4)
    offsets = torch.randint(0, 2 * shift + 1, (len(batch), 2), generator=generator)
    return torch.stack([
        padded[i, :, dy : dy + SIZE, dx : dx + SIZE] for i, (dy, dx) in enumerate(offsets.tolist())
    ])


def _fit_cnn(
    images: np.ndarray, labels: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray, params: dict[str, Any]
) -> CnnDigits:
    """``members`` nets, each from its own seed (``seed``, ``seed + 1``, ...), averaged: DigitEnsemble."""
    members = params.get("members", 1)
    config = {"channels": params["channels"], "dropout": params["dropout"], "members": members}
    nets = [_fit_one_cnn(images, labels, train_idx, val_idx, {**params, "seed": params["seed"] + i}).net
            for i in range(members)]
    if members == 1:
        return CnnDigits(nets[0], config)
    ensemble = CnnDigits.create(config)
    for slot, net in zip(ensemble.net.members, nets, strict=True):
        slot.load_state_dict(net.state_dict())
    return CnnDigits(ensemble.net, config)


def _fit_one_cnn(
    images: np.ndarray, labels: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray, params: dict[str, Any]
) -> CnnDigits:
    """AdamW with a one-cycle schedule; the epoch with the best validation accuracy is kept."""
    torch.manual_seed(params["seed"])
    generator = torch.Generator().manual_seed(params["seed"])
    rng = np.random.default_rng(params["seed"])
    if params["train_fraction"] < 1.0:
        keep = max(10, int(len(train_idx) * params["train_fraction"]))
        train_idx = rng.choice(train_idx, keep, replace=False)
    x, y = to_tensor(images[train_idx]), torch.from_numpy(labels[train_idx])
    config = {"channels": params["channels"], "dropout": params["dropout"]}
    model = CnnDigits.create(config)
    optimiser = torch.optim.AdamW(
        model.net.parameters(), lr=params["learning_rate"], weight_decay=params["weight_decay"]
    )
    steps = -(-len(x) // params["batch_size"])
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=params["learning_rate"], total_steps=params["epochs"] * steps
    )
    best, best_state = -1.0, copy.deepcopy(model.net.state_dict())
    with _torch_threads(params["torch_threads"]):
        for epoch in range(1, params["epochs"] + 1):
            loss = _epoch(model, x, y, optimiser, schedule, params, generator)
            val_accuracy = accuracy_score(labels[val_idx], model.predict(images[val_idx])[0])
            progress(NAMES["cnn"], epoch, params["epochs"], loss=loss, val_accuracy=val_accuracy)
            if val_accuracy > best:
                best, best_state = val_accuracy, copy.deepcopy(model.net.state_dict())
    model.net.load_state_dict(best_state)
    return CnnDigits(model.net, config)


@contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    """Batches of 8×8 images are too small to share: on a busy 2-core host 2 threads ran 7× slower than 1."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _epoch(
    model: CnnDigits,
    x: torch.Tensor,
    y: torch.Tensor,
    optimiser: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    params: dict[str, Any],
    generator: torch.Generator,
) -> float:
    """One shuffled pass; returns the mean training loss."""
    model.net.train()
    order = torch.randperm(len(x), generator=generator)
    total = 0.0
    for batch in order.split(params["batch_size"]):
        optimiser.zero_grad()
        logits = model.net(_shifted(x[batch], params["shift"], generator))
        loss = nn.functional.cross_entropy(logits, y[batch])
        loss.backward()
        optimiser.step()
        schedule.step()
        total += loss.item() * len(batch)
    model.net.eval()
    return total / len(x)


def _evaluate(
    fitted: Model, images: np.ndarray, labels: np.ndarray, val_idx: np.ndarray, test_idx: np.ndarray
) -> tuple[dict[str, float], dict[str, Any]]:
    """Held-out test accuracy and macro-F1, validation accuracy, and where the test errors fall."""
    predicted = np.asarray(fitted.predict(images[test_idx])[0])
    truth = labels[test_idx]
    metrics = {
        "test_accuracy": round(float(accuracy_score(truth, predicted)), 4),
        "test_macro_f1": round(float(f1_score(truth, predicted, average="macro")), 4),
        "val_accuracy": round(float(accuracy_score(labels[val_idx], fitted.predict(images[val_idx])[0])), 4),
    }
    return metrics, confusion_summary(truth, predicted)


def confusion_summary(truth: np.ndarray, predicted: np.ndarray, top: int = 5) -> dict[str, Any]:
    """The full 10×10 matrix (rows true, columns predicted) and the most confused pairs."""
    matrix = confusion_matrix(truth, predicted, labels=CLASSES)
    off = [(int(matrix[t, p]), t, p) for t in CLASSES for p in CLASSES if t != p and matrix[t, p]]
    off.sort(key=lambda entry: (-entry[0], entry[1], entry[2]))
    pairs = [{"true": t, "predicted": p, "count": n} for n, t, p in off[:top]]
    return {"matrix": matrix.tolist(), "most_confused": pairs, "errors": sum(n for n, _, _ in off)}
