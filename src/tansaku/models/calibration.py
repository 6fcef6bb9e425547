"""Recalibrated uncertainty: scale a model's standard deviation so held-out 68 % intervals hold 68 %.

Tree spread and bag spread are not calibrated (forests are often too confident far from the data and too
cautious near it). The scale is fitted on out-of-fold predictions of the training data, then the model is
refitted on all of it, so no held-out data is needed beyond the training set itself.

A spread is floored at a thousandth of the target's own spread before scaling. On a handful of samples a
boosted bag makes no splits, so every member agrees and the spread is zero; without the floor the scale
became residual/1e-12 (about 10¹¹) and intervals overflowed. With it, a model with no spread falls back to a
constant interval the size of its out-of-fold residuals, and a model with spread is unchanged.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.model_selection import KFold

from tansaku.models.members import sample_members

ONE_SIGMA = 0.6826894921370859
RELATIVE_STD_FLOOR = 1e-3


class Calibrated(RegressorMixin, BaseEstimator):
    """Wraps a learner with predict_dist; multiplies its std by a factor fitted by K-fold on training data."""

    def __init__(self, learner=None, folds: int = 3, random_state: int = 0):
        self.learner = learner
        self.folds = folds
        self.random_state = random_state

    def fit(self, X, y):
        X, y = np.asarray(X), np.asarray(y)
        z = np.full(len(y), np.nan)
        self.std_floor_ = max(RELATIVE_STD_FLOOR * float(np.std(y)), 1e-12)
        if len(y) >= 2 * self.folds:
            for train, test in KFold(self.folds, shuffle=True, random_state=self.random_state).split(X):
                mean, std = clone(self.learner).fit(X[train], y[train]).predict_dist(X[test])
                z[test] = np.abs(y[test] - mean) / np.maximum(std, self.std_floor_)
        self.scale_ = float(np.nanquantile(z, ONE_SIGMA)) if np.isfinite(z).any() else 1.0
        self.learner_ = clone(self.learner).fit(X, y)
        self.feature_importances_ = getattr(self.learner_, "feature_importances_", None)
        return self

    def __setstate__(self, state):
        state.setdefault("std_floor_", 0.0)  # a model saved before the floor predicts as it did
        super().__setstate__(state)

    def predict(self, X):
        return self.learner_.predict(X)

    def predict_dist(self, X):
        mean, std = self.learner_.predict_dist(X)
        return mean, np.maximum(std, self.std_floor_) * self.scale_

    def predict_samples(self, X):
        samples = sample_members(self.learner_, X)
        centre = samples.mean(axis=0)
        return centre + (samples - centre) * self.scale_
