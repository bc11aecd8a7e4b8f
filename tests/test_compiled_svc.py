"""The SVM served as matrix products answers every digit as scikit-learn's pipeline does, and a
pipeline it cannot reproduce, or a compiled form that disagrees, serves through scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.svm import SVC

from bentos.digits import model as digit_model
from bentos.digits.model import SklearnDigits, _as_batch, _flatten, build_sklearn
from data.digits import load
from fleet.compiled_svc import TOLERANCE, CompiledSVC


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    return load()


@pytest.fixture(scope="module")
def fitted(digits) -> SklearnDigits:
    """The seed's SVM on a third of the digits (a second or two), calibrated as in training."""
    images, labels = digits
    params = {"C": 10.0, "gamma": 0.001, "calibration_folds": 3}
    return SklearnDigits(build_sklearn(params).fit(_as_batch(images[::3]), labels[::3]))


def test_every_digit_gets_the_pipelines_answer(fitted, digits) -> None:
    assert fitted._fast is not None, "the served SVM did not compile"
    images = _as_batch(digits[0])
    expected = fitted.pipeline.predict_proba(images)
    served = fitted.served_proba(images)
    assert np.array_equal(served.argmax(axis=1), expected.argmax(axis=1))
    assert np.max(np.abs(served - expected)) <= TOLERANCE
    labels, scores = fitted.serve(images[:5])
    assert labels == digit_model._answer(expected[:5])[0]
    assert scores == pytest.approx(digit_model._answer(expected[:5])[1], abs=TOLERANCE)


def test_answers_do_not_depend_on_the_batch(fitted, digits) -> None:
    images = _as_batch(digits[0][:64])
    one_by_one = np.concatenate([fitted.served_proba(image[None]) for image in images])
    assert np.max(np.abs(one_by_one - fitted.served_proba(images))) <= TOLERANCE


def test_a_pipeline_of_another_shape_serves_through_scikit_learn(digits) -> None:
    images, labels = digits
    linear = make_pipeline(FunctionTransformer(_flatten), CalibratedClassifierCV(
        SVC(kernel="linear"), method="temperature", cv=2, ensemble=False))
    model = SklearnDigits(linear.fit(_as_batch(images[::6]), labels[::6]))
    assert CompiledSVC.of(linear) is None and model._fast is None
    assert np.array_equal(model.served_proba(images[:20]), linear.predict_proba(_as_batch(images[:20])))


def test_a_compiled_form_that_disagrees_is_not_served(fitted, monkeypatch) -> None:
    honest = CompiledSVC.predict_proba
    monkeypatch.setattr(CompiledSVC, "predict_proba", lambda self, flat: honest(self, flat) + 1e-6)
    assert digit_model._compiled(fitted.pipeline) is None
