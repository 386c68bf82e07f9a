"""Linear surrogates of scores on masks: utilities = the fitted per-passage weights.

Ridge is the paper's (closed form, unpenalised intercept, same solution as sklearn's Ridge);
LASSO on standardised masks is ContextCite's, mapped back to the 0/1 mask scale so both return
utilities in score units. Both fit the per-answer-token score (``scale`` = answer tokens) and
return weights for the whole answer, as ContextCite does: a no-op for ridge (linear in y), while
for LASSO it ties the penalty to the per-token score, so one alpha suits short and long answers.
``r2`` is measured on held-out masks (k-fold, pooled out-of-fold
predictions), so a user can see when a linear model does not explain the scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SurrogateFit:
    utility: np.ndarray  # (k,) weight per passage, in score units per "passage kept"
    intercept: float
    r2: float | None  # held-out R^2 (None when it cannot be measured: too few or constant)


def fit_ridge(X: np.ndarray, y: np.ndarray, alpha: float = 1.0) -> tuple[np.ndarray, float]:
    """Ridge with an unpenalised intercept: solve on centred data."""
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    xm, ym = X.mean(0), y.mean()
    Xc, yc = X - xm, y - ym
    A = Xc.T @ Xc + alpha * np.eye(X.shape[1])
    w = np.linalg.lstsq(A, Xc.T @ yc, rcond=None)[0] if alpha == 0 else np.linalg.solve(
        A, Xc.T @ yc)
    return w, float(ym - xm @ w)


def fit_lasso(X: np.ndarray, y: np.ndarray, alpha: float = 0.01,
              scale: float = 1.0) -> tuple[np.ndarray, float]:
    """ContextCite's surrogate: LASSO of ``y / scale`` on standardised masks, weights mapped back
    to mask units and multiplied by ``scale`` (ContextCite: scale = answer tokens)."""
    from sklearn.linear_model import Lasso

    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64) / scale
    mu, sd = X.mean(0), X.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    model = Lasso(alpha=alpha, max_iter=10000)
    model.fit((X - mu) / sd, y)
    w = model.coef_ / sd
    return w * scale, float(model.intercept_ - mu @ w) * scale


def _fit(kind: str, X: np.ndarray, y: np.ndarray, alpha: float,
         scale: float = 1.0) -> tuple[np.ndarray, float]:
    if kind == "ridge":
        return fit_ridge(X, y, alpha)
    if kind == "lasso":
        return fit_lasso(X, y, alpha, scale)
    raise ValueError(f"unknown surrogate {kind!r}; known: ['ridge', 'lasso']")


def heldout_r2(kind: str, X: np.ndarray, y: np.ndarray, alpha: float, folds: int = 5,
               seed: int = 0, scale: float = 1.0) -> float | None:
    """Out-of-fold R^2 pooled over k folds; None if y is constant or there are too few rows."""
    n = len(y)
    folds = min(folds, n)
    if folds < 2 or np.ptp(y) == 0:
        return None
    order = np.random.default_rng(seed).permutation(n)
    pred = np.empty(n, dtype=np.float64)
    for f in range(folds):
        test = order[f::folds]
        train = np.setdiff1d(order, test)
        if len(train) < 2:
            return None
        w, b = _fit(kind, X[train], y[train], alpha, scale)
        pred[test] = X[test] @ w + b
    ss_res = float(np.sum((y - pred) ** 2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - ss_res / ss_tot


def fit_surrogate(masks: np.ndarray, scores: np.ndarray, kind: str = "ridge", alpha: float = 1.0,
                  folds: int = 5, seed: int = 0, answer_tokens: int = 1) -> SurrogateFit:
    """Fit on all masks; report held-out R^2 from k-fold refits."""
    X = np.asarray(masks, dtype=np.float64)
    y = np.asarray(scores, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] != y.shape[0]:
        raise ValueError(f"masks {X.shape} and scores {y.shape} do not match")
    if not np.all(np.isfinite(y)):
        raise ValueError("scores contain inf/nan")
    if answer_tokens < 1:
        raise ValueError(f"answer_tokens: {answer_tokens}, must be >= 1")
    scale = float(answer_tokens)
    w, b = _fit(kind, X, y, alpha, scale)
    return SurrogateFit(utility=w, intercept=b,
                        r2=heldout_r2(kind, X, y, alpha, folds, seed, scale))
