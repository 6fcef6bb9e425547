"""A linear model under a tree learner: the trees get the ridge regression's prediction as one more descriptor.

Trees approximate a smooth, nearly additive trend (how ε∞ grows with the share of polarizable ions, say) by
many small steps, and each step needs data; a ridge regression on the standardized descriptors captures such a
trend with one coefficient per descriptor. Stacking gives the trees that trend as a descriptor, so their splits
go to what the linear model misses. The training rows get out-of-fold ridge predictions, otherwise the trees
would learn to trust a column that has seen their own targets.

The last `linear_only` columns (the ion fractions of `features.ions`) go to the ridge alone: one weight per ion
is what a linear model does well, while hundreds of sparse columns would only dilute the trees' column sampling.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from tansaku import TansakuError
from tansaku.models.members import sample_members

ALPHAS = tuple(np.logspace(-2, 4, 13))


def _ridge(alphas) -> Pipeline:
    return make_pipeline(StandardScaler(), RidgeCV(alphas=alphas))


class LinearStacked(RegressorMixin, BaseEstimator):
    """`learner` (with predict_dist) fitted on the descriptors plus a ridge regression's prediction.

    Expects imputed descriptors (no NaN), as `Imputed` gives. `feature_importances_` has one entry per input
    column (the learner's share for the ridge column is `linear_importance_`; the ridge-only columns get 0), so
    importance plots keep their names.
    """

    linear_only = 0  # models saved before the option existed

    def __init__(self, learner=None, folds: int = 5, alphas=ALPHAS, random_state: int = 0, linear_only: int = 0):
        self.learner = learner
        self.folds = folds
        self.alphas = alphas
        self.random_state = random_state
        self.linear_only = linear_only

    def _tree_columns(self, X: np.ndarray) -> np.ndarray:
        return X[:, : X.shape[1] - self.linear_only]

    def _check_fractions(self, X: np.ndarray) -> None:
        block = X[:, X.shape[1] - self.linear_only :]
        if self.linear_only and not (np.all((block >= 0) & (block <= 1)) and np.allclose(block.sum(axis=1), 1)):
            raise TansakuError(f"this model reads ion fractions from its last {self.linear_only} columns, and these "
                               "are not fractions: build its descriptors with the '+ions' block (`model_feature_set`)")

    def fit(self, X, y):
        X, y = np.asarray(X, dtype=float), np.asarray(y, dtype=float)
        self._check_fractions(X)
        # constant columns (most ion fractions: ions no training compound has) get no weight; leaving them out
        # changes nothing but the ridge's cost, which grows with the square of the column count
        varying = np.ptp(X, axis=0) > 0
        self.varying_ = varying if varying.any() else np.ones(X.shape[1], dtype=bool)
        Xr = X[:, self.varying_]
        self.ridge_ = _ridge(self.alphas).fit(Xr, y)
        if len(y) >= 2 * self.folds:
            linear = np.empty(len(y))
            for train, test in KFold(self.folds, shuffle=True, random_state=self.random_state).split(Xr):
                linear[test] = _ridge(self.alphas).fit(Xr[train], y[train]).predict(Xr[test])
        else:  # below 2 × folds rows there are too few to hold any out: in-sample it is
            linear = self.ridge_.predict(Xr)
        self.training_linear_ = linear  # what the trees saw for the training rows (out of fold)
        trees = self._tree_columns(X)
        self.learner_ = clone(self.learner).fit(np.column_stack([trees, linear]), y)
        importances = np.asarray(getattr(self.learner_, "feature_importances_", np.zeros(trees.shape[1] + 1)), float)
        self.linear_importance_ = float(importances[-1])
        self.feature_importances_ = np.concatenate([importances[:-1], np.zeros(self.linear_only)])
        return self

    def _with_linear(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        self._check_fractions(X)
        ridge_columns = getattr(self, "varying_", np.ones(X.shape[1], dtype=bool))  # older models: all
        return np.column_stack([self._tree_columns(X), self.ridge_.predict(X[:, ridge_columns])])

    def predict(self, X):
        return self.learner_.predict(self._with_linear(X))

    def predict_dist(self, X):
        return self.learner_.predict_dist(self._with_linear(X))

    def predict_samples(self, X):
        return sample_members(self.learner_, self._with_linear(X))
