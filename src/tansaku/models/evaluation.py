"""Repeated K-fold, the paper's 80/20 split (one or many seeds) and splits that hold out whole chemical systems
or prototypes."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.base import clone
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.model_selection import GroupKFold, KFold, RepeatedKFold, train_test_split

from tansaku import TansakuError


def parse_cv(text: str, n: int) -> tuple[int, int] | None:
    """'KxR' (K folds, R repeats; 'K' alone: one repeat) as (K, R), or None for '0' (no evaluation). Refuses
    what cannot give a meaning R²: every test fold needs at least two materials."""
    text = text.strip().lower()
    if text == "0":
        return None
    k, _, r = text.partition("x")
    if not (k.isdigit() and (r.isdigit() or not r)) or int(k) < 2 or (r and int(r) < 1):
        raise TansakuError(f"--cv {text!r}: give KxR, K folds (at least 2) repeated R times, e.g. 5x3; or 0 to skip "
                           "the evaluation")
    folds = int(k)
    if n < 2 * folds:
        raise TansakuError(f"{n} materials are too few for {folds}-fold cross-validation (each test fold needs at "
                           "least 2 materials): use fewer folds (--cv 2x1 needs 4 materials) or --cv 0")
    return folds, int(r or 1)


def metrics(y, mean, std=None) -> dict:
    """R², MAE, RMSE and, with a spread, how often the truth lies within 1 and 1.96 standard deviations."""
    if std is None:
        return {"r2": float(r2_score(y, mean)), "mae": float(mean_absolute_error(y, mean)),
                "rmse": float(np.sqrt(mean_squared_error(y, mean)))}
    z = np.abs(y - mean) / np.maximum(std, 1e-12)
    return {"r2": float(r2_score(y, mean)), "mae": float(mean_absolute_error(y, mean)),
            "rmse": float(np.sqrt(mean_squared_error(y, mean))),
            "coverage_68": float(np.mean(z <= 1.0)), "coverage_95": float(np.mean(z <= 1.96))}


def summarize(folds: list[dict]) -> dict:
    out = {}
    for key in folds[0]:
        values = np.array([f[key] for f in folds])
        out[f"{key}_mean"] = float(values.mean())
        out[f"{key}_std"] = float(values.std())
    out["folds"] = len(folds)
    return out


def _run(model, X, y, splits, progress: Callable | None) -> tuple[dict, np.ndarray, np.ndarray]:
    folds = []
    oof_mean, oof_std = np.full(len(y), np.nan), np.full(len(y), np.nan)
    for train, test in progress(splits) if progress else splits:
        fitted = clone(model).fit(X[train], y[train])
        mean, std = fitted.predict_dist(X[test])
        folds.append(metrics(y[test], mean, std))
        oof_mean[test], oof_std[test] = mean, std
    return summarize(folds), oof_mean, oof_std


def evaluate(model, X, y, groups, cv: tuple[int, int] = (5, 3), seed: int = 0, progress: Callable | None = None,
             which: tuple[str, ...] = ("cv", "holdout", "grouped"), holdouts: int = 1) -> dict:
    """Metrics (in the model's units) under the protocols asked for.

    cv: repeated K-fold. holdout: the reference paper's single 80/20 split; with `holdouts` > 1 also the spread
    of that many 80/20 splits (seeds seed … seed + holdouts − 1) as `holdout_spread`, since one split says
    little. grouped: K-fold with whole groups held out: `groups` is one array (result key "grouped") or a dict
    name → array, e.g. `Dataset.groupings()`: by chemical system ("grouped") and by prototype
    ("grouped_prototype"), which say how a model does on chemistry or structure types it has not seen.
    """
    n_splits, n_repeats = cv
    result: dict = {"n": int(len(y))}
    if "cv" in which:
        splits = list(RepeatedKFold(n_splits=n_splits, n_repeats=n_repeats, random_state=seed).split(X))
        result["cv"], result["_oof_mean"], result["_oof_std"] = _run(model, X, y, splits, progress)
    if "holdout" in which:
        scores = []
        for offset in range(max(1, holdouts)):
            train, test = train_test_split(np.arange(len(y)), test_size=0.2, random_state=seed + offset)
            scored, *_ = _run(model, X, y, [(train, test)], None)
            scores.append(scored)
        result["holdout"] = scores[0]
        if holdouts > 1:
            r2 = np.array([s["r2_mean"] for s in scores])
            result["holdout_spread"] = {"r2_mean": float(r2.mean()), "r2_std": float(r2.std()),
                                        "r2_min": float(r2.min()), "r2_max": float(r2.max()),
                                        "r2_median": float(np.median(r2)), "seeds": int(len(r2))}
    if "grouped" in which:
        named = groups if isinstance(groups, dict) else {"grouped": groups}
        for name, labels in named.items():
            _, codes = np.unique(np.asarray(labels), return_inverse=True)
            folds = min(n_splits, int(codes.max()) + 1)
            if folds < 2:
                continue  # one group: nothing to hold out
            rng = np.random.default_rng(seed)
            shuffled = rng.permutation(codes.max() + 1)[codes]  # random group-to-fold assignment
            splits = list(GroupKFold(n_splits=folds).split(X, y, shuffled))
            result[name], *_ = _run(model, X, y, splits, None)
            result[name]["groups"] = int(codes.max()) + 1
    return result


def out_of_fold(model, X, y, folds: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Every row predicted by a model that never saw it (one shuffled K-fold): parity plots, a campaign's
    per-round error and the residuals its error model learns from."""
    mean, std = np.zeros(len(y)), np.zeros(len(y))
    for train, test in KFold(folds, shuffle=True, random_state=seed).split(X):
        mean[test], std[test] = clone(model).fit(X[train], y[train]).predict_dist(X[test])
    return mean, std
