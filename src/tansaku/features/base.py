"""What every descriptor transformer shares: raw rows with NaN, training medians filled in at transform."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin


class MedianFilledFeaturizer(TransformerMixin, BaseEstimator):
    """Subclasses implement `raw(X)` (rows, NaN where unknown) and `names()`, which the descriptor sets and
    their cache call directly (models impute for themselves); fit/transform serve scikit-learn pipelines.

    Columns unknown for every training item are dropped; other NaN become the training median.
    """

    def fit(self, X, y=None):
        raw = self.raw(X)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            medians = np.nanmedian(raw, axis=0)
        self.keep_ = ~np.isnan(medians)
        self.medians_ = np.where(np.isnan(medians), 0.0, medians)
        self.n_features_in_ = 1
        return self

    def transform(self, X) -> np.ndarray:
        raw = self.raw(X)
        return np.where(np.isnan(raw), self.medians_, raw)[:, self.keep_]

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return np.array(self.names())[self.keep_]

    def raw(self, X) -> np.ndarray:
        raise NotImplementedError

    def names(self) -> list[str]:
        raise NotImplementedError
