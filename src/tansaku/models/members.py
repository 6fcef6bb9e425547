"""Ensemble members through wrapper models: the one place that says when a learner has none to sample."""

from __future__ import annotations

import numpy as np

from tansaku import TansakuError


def sample_members(learner, X) -> np.ndarray:
    """`learner.predict_samples(X)` (members × rows); a learner without members (a LightGBM bag, a blend with a
    network) is named in the error instead of failing on a missing attribute deep inside a wrapper."""
    if not hasattr(learner, "predict_samples"):
        raise TansakuError(f"{type(learner).__name__} has no ensemble members to sample")
    return learner.predict_samples(X)
