"""The head: a regularised multinomial logistic regression on standardised embeddings.

scikit-learn's ``LogisticRegression`` (lbfgs, L2 penalty of strength ``1 / C``) fits on
features standardised by ``StandardScaler``: the backbone's features differ in scale by orders
of magnitude, and one penalty for all of them only means something once they share one. The
trap must not standardise anything, so the scaler is folded into the weights,
``W' = W / sd`` and ``b' = b - W' @ mean``, before they are quantised
(``HeadWeights.fit_float``). Everything measured afterwards is measured on the quantised head,
which is what ships.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from device.contracts.head import HeadWeights

__all__ = ["MAX_ITER", "Fitted", "fit_head"]

MAX_ITER = 1000


@dataclass(frozen=True)
class Fitted:
    head: HeadWeights  # quantised, standardisation folded in
    seconds: float  # scaler + regression + quantisation
    iterations: int
    converged: bool


def fit_head(
    x: np.ndarray, y: np.ndarray, classes: int, *, c: float, storage: str, seed: int
) -> Fitted:
    """Fit on ``x`` ``[n, D]`` with labels ``y`` in ``0..classes-1`` (each present)."""
    started = time.perf_counter()
    scaler = StandardScaler().fit(x)
    regression = LogisticRegression(C=c, solver="lbfgs", max_iter=MAX_ITER, random_state=seed)
    with warnings.catch_warnings():
        # Reported as "converged: false" instead of a warning on the console.
        warnings.simplefilter("ignore", ConvergenceWarning)
        regression.fit(scaler.transform(x), y)
    coef = np.asarray(regression.coef_, np.float64)
    intercept = np.asarray(regression.intercept_, np.float64)
    if classes == 2 and coef.shape[0] == 1:
        # Two classes come back as one logit difference; as two softmax rows it is split
        # evenly, which keeps both rows' int8 steps equally fine.
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    weights = coef / scaler.scale_
    bias = intercept - weights @ scaler.mean_
    head = HeadWeights.fit_float(weights, bias, storage)
    iterations = int(np.max(regression.n_iter_))
    return Fitted(head, time.perf_counter() - started, iterations, iterations < MAX_ITER)
