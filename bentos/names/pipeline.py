"""Train a new version of the surname model and save it to the store (CLI and the service's retraining)."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bentos.names.model import CONFIDENT_PROBABILITY, HYPER_DEFAULTS, MAX_NAME_CHARS, NationalityModel, batch
from bentos.names.schemas import NameRequest
from data.name_text import NORMALISATION
from data.names import MAX_RANK, MIN_SHARE, PER_CLASS
from fleet import drift, store
from fleet.training import SEED, Timer, TrainingRun, progress, split_indices

NAME = "names"
# One torch thread: on a shared, busy 2-core host two threads spun against other work and trained several
# times slower than one (as the digits CNN found), and one thread keeps a rerun's arithmetic identical.
DEFAULTS: dict[str, Any] = {
    **HYPER_DEFAULTS,
    "per_class": PER_CLASS, "min_share": MIN_SHARE, "max_rank": MAX_RANK, "epochs": 8, "patience": 2,
    # 256 names a step at a slightly higher rate, tried together with 6,000 names a class (81.1 % top-1,
    # 93.7 % top-3): half the steps through the GRU's per-character loop for the larger sample.
    "batch_size": 256, "learning_rate": 4e-3,
    # Classes hold 1,021-6,000 names. Unweighted, the small ones lost to the big ones against the
    # 3,000-a-class model (held out: Portuguese 69.9 -> 60.7 %, Spanish 59.5 -> 57.5 %, Japanese 89.5 ->
    # 87.5 %); weights of (largest / own count) ** 0.5 give 69.0, 62.7 and 91.8 %, and Jordan a flat
    # answer again, for 81.1 -> 80.6 % top-1 and 93.7 -> 93.6 % top-3 overall.
    "class_weight_power": 0.5,
    "weight_decay": 0.0, "threads": 1, "seed": SEED,
}
TINY: dict[str, Any] = {"per_class": 30, "epochs": 2, "hidden_size": 16, "embedding_dim": 8}
# The card's "answers to expect": the seed's and README's examples (Jordan, Chen, Kim, Nguyen), names
# spread over many countries (Smith), and clear cases of several classes.
EXAMPLES = ["Jordan", "Smith", "Chen", "Kim", "Nguyen", "Nakamura", "Müller", "Rossi", "Papadopoulos",
            "Kowalski", "Yilmaz", "O'Brien", "Dvořák", "Andersson"]


CARD = {
    "source": "names-dataset 3.3.1 (Philippe Remy): surnames with the countries of their bearers, "
              "from the 2021 Facebook user data",
    "licence": "names-dataset, Apache-2.0 (the underlying data was scraped from a leak; use with care)",
    "label": "the country (group) where a clear majority of a surname's bearers live, "
             "not the bearer's ethnicity or nationality",
    "limitations": [
        "Facebook users only: countries with few users (e.g. Vietnam, Korea) are missing or thin.",
        "Widely spread surnames (Jordan, Smith, Silva, Chen) are not in the training data: no country "
        "holds a clear majority of their bearers. Their answers are guesses: many get a flat ranking, "
        "which the service flags confident: false, but some still get a high score from their letters "
        "alone (see Answers to expect), so the flag is a hint, not a guarantee.",
        "There is no Korean or Vietnamese class (the data has no Vietnam and few Korean users), so Kim "
        "and Nguyen get the nearest class the model knows, sometimes with a high score the confidence "
        "flag cannot catch.",
    ],
    "misuse": ["Never infer a person's ethnicity, nationality or immigration status from a name."],
    "reproducibility": "Seeded sampling, split, initialisation and batch order on one torch thread: a second "
                       "run with the same seed on the same machine and library versions gives the same "
                       "figures. Another CPU or torch build can round the GRU's floats differently, so the "
                       "held-out figures may move in the third decimal there; the training time depends "
                       "on the host and its load.",
}

def train(params: dict[str, Any] | None = None) -> TrainingRun:
    """Fit on the training split, keep the best epoch on validation, report on the test split, save."""
    from data.names import LABEL_COUNTRIES, LABEL_MEANING, SOURCE, load

    timer = Timer()
    params = {**DEFAULTS, **(params or {})}
    torch.manual_seed(params["seed"])
    torch.set_num_threads(params["threads"])
    frame = load(per_class=params["per_class"], min_share=params["min_share"], seed=params["seed"],
                 max_rank=params["max_rank"])
    classes = sorted(frame["label"].unique())
    y = frame["label"].map({label: i for i, label in enumerate(classes)}).to_numpy()
    train_idx, val_idx, test_idx = split_indices(len(frame), stratify=y, seed=params["seed"])
    names = frame["name"].tolist()

    model = NationalityModel.create(classes, params)
    best_epoch, val_accuracy = fit(model, names, y, train_idx, val_idx, params)
    log_probs = model.log_probs([names[i] for i in test_idx]).numpy()
    test = scores(y[test_idx], log_probs, classes)
    metrics = {**test.pop("metrics"), "val_top1_accuracy": val_accuracy}
    confidence = confidence_split(y[test_idx], log_probs)

    tag = store.save(
        NAME,
        model.save,
        labels={"task": "multiclass-classification", "framework": "pytorch"},
        metadata={
            "training_seconds": timer.seconds(),
            "drift_profile": drift.profile({"name": [names[i] for i in train_idx]}, {"name": "text"}),
            "card": CARD,
            "metrics": metrics,
            "per_class": test["per_class"],
            "confidence": confidence,
            "examples": examples(model),
            "classes": classes,
            "label_meaning": LABEL_MEANING,
            "label_countries": {label: list(LABEL_COUNTRIES[label]) for label in classes},
            "dataset": {
                "source": SOURCE, **store.fingerprint(frame),
                "rule": f"a country group holds >= {params['min_share']} of the bearers and one of its "
                        f"countries ranks the name within {params['max_rank'] or 'its whole list'}",
                "splits": {"train": len(train_idx), "val": len(val_idx), "test": len(test_idx)},
                "class_balance": {k: int(v) for k, v in frame["label"].value_counts().sort_index().items()},
            },
            "params": params,
            "training": {"best_epoch": best_epoch, "epochs": params["epochs"]},
            "vocabulary": {"alphabet": model.vocabulary.alphabet, "size": len(model.vocabulary),
                           "pad": 0, "unk": 1, "max_name_chars": MAX_NAME_CHARS,
                           "normalisation": NORMALISATION},
            "input_schema": NameRequest.model_json_schema(),
        },
    )
    return TrainingRun(tag=tag, metrics=metrics, seconds=timer.seconds(),
                       details={"per_class": test["per_class"], "best_epoch": best_epoch})


def fit(model: NationalityModel, names: list[str], y: np.ndarray, train_idx: np.ndarray,
        val_idx: np.ndarray, params: dict[str, Any]) -> tuple[int, float]:
    """Adam on shuffled mini-batches with a cosine-decaying rate; the best validation epoch is kept, and
    training stops once ``patience`` epochs in a row have not beaten it (the rest would only cost time)."""
    encoded = model.encode(names)
    targets = torch.tensor(y, dtype=torch.long)
    val_codes, val_lengths = batch([encoded[i] for i in val_idx])
    optimiser = torch.optim.Adam(model.network.parameters(), lr=params["learning_rate"],
                                 weight_decay=params["weight_decay"])
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=params["epochs"])
    generator = torch.Generator().manual_seed(params["seed"])
    weights = class_weights(y[train_idx], len(model.classes), params.get("class_weight_power", 0.0))
    best: tuple[float, int, dict[str, Tensor]] = (-1.0, 0, {})
    for epoch in range(1, params["epochs"] + 1):
        order = train_idx[torch.randperm(len(train_idx), generator=generator).numpy()]
        loss = _epoch(model.network, optimiser, encoded, targets, order, params["batch_size"], weights)
        schedule.step()
        model.network.eval()
        with torch.inference_mode():
            predicted = model.network(val_codes, val_lengths).argmax(dim=1)
        accuracy = round(float((predicted == targets[val_idx]).float().mean()), 4)
        progress(NAME, epoch, params["epochs"], train_loss=loss, val_accuracy=accuracy)
        if accuracy > best[0]:
            best = (accuracy, epoch, copy.deepcopy(model.network.state_dict()))
        elif epoch - best[1] >= params["patience"]:
            break
    model.network.load_state_dict(best[2])
    model.network.eval()
    return best[1], best[0]


def class_weights(y: np.ndarray, n_classes: int, power: float) -> Tensor:
    """Per-class loss weights ``(largest count / count) ** power``, scaled so an average name weighs 1:
    0 weighs every name alike, 1 every class alike."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64).clip(1, None)
    weights = (counts.max() / counts) ** power
    return torch.tensor(weights * counts.sum() / (weights * counts).sum(), dtype=torch.float32)


def _epoch(network: nn.Module, optimiser: torch.optim.Optimizer, encoded: list[list[int]],
           targets: Tensor, order: np.ndarray, batch_size: int, weights: Tensor | None = None) -> float:
    """One pass over the training split in mini-batches; returns the mean (class-weighted) cross-entropy."""
    network.train()
    total = 0.0
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        codes, lengths = batch([encoded[i] for i in chunk])
        loss = nn.functional.cross_entropy(network(codes, lengths), targets[chunk], weight=weights)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        total += loss.item() * len(chunk)
    return total / len(order)


def confidence_split(y: np.ndarray, log_probs: np.ndarray) -> dict[str, Any]:
    """How the test answers fare on either side of the ``confident`` threshold the service applies."""
    top = np.exp(log_probs.max(axis=1)) >= CONFIDENT_PROBABILITY
    right = log_probs.argmax(axis=1) == y

    def accuracy(mask: np.ndarray) -> float | None:
        return round(float(right[mask].mean()), 4) if mask.any() else None

    return {"threshold": CONFIDENT_PROBABILITY, "test_share_confident": round(float(top.mean()), 4),
            "test_top1_accuracy_confident": accuracy(top), "test_top1_accuracy_not_confident": accuracy(~top)}


def examples(model: NationalityModel) -> list[dict[str, Any]]:
    """The trained model's top three for each of ``EXAMPLES``, with probabilities and the flag."""
    rows = []
    for name, (labels, log_probs) in zip(EXAMPLES, model.top_n(EXAMPLES, 3), strict=True):
        shown = ", ".join(f"{label} {np.exp(p):.2f}" for label, p in zip(labels, log_probs, strict=True))
        rows.append({"input": name, "answer": shown,
                     "confident": bool(np.exp(log_probs[0]) >= CONFIDENT_PROBABILITY)})
    return rows


def scores(y: np.ndarray, log_probs: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Held-out top-1, top-3 and macro-F1, and for each class its accuracy and most confused other class."""
    from sklearn.metrics import confusion_matrix, f1_score

    predicted = log_probs.argmax(axis=1)
    top3 = np.argsort(-log_probs, axis=1)[:, :3]
    metrics = {
        "test_top1_accuracy": round(float((predicted == y).mean()), 4),
        "test_top3_accuracy": round(float((top3 == y[:, None]).any(axis=1).mean()), 4),
        "test_macro_f1": round(float(f1_score(y, predicted, average="macro")), 4),
    }
    matrix = confusion_matrix(y, predicted, labels=range(len(classes)))
    per_class = {}
    for i, label in enumerate(classes):
        row = matrix[i].copy()
        support = int(row.sum())
        row[i] = -1
        other = int(row.argmax())
        per_class[label] = {
            "support": support,
            "accuracy": round(float(matrix[i, i]) / support, 4) if support else None,
            "most_confused_with": classes[other] if row[other] > 0 else None,
            "confused_share": round(float(row[other]) / support, 4) if row[other] > 0 else None,
        }
    return {"metrics": metrics, "per_class": per_class}
