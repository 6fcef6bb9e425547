"""Where is the model wrong? A second regressor fitted to the model's out-of-sample errors.

Tree spread says where the trees disagree, which is not where they are wrong: a forest can agree on a wrong
answer for an unusual chemistry, and disagree on outliers that no test set visits. The out-of-bag residual of
a labelled material is an honest measure of the model's error there (the trees that predict it never saw it),
so a regressor fitted to |residual| against the descriptors predicts the error of every candidate. Drawing
candidates with probability ∝ that prediction spends labels where they lower the test error, as long as the
test set is drawn like the pool. Simulations use a bootstrap forest's out-of-bag residuals (free with the fit);
campaigns use the residuals of their cross-validation, which any learner has.
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import ExtraTreesRegressor

from tansaku import TansakuError

_FLOOR = 1e-6
MIN_SAMPLES_LEAF = 5
MIN_RESIDUALS = 2 * MIN_SAMPLES_LEAF  # fewer and the error model would be one or two leaves of noise


def predicted_error(X_labelled: np.ndarray, residuals: np.ndarray, X_candidates: np.ndarray, seed: int = 0,
                    trees: int = 100, min_samples_leaf: int = MIN_SAMPLES_LEAF) -> np.ndarray:
    """Predicted absolute error of each candidate, from the labelled materials' out-of-bag or out-of-fold residuals.

    Rows whose residual is unknown (NaN: every tree saw them) are left out. Extra trees with leaves of at least
    `min_samples_leaf` materials give a smooth estimate: a single residual is mostly noise.
    """
    residuals = np.asarray(residuals, dtype=float)
    known = np.isfinite(residuals)
    if known.sum() < 2 * min_samples_leaf:
        raise TansakuError(f"only {int(known.sum())} out-of-sample residuals: too few to model the error "
                           f"(need {2 * min_samples_leaf})")
    median = _column_medians(X_labelled)
    model = ExtraTreesRegressor(trees, max_features=0.5, min_samples_leaf=min_samples_leaf, random_state=seed,
                                n_jobs=-1)
    model.fit(_fill(X_labelled[known], median), np.abs(residuals[known]))
    return np.maximum(model.predict(_fill(X_candidates, median)), _FLOOR)


def _column_medians(X: np.ndarray) -> np.ndarray:
    """Per-column median of the known values, 0 for a column with none (as SimpleImputer with
    keep_empty_features); computed here because SimpleImputer's transform takes a second per 100,000 rows."""
    X = np.asarray(X, dtype=float)
    median = np.zeros(X.shape[1])
    seen = ~np.isnan(X).all(axis=0)
    median[seen] = np.nanmedian(X[:, seen], axis=0)
    return median


def _fill(X: np.ndarray, median: np.ndarray) -> np.ndarray:
    """NaN → the column's median, as float32 (what the trees compare in anyway: no second conversion)."""
    filled = np.array(X, dtype=np.float32)
    np.copyto(filled, median.astype(np.float32), where=np.isnan(filled))
    return filled
