"""The topic encoder served as plain torch calls embeds every text as transformers' BertModel does,
and an encoder it cannot reproduce, or a fused form that disagrees, serves through transformers."""

from __future__ import annotations

import copy

import pytest
import torch

from bentos.topics import fused_encoder
from bentos.topics.fused_encoder import FusedEncoder
from bentos.topics.model import PROBES, Encoder, TopicModel, base_model_path

TEXTS = [
    "Linear Algebra",
    "Introduction to Organic Chemistry",
    "Machine learning for signal processing with applications to wireless communication networks",
    "Ünïcödé — 日本語の講義 😀",
    "x",
    "Advanced topics " * 100,  # cut at the token limit
]


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    """The packaged MiniLM, fused as a loaded topic model fuses it."""
    loaded = Encoder.load(base_model_path())
    loaded.fuse()
    return loaded


def test_fused_embeddings_equal_transformers_alone_padded_and_cut(encoder) -> None:
    assert encoder._fast is not None, "the served encoder did not fuse"
    for texts in ([TEXTS[0]], TEXTS, TEXTS[2:4], [TEXTS[-1]]):
        expected = encoder.embed(texts)
        served = encoder.embed(texts, served=True)
        assert served.shape == (len(texts), encoder.dimension)
        assert float((served - expected).abs().max()) <= fused_encoder.TOLERANCE
    # each text embeds as it does alone, whatever else shares its batch (padding changes nothing)
    alone = torch.cat([encoder.embed([text], served=True) for text in TEXTS])
    assert float((alone - encoder.embed(TEXTS, served=True)).abs().max()) <= fused_encoder.TOLERANCE


def test_the_served_model_ranks_as_the_trained_one(encoder) -> None:
    head = torch.nn.Linear(encoder.dimension, 3)
    torch.manual_seed(0)
    torch.nn.init.normal_(head.weight)
    model = TopicModel(encoder, head, ["arts", "science", "law"], {})
    trained = model.classify(TEXTS, top_k=3)
    served = model.serve(TEXTS, top_k=3)
    assert [[c for c, _ in row] for row in served] == [[c for c, _ in row] for row in trained]
    assert all(abs(s - t) <= 1e-5 for srow, trow in zip(served, trained, strict=True)
               for (_, s), (_, t) in zip(srow, trow, strict=True))


def test_an_encoder_of_another_kind_is_served_by_transformers(encoder) -> None:
    other = copy.deepcopy(encoder.model)
    other.config.hidden_act = "relu"
    with pytest.raises(TypeError, match="not an encoder this folds"):
        FusedEncoder(other)
    batches = [encoder.tokens(list(texts)) for texts in PROBES]
    zeros = [torch.zeros(len(b["input_ids"]), 384) for b in batches]
    assert fused_encoder.fused(other, batches, zeros) is None


def test_a_fused_form_that_disagrees_is_not_served(encoder) -> None:
    batches = [encoder.tokens(list(texts)) for texts in PROBES]
    with torch.inference_mode():
        expected = [encoder.trained(b) for b in batches]
    assert fused_encoder.fused(encoder.model, batches, expected) is not None
    off = [e.clone() for e in expected]
    off[1][2, 0] += 1e-3  # one component of the padded batch's last embedding
    assert fused_encoder.fused(encoder.model, batches, off) is None
