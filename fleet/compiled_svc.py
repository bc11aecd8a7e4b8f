"""A fitted multi-class RBF ``SVC`` under temperature scaling as a few matrix products over a whole batch.

scikit-learn answers one image in ~3.8 ms here whatever the batch: libsvm's kernel loop, then a
Python loop over the 45 class pairs (``_ovr_decision_function``, 1.4 ms alone), then the calibration
wrapper's input checks, all with the GIL held. The same arithmetic as matrices costs 0.3 ms for one
image and 2.4 ms for 32: the RBF kernel against every support vector (one matrix product), every pair's
one-vs-one decision (one product with a matrix of the dual coefficients), the one-vs-rest votes and
confidences (two more products), and the calibrator's softmax.

The kernel's squared distances are expanded (``|x|² + |s|² − 2x·s``) where libsvm sums squared
differences, so answers agree to rounding error, not bit for bit; a model serves through this form
only if it matches the pipeline on probes when it loads (``matches``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.calibration import CalibratedClassifierCV
from sklearn.pipeline import Pipeline
from sklearn.svm import SVC

TOLERANCE = 1e-9  # largest difference in any probability allowed against the pipeline on the probes


class CompiledSVC:
    """``predict_proba`` of ``[flatten, CalibratedClassifierCV(SVC(rbf), "temperature", ensemble=False)]``."""

    def __init__(self, svc: SVC, beta: float) -> None:
        vectors = torch.as_tensor(np.asarray(svc.support_vectors_, dtype=np.float64))
        self.vectors_t = vectors.T.contiguous()
        self.vector_norms = (vectors * vectors).sum(dim=1)
        self.gamma = float(svc._gamma)
        self.beta = beta
        n_classes = len(svc.classes_)
        pairs = [(i, j) for i in range(n_classes) for j in range(i + 1, n_classes)]
        self.intercept = torch.as_tensor(np.asarray(svc._intercept_, dtype=np.float64))
        self.coef = torch.as_tensor(
            _pair_coefficients(np.asarray(svc._dual_coef_), np.asarray(svc._n_support), pairs))
        winner = torch.zeros((len(pairs), n_classes), dtype=torch.float64)  # pair → the class that wins
        loser = torch.zeros_like(winner)  # at a positive decision, and the one that wins at a negative
        for p, (i, j) in enumerate(pairs):
            winner[p, i] = loser[p, j] = 1.0
        self.winner, self.loser, self.sign = winner, loser, winner - loser

    @classmethod
    def of(cls, pipeline: Any) -> CompiledSVC | None:
        """The compiled form, or None for a pipeline of another shape (this reproduces only one)."""
        if not isinstance(pipeline, Pipeline) or len(pipeline) != 2:
            return None
        calibrated = pipeline[-1]
        if not isinstance(calibrated, CalibratedClassifierCV) or calibrated.method != "temperature":
            return None
        if len(calibrated.calibrated_classifiers_) != 1:
            return None
        fold = calibrated.calibrated_classifiers_[0]
        svc = fold.estimator
        if not isinstance(svc, SVC) or svc.kernel != "rbf" or len(svc.classes_) < 3:
            return None
        if svc.decision_function_shape != "ovr" or svc.break_ties:
            return None
        return cls(svc, float(fold.calibrators[0].beta_))

    def predict_proba(self, flat: np.ndarray) -> np.ndarray:
        """``(n, classes)`` probabilities of ``(n, features)`` rows (in torch: its ``exp`` is vectorised,
        numpy's is not on this CPU, and the kernel is most of the work)."""
        x = torch.as_tensor(np.asarray(flat, dtype=np.float64))
        with torch.inference_mode():
            kernel = torch.addmm(self.vector_norms, x, self.vectors_t, alpha=-2.0)
            kernel += (x * x).sum(dim=1, keepdim=True)
            kernel.clamp_(min=0.0).mul_(-self.gamma).exp_()
            decision = torch.addmm(self.intercept, kernel, self.coef)  # one-vs-one: > 0 votes for i
            # scikit-learn's ``_ovr_decision_function(dec < 0, -dec, n)``: votes plus squashed confidences
            negative = (decision < 0).to(torch.float64)
            votes = (1.0 - negative) @ self.winner + negative @ self.loser
            confidence = decision @ self.sign
            logits = votes + confidence / (3.0 * (confidence.abs() + 1.0))
            proba = torch.softmax(self.beta * logits, dim=1).numpy()
        proba[(proba > 1.0) & (proba <= 1.0 + 1e-5)] = 1.0
        return proba

    def matches(self, pipeline: Pipeline, probes: np.ndarray) -> bool:
        """Same argmax and probabilities within ``TOLERANCE`` as the pipeline on ``(n, 8, 8)`` probes."""
        expected = pipeline.predict_proba(probes)
        got = self.predict_proba(probes.reshape(len(probes), -1))
        return bool(np.array_equal(expected.argmax(axis=1), got.argmax(axis=1))
                    and np.max(np.abs(expected - got)) <= TOLERANCE)


def _pair_coefficients(dual: np.ndarray, n_support: np.ndarray, pairs: list[tuple[int, int]]) -> np.ndarray:
    """``(support vectors, pairs)``: libsvm's one-vs-one sum for pair (i, j) takes class i's vectors
    with coefficient row j − 1 and class j's with row i; every other vector weighs 0 in that pair."""
    start = np.concatenate([[0], np.cumsum(n_support)])
    coef = np.zeros((dual.shape[1], len(pairs)))
    for p, (i, j) in enumerate(pairs):
        coef[start[i]:start[i + 1], p] = dual[j - 1, start[i]:start[i + 1]]
        coef[start[j]:start[j + 1], p] = dual[i, start[j]:start[j + 1]]
    return coef
