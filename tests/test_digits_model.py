"""Digits: image decoding and its refusals, both models on the seed's image and on large drawings."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bentos.digits import images as digit_images
from bentos.digits.images import ImageError, decode, decode_batch
from bentos.digits.model import CnnDigits, SklearnDigits
from bentos.digits.pipeline import TINY, augmented, confusion_summary, train_all
from bentos.digits.schemas import MODEL_NAMES, SEED_JPEG, DigitRequest, resolve
from data.digits import load
from fleet import store
from fleet.training import split_indices

MAX_BYTES, MAX_CHARS = digit_images.MAX_IMAGE_BYTES, digit_images.MAX_IMAGE_CHARS
MAX_PIXELS = digit_images.MAX_IMAGE_PIXELS

# The seed's example request: a JPEG of scikit-learn's first "8", white on black, 8×8.
SEED_IMAGE = SEED_JPEG


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    images, labels = load()
    return images, labels, split_indices(len(labels), stratify=labels)[2]


@pytest.fixture(scope="module")
def runs():
    """The SVM with its defaults (seconds on all the data) and a few-epoch CNN."""
    return train_all(TINY)


@pytest.fixture(scope="module")
def svm_run(runs):
    return runs[0]


@pytest.fixture(scope="module")
def cnn_run(runs):
    return runs[1]


def _load(tag: str) -> SklearnDigits | CnnDigits:
    cls = SklearnDigits if tag.startswith("digits_sklearn:") else CnnDigits
    return cls.load(Path(store.get(tag).path))


@pytest.fixture(scope="module")
def svm(svm_run) -> SklearnDigits:
    return _load(svm_run.tag)


@pytest.fixture(scope="module")
def cnn(cnn_run) -> CnnDigits:
    return _load(cnn_run.tag)


def _b64(image: Image.Image, fmt: str = "PNG", **options) -> str:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return base64.b64encode(buffer.getvalue()).decode()


def _b64_bytes(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _page(digit: np.ndarray, size: int = 200) -> Image.Image:
    """A sklearn digit as a user would draw it: dark ink on a white page, upscaled, off-centre."""
    ink = Image.fromarray((digit * (255 / 16)).astype(np.uint8))
    ink = ink.resize((size, size), Image.Resampling.NEAREST)
    page = Image.new("L", (size + 90, size + 60), 255)
    page.paste(Image.eval(ink, lambda v: 255 - v), (30, 45))
    return page


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width × height``: a decompression bomb's first bytes."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


# --- data and decoding ------------------------------------------------------------------------------


def test_data_is_sklearn_digits(data) -> None:
    images, labels, _ = data
    assert images.shape == (1797, 8, 8) and labels.shape == (1797,)
    assert images.min() == 0 and images.max() == 16 and set(labels) == set(range(10))


def test_seed_image_decodes_to_sklearn_first_eight(data) -> None:
    images, labels, _ = data
    decoded = decode(SEED_IMAGE)
    assert decoded.shape == (8, 8) and decoded.max() == pytest.approx(16)
    assert np.abs(decoded - images[np.flatnonzero(labels == 8)[0]]).mean() < 0.5


def test_data_url_prefix_is_accepted() -> None:
    assert np.allclose(decode("data:image/jpeg;base64," + SEED_IMAGE), decode(SEED_IMAGE))


def test_8x8_images_round_trip_in_either_polarity(data) -> None:
    """Already the models' size: only rescaled (peak ink → 16, as in 98 % of the training digits)."""
    images = data[0][:200]
    images = images[images.max(axis=(1, 2)) == 16]
    pngs = [_b64(Image.fromarray((im * (255 / 16)).astype(np.uint8))) for im in images]
    inverted = [_b64(Image.fromarray(255 - (im * (255 / 16)).astype(np.uint8))) for im in images]
    assert np.abs(decode_batch(pngs) - images).max() < 0.2
    assert np.abs(decode_batch(inverted) - images).max() < 0.2


@pytest.mark.parametrize(("fmt", "mode"), [("JPEG", "L"), ("GIF", "P"), ("BMP", "RGB"), ("WEBP", "RGB"),
                                           ("TIFF", "L"), ("PNG", "P"), ("PNG", "I;16")])
def test_common_formats_and_modes_decode_alike(data, fmt: str, mode: str) -> None:
    page = _page(data[0][data[2][0]])
    reference = decode(_b64(page))
    wide = Image.fromarray(np.asarray(page).astype(np.uint16) * 257)  # 16-bit grayscale
    image = wide if mode == "I;16" else page.convert(mode)
    assert np.abs(decode(_b64(image, fmt)) - reference).mean() < 0.6


def test_alpha_is_composited_on_white(data, svm) -> None:
    digit, label = data[0][data[2][3]], int(data[1][data[2][3]])
    ink = 255 - np.asarray(_page(digit))
    alpha = Image.fromarray(ink)
    black_strokes = Image.merge("RGBA", [Image.new("L", alpha.size, 0)] * 3 + [alpha])
    white_strokes = Image.merge("LA", [Image.new("L", alpha.size, 255), alpha])
    transparent_palette = _page(digit).convert("P")
    transparent_palette.info["transparency"] = 255
    for image in (black_strokes, white_strokes, transparent_palette):
        assert svm.predict(decode(_b64(image)))[0] == [label]


# --- refusals ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("not base64!!", "image is not valid base64"),
        ("/" + SEED_IMAGE, "image is not valid base64"),  # the seed README's Python example has this typo
        (SEED_IMAGE[:-3], "image is not valid base64"),
        ("", "image is empty"),
        (_b64_bytes(b"just some text, not a picture"), "image is not a decodable image"),
        (_b64_bytes(base64.b64decode(SEED_IMAGE)[:300]), "image is not a decodable image"),  # truncated
        ("A" * MAX_CHARS, f"; limit {MAX_BYTES}"),
        (_b64_bytes(_png_header(5000, 5000)), f"image has 25000000 pixels; limit {MAX_PIXELS}"),
        (_b64_bytes(_png_header(100_000, 100_000)), "image has 10000000000 pixels; limit"),
        (_b64(Image.new("L", (50, 50), 255)), "image is blank"),
    ],
)
def test_bad_images_are_refused_naming_the_problem(payload: str, message: str) -> None:
    with pytest.raises(ImageError, match=message.replace("(", r"\(")):
        decode(payload)


def test_bad_image_in_a_batch_is_named_by_position() -> None:
    with pytest.raises(ImageError, match="image 1: image is not valid base64"):
        decode_batch([SEED_IMAGE, "%%%"])


def test_oversize_images_are_not_decoded() -> None:
    """The size is read from the string's length, so a huge payload costs no decoding."""
    with pytest.raises(ImageError, match=rf"image is \d+ bytes; limit {MAX_BYTES}"):
        decode("!" * (MAX_CHARS * 2))


# --- models -----------------------------------------------------------------------------------------


def test_seed_image_is_an_eight_for_both_models(svm, cnn) -> None:
    for model in (svm, cnn):
        labels, scores = model.predict(decode(SEED_IMAGE)[None])
        assert labels == [8] and 0.5 < scores[0] <= 1.0


def test_large_dark_digits_on_white_are_read(data, svm, cnn) -> None:
    images, labels, test_idx = data
    first_of_each = [test_idx[np.flatnonzero(labels[test_idx] == k)[0]] for k in range(10)]
    decoded = decode_batch([_b64(_page(images[i])) for i in first_of_each])
    assert svm.predict(decoded)[0] == list(range(10))
    assert np.mean(np.array(cnn.predict(decoded)[0]) == np.arange(10)) >= 0.8


def test_held_out_accuracy(svm_run, cnn_run) -> None:
    assert svm_run.metrics["test_accuracy"] > 0.969  # the seed's SVC: 96.9 %
    assert cnn_run.metrics["test_accuracy"] > 0.8  # a few epochs only


def test_save_then_load_predicts_identically(data, svm, cnn, tmp_path) -> None:
    images = data[0][data[2]]
    for model in (svm, cnn):
        folder = tmp_path / type(model).__name__
        folder.mkdir()
        model.save(folder)
        again = type(model).load(folder)
        assert np.array_equal(again.predict_proba(images), model.predict_proba(images))


def test_predict_checks_shape_and_accepts_empty(svm, cnn) -> None:
    for answer in (svm.predict, svm.serve, cnn.predict, cnn.serve):
        assert answer(np.zeros((0, 8, 8))) == ([], [])
        with pytest.raises(ValueError, match="shape"):
            answer(np.zeros((2, 64)))


def test_metadata_records_what_was_learnt(svm_run, cnn_run) -> None:
    assert svm_run.tag.startswith("digits_sklearn:v") and cnn_run.tag.startswith("digits_cnn:v")
    for run, framework in ((svm_run, "sklearn"), (cnn_run, "torch")):
        info = store.get(run.tag).info
        meta = info.metadata
        assert info.labels["framework"] == framework
        for key in ("metrics", "confusion", "dataset", "params", "classes", "input_schema", "pixel_profile",
                    "library_versions", "trained_at"):
            assert key in meta, key
        assert meta["classes"] == list(range(10))
        assert {"test_accuracy", "test_macro_f1", "val_accuracy"} <= set(meta["metrics"])
        assert meta["dataset"]["rows"] == 1797 and len(meta["dataset"]["sha256"]) == 64
        profile = meta["pixel_profile"]
        assert np.asarray(profile["mean_image"]).shape == (8, 8) and 4 < profile["mean"] < 6
        assert len(meta["confusion"]["matrix"]) == 10


def test_confusion_summary_orders_pairs() -> None:
    summary = confusion_summary(np.array([3, 3, 3, 5, 1]), np.array([8, 8, 3, 6, 1]))
    assert summary["most_confused"][0] == {"true": 3, "predicted": 8, "count": 2}
    assert summary["errors"] == 3


def test_cli_prints_the_metrics(capsys) -> None:
    from training.digits import main

    main(["--tiny", "--model", "cnn"])
    out = capsys.readouterr().out
    assert "digits_cnn -> digits_cnn:v" in out and "test_accuracy" in out and "most confused" in out


# --- request schema ---------------------------------------------------------------------------------


def test_request_accepts_modelo_and_resolves_names() -> None:
    request = DigitRequest.model_validate({"request_id": "123", "modelo": "clf.pickle", "image": SEED_IMAGE})
    assert request.model == "clf.pickle" and resolve(request.model) == "digits_sklearn"
    assert resolve("cnn") == "digits_cnn"
    assert [resolve(name) for name in ("CNN", " cnn", "../clf.pickle", "nope")] == [None] * 4
    assert set(MODEL_NAMES.values()) == {"digits_sklearn", "digits_cnn"}


@pytest.mark.parametrize(
    "body",
    [
        {"request_id": "", "model": "svm", "image": SEED_IMAGE},
        {"request_id": "x" * 129, "model": "svm", "image": SEED_IMAGE},
        {"request_id": "1", "model": "svm", "image": ""},
        {"request_id": "1", "model": "svm", "image": SEED_IMAGE, "extra": 1},
    ],
)
def test_request_rejects_bad_bodies(body: dict) -> None:
    with pytest.raises(ValueError):
        DigitRequest.model_validate(body)


def test_the_svm_learns_each_image_with_its_copies_side_by_side() -> None:
    """Re-centred and 1-pixel shifted copies follow their image, so a calibration fold holds them all."""
    image = np.zeros((8, 8))
    image[3:5, 3:5] = 16.0
    images, labels = augmented(np.stack([image, image * 0.5]), np.array([4, 7]),
                               {"recentre": True, "shift": 1})
    assert images.shape == (12, 8, 8) and labels.tolist() == [4] * 6 + [7] * 6
    assert np.array_equal(images[0], image) and np.array_equal(images[6], image * 0.5)
    moved = {tuple(np.argwhere(copy).min(axis=0)) for copy in images[2:6]}
    assert moved == {(3, 4), (3, 2), (4, 3), (2, 3)}
    assert all(copy.sum() == image.sum() for copy in images[2:6])  # nothing falls off a centred digit


def test_the_loaded_cnn_serves_its_fused_form_with_the_trained_answers(data, cnn) -> None:
    from bentos.digits.fused_cnn import TOLERANCE

    assert cnn._fast is not None, "the loaded CNN did not fuse"
    served, trained = cnn.served_proba(data[0]), cnn.predict_proba(data[0])
    assert np.array_equal(served.argmax(axis=1), trained.argmax(axis=1))
    assert np.max(np.abs(served - trained)) <= TOLERANCE


def test_a_fused_cnn_that_disagrees_is_not_served(cnn, monkeypatch) -> None:
    from bentos.digits import fused_cnn
    from bentos.digits.model import _probes, to_tensor

    assert fused_cnn.fused(cnn.net, to_tensor(_probes())) is not None
    broken = fused_cnn.FusedDigits(list(cnn.net.members))
    broken.head_bias += 0.5 * torch.arange(10.0)  # shifts every answer towards the high digits
    monkeypatch.setattr(fused_cnn, "FusedDigits", lambda members: broken)
    assert fused_cnn.fused(cnn.net, to_tensor(_probes())) is None
