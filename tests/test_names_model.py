"""The surname model: one normalisation, batch-independent answers, honest log-probabilities, saving."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from bentos.names.model import MAX_NAME_CHARS, UNK, NationalityModel, Vocabulary, normalise
from bentos.names.schemas import NameRequest

NAMES = ["Jordan", "Müller", "Nguyen", "O'Brien", "Papadopoulos", "Li", "Van der Berg", "x" * 80,
         "Łukasz-Żuk", "7"]


@pytest.fixture(scope="module")
def untrained() -> NationalityModel:
    torch.manual_seed(0)
    return NationalityModel.create([f"class{i}" for i in range(6)], {"hidden_size": 16, "embedding_dim": 8})


@pytest.fixture(scope="module")
def tiny_run():
    from bentos.names.pipeline import TINY, train

    return train(TINY)


@pytest.mark.parametrize(("a", "b"), [
    ("Müller", "muller"), ("JORDAN", "jordan"), ("  Jordan  ", "jordan"), ("Dvořák", "dvorak"),
    ("Łukasiewicz", "lukasiewicz"), ("Strauß", "STRAUSS"), ("O’Brien", "o brien"),
    ("O'Brien", "O Brien"), ("St. John", "st john"), ("Van  der\tBerg", "van der berg"),
])
def test_normalise_folds_case_accents_and_typography(a: str, b: str) -> None:
    assert normalise(a) == normalise(b)
    assert normalise(a) == normalise(a).lower()


def test_unknown_characters_map_to_unk_and_long_names_are_cut() -> None:
    vocabulary = Vocabulary()
    assert vocabulary.encode(normalise("ab7"))[-1] == UNK
    assert vocabulary.encode("") == [UNK]
    assert len(vocabulary.encode("a" * 500)) == MAX_NAME_CHARS


def test_batch_answers_equal_one_by_one(untrained: NationalityModel) -> None:
    together = untrained.top_n(NAMES, 6)
    for name, (labels, log_probs) in zip(NAMES, together, strict=True):
        [(one_labels, one_log_probs)] = untrained.top_n([name], 6)
        assert labels == one_labels
        assert log_probs == pytest.approx(one_log_probs, abs=1e-5)


def test_probabilities_are_descending_log_probabilities(untrained: NationalityModel) -> None:
    for labels, log_probs in untrained.top_n(NAMES, 3):
        assert len(labels) == len(set(labels)) == 3
        assert log_probs == sorted(log_probs, reverse=True)
        assert all(p <= 0 for p in log_probs)
        assert sum(math.exp(p) for p in log_probs) <= 1 + 1e-6
    [(_, every)] = untrained.top_n(["Jordan"], 6)
    assert sum(math.exp(p) for p in every) == pytest.approx(1, abs=1e-5)


def test_top_n_refuses_more_than_the_classes(untrained: NationalityModel) -> None:
    with pytest.raises(ValueError):
        untrained.top_n(["Jordan"], 7)
    assert untrained.top_n([], 2) == []


def test_request_schema() -> None:
    assert NameRequest(name="  Jordan ").model_dump() == {"name": "Jordan", "n_predictions": 3}
    for bad in ({"name": "   "}, {"name": "1234"}, {"name": "a" * 65}, {"name": "Jordan", "n_predictions": 0},
                {"name": "Jordan", "n_predictions": 21}, {"n_predictions": 2}, {"name": "Jo", "extra": 1}):
        with pytest.raises(ValidationError):
            NameRequest.model_validate(bad)


def test_tiny_training_saves_a_loadable_version(tiny_run, tmp_path: Path) -> None:
    from bentos.names.pipeline import scores
    from data.names import load
    from fleet import store
    from fleet.training import split_indices

    assert tiny_run.tag.startswith("names:v")
    saved = store.get(tiny_run.tag)
    meta = saved.info.metadata
    for key in ("metrics", "per_class", "dataset", "params", "classes", "vocabulary", "input_schema",
                "label_meaning", "library_versions", "trained_at", "confidence", "examples"):
        assert key in meta, key
    assert {"source", "sha256", "splits", "class_balance"} <= set(meta["dataset"])
    assert {"test_top1_accuracy", "test_top3_accuracy", "test_macro_f1"} <= set(meta["metrics"])
    assert len(meta["classes"]) >= 15
    assert saved.info.labels == {"task": "multiclass-classification", "framework": "pytorch"}

    # The loaded weights reproduce the held-out figures the trained ones reported, to the last digit.
    loaded = NationalityModel.load(Path(saved.path))
    assert loaded.classes == meta["classes"]
    params = meta["params"]
    frame = load(per_class=params["per_class"], min_share=params["min_share"], seed=params["seed"],
                 max_rank=params.get("max_rank"))  # the store drops None values
    y = frame["label"].map({label: i for i, label in enumerate(loaded.classes)}).to_numpy()
    _, _, test_idx = split_indices(len(frame), stratify=y, seed=params["seed"])
    log_probs = loaded.log_probs(frame["name"].iloc[test_idx].tolist()).numpy()
    assert scores(y[test_idx], log_probs, loaded.classes)["metrics"].items() <= meta["metrics"].items()

    loaded.save(tmp_path)
    assert NationalityModel.load(tmp_path).top_n(NAMES, 5) == loaded.top_n(NAMES, 5)


def test_the_confidence_flag_follows_the_top_probability(tiny_run) -> None:
    """The service's additive ``confident`` field and the card's figures use one threshold."""
    from bentos.names.model import CONFIDENT_PROBABILITY
    from bentos.names.pipeline import EXAMPLES
    from fleet import store

    meta = store.get(tiny_run.tag).info.metadata
    assert meta["confidence"]["threshold"] == CONFIDENT_PROBABILITY
    assert 0 <= meta["confidence"]["test_share_confident"] <= 1
    assert [row["input"] for row in meta["examples"]] == EXAMPLES
    for row in meta["examples"]:
        top = float(row["answer"].split(",")[0].rsplit(" ", 1)[1])
        assert row["confident"] == (top >= CONFIDENT_PROBABILITY) or abs(top - CONFIDENT_PROBABILITY) < 0.01


def test_training_again_takes_the_next_version(tiny_run) -> None:
    from bentos.names.pipeline import TINY, train
    from fleet import store

    first = int(tiny_run.tag.split(":v")[1])
    second = train({**TINY, "epochs": 1})
    assert second.tag == f"names:v{first + 1}"
    assert store.latest("names") == second.tag


def test_the_names_card_has_a_confusion_summary(routing_plan: Path) -> None:
    """Names records per-class results, not a matrix; its card still shows how each class is confused."""
    from fleet.cards import card
    from fleet.routing import load_plan

    text = card(load_plan(routing_plan)["names"].stable)
    section = text.split("## Confusion summary (test split)")[1].split("\n## ")[0]
    assert section.count("\n| ") >= 4 and "accuracy" in section and "most confused with" in section
    assert "## Answers to expect" in text and "| Jordan |" in text
    assert "## When the answer is flagged not confident" in text


def test_a_version_saved_before_pooling_loads_as_last_state_pooling(tmp_path: Path) -> None:
    """Versions saved before the max-pooling option have no ``pooling`` in their config: they load as
    the final-state network they were trained as."""
    import json

    torch.manual_seed(0)
    old = NationalityModel.create([f"class{i}" for i in range(4)],
                                  {"hidden_size": 16, "embedding_dim": 8, "pooling": "last"})
    old.save(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["hyper"]["pooling"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = NationalityModel.load(tmp_path)
    assert loaded.network.pooling == "last"
    assert loaded.top_n(NAMES, 4) == old.top_n(NAMES, 4)
