"""The one ranking path of simulations, suggestions and campaigns: prediction → best → score → diversity → batch.

Callers differ only in where their candidates, model and best-known value come from; what happens to them is
here. Several goals or levels of theory are added in this module, not in three places.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tansaku import TansakuError
from tansaku.active.acquisition import Goal, Strategy
from tansaku.active.diversity import select_batch, typical_spacing
from tansaku.models.members import sample_members


@dataclass
class Prediction:
    """What a strategy scores: predictive mean and spread (model units), and the members' predictions when read."""

    mean: np.ndarray
    std: np.ndarray
    samples: np.ndarray | None = None


def predict_for(strategy: Strategy, goal: Goal, model, X: np.ndarray) -> Prediction:
    """The model's prediction in the form the strategy reads: the ensemble's members for a window goal when the
    model has members (a strategy that requires them refuses a model without), else mean and spread."""
    if strategy.batch == "random":  # a uniform draw reads nothing: no prediction to pay for
        return Prediction(np.zeros(len(X)), np.zeros(len(X)))
    if strategy.wants_members(goal):
        try:
            samples = sample_members(model, X)
        except TansakuError:
            if strategy.members_required:
                raise
        else:
            return Prediction(samples.mean(axis=0), samples.std(axis=0), samples)
    mean, std = model.predict_dist(X)
    return Prediction(np.asarray(mean, float), np.asarray(std, float))


@dataclass
class Ranked:
    """The chosen batch (positions in the candidates, in the order chosen) and every candidate's score."""

    chosen: np.ndarray
    scores: np.ndarray


def rank(strategy: Strategy, goal: Goal, prediction: Prediction, k: int, rng: np.random.Generator, *,
         best: float | None = None, cost: np.ndarray | None = None, coords: np.ndarray | None = None,
         spacing: float | None = None, diversity: float = 1.0,
         allocate: Callable[[np.ndarray], np.ndarray] | None = None) -> Ranked:
    """Score the candidates and choose k of them.

    `best`: the best desirability known (EI, PI). `cost`: estimated cost per candidate; scores are divided by
    it (value per CPU hour). `coords`: descriptor coordinates for the diversity penalty (none for draws, whose
    scores are random and would be biased by it); `spacing` its length unit, measured on `coords` when None.
    `allocate(std)`: the batch of a strategy that allocates over regions of a simulated pool (stratified,
    density).
    """
    n = len(prediction.mean)
    k = min(k, n)
    if strategy.batch == "random":
        return Ranked(rng.choice(n, size=k, replace=False), np.zeros(n))
    if allocate is not None:
        return Ranked(np.asarray(allocate(prediction.std)), prediction.std)
    if strategy.batch in ("stratified", "density"):
        raise TansakuError(f"strategy {strategy.name!r} allocates over the regions of a simulated pool")
    scores = strategy.score(goal, prediction.mean, prediction.std, best=best, samples=prediction.samples, rng=rng)
    if cost is not None:
        scores = scores / np.maximum(cost, 1e-9)
    if strategy.is_draw or coords is None or diversity <= 0 or k <= 1:
        return Ranked(select_batch(scores, k, rng), scores)
    if spacing is None:
        spacing = typical_spacing(coords, rng)
    return Ranked(select_batch(scores, k, rng, coords, diversity * spacing), scores)
