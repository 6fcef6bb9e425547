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
from sklearn.impute import SimpleImputer

from tansaku import TansakuError
from tansaku.models.learners import fill_missing

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
    fill = SimpleImputer(strategy="median", keep_empty_features=True).fit(X_labelled).statistics_
    model = ExtraTreesRegressor(trees, max_features=0.5, min_samples_leaf=min_samples_leaf, random_state=seed,
                                n_jobs=-1)
    model.fit(fill_missing(X_labelled[known], fill, np.float32), np.abs(residuals[known]))
    return np.maximum(model.predict(fill_missing(X_candidates, fill, np.float32)), _FLOOR)
