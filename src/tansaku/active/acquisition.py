"""Acquisition functions: pure functions of a predictive distribution that score candidates (higher = better).

Every function takes the predictive mean and standard deviation (arrays of the same length) and its own
parameters. Those that need the full distribution also accept `samples` (models x candidates), the
ensemble's per-member predictions, and then use it instead of the normal approximation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from tansaku import TansakuError

_TINY = 1e-12


@dataclass(frozen=True)
class Goal:
    """What a search wants: a window [lo, hi], the largest or smallest value, or only a better model ("error")."""

    kind: str  # "range" | "maximize" | "minimize" | "error"
    lo: float | None = None
    hi: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("range", "maximize", "minimize", "error"):
            raise TansakuError(f"unknown goal {self.kind!r} (range, maximize, minimize or error)")
        if self.kind == "range":
            if self.lo is None or self.hi is None:
                raise TansakuError("a range goal needs both ends of the window (--range LO HI)")
            if not self.lo < self.hi:
                raise TansakuError(f"empty window: lo ({self.lo}) must be smaller than hi ({self.hi})")

    @property
    def centre(self) -> float:
        return 0.5 * (self.lo + self.hi)

    def desirability(self, y: np.ndarray) -> np.ndarray:
        """The objective EI/PI/UCB/greedy maximize: y, -y, or for a window -|y - centre| (0 at the centre).

        For a window we use minus the distance to the window's centre: it is highest inside the window and
        keeps a gradient there, whereas minus the distance to the window (0 anywhere inside) would make EI and
        PI vanish as soon as one material inside is found.
        """
        y = np.asarray(y, dtype=float)
        if self.kind == "maximize":
            return y
        if self.kind == "minimize":
            return -y
        if self.kind == "range":
            return -np.abs(y - self.centre)
        raise TansakuError("the 'error' goal has no desirability; use uncertainty-based strategies")


def random_scores(n: int, rng: np.random.Generator) -> np.ndarray:
    return rng.random(n)


def uncertainty(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Largest predictive standard deviation first."""
    return np.asarray(std, dtype=float).copy()


def expected_improvement(mean, std, best: float, xi: float = 0.0) -> np.ndarray:
    """EI for maximization: E[max(f - best - xi, 0)] with f ~ N(mean, std²)."""
    mean, std = np.asarray(mean, float), np.maximum(np.asarray(std, float), _TINY)
    z = (mean - best - xi) / std
    return (mean - best - xi) * norm.cdf(z) + std * norm.pdf(z)


def probability_of_improvement(mean, std, best: float, xi: float = 0.0) -> np.ndarray:
    """PI for maximization: P(f > best + xi)."""
    mean, std = np.asarray(mean, float), np.maximum(np.asarray(std, float), _TINY)
    return norm.cdf((mean - best - xi) / std)


def upper_confidence_bound(mean, std, kappa: float = 2.0) -> np.ndarray:
    return np.asarray(mean, float) + kappa * np.asarray(std, float)


def in_range_probability(mean, std, lo: float, hi: float) -> np.ndarray:
    """P(lo <= f <= hi) = Φ((hi - μ)/σ) - Φ((lo - μ)/σ) under the normal approximation."""
    mean, std = np.asarray(mean, float), np.maximum(np.asarray(std, float), _TINY)
    return norm.cdf((hi - mean) / std) - norm.cdf((lo - mean) / std)


def in_range_fraction(samples: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """The same probability from the ensemble's members: the fraction of members predicting inside."""
    samples = np.asarray(samples, float)
    return np.mean((samples >= lo) & (samples <= hi), axis=0)


STRATEGIES = {
    "random": "random order (the baseline)",
    "uncertainty": "largest predictive standard deviation",
    "weighted": "random draws with probability ∝ standard deviation (uncertainty without chasing outliers)",
    "stratified": "regions of descriptor space sampled in proportion to size x mean uncertainty (Neyman)",
    "stratified-error": "the same Neyman allocation with each region's measured error (out-of-bag residuals)",
    "density": "random draws ∝ standard deviation x number of pool materials with the same descriptors",
    "error-model": "random draws ∝ the error a second model predicts from the forest's out-of-bag residuals",
    "greedy": "best predicted desirability",
    "ei": "expected improvement of the desirability",
    "pi": "probability of improving the desirability",
    "ucb": "upper confidence bound of the desirability (kappa = 2)",
    "ei-direct": "expected improvement from a second model fitted to the desirability labels themselves",
    "pi-direct": "probability of improvement from a second model fitted to the desirability labels themselves",
    "range": "probability of lying inside the window (normal approximation)",
    "range-ensemble": "probability of lying inside the window (fraction of ensemble members)",
}

# The textbook way to aim EI/PI at a window: transform the labels into desirabilities and model those. The
# surrogate must then be trained on desirabilities, which a saved property model is not: simulations only.
DIRECT_STRATEGIES = {"ei-direct", "pi-direct"}
STRATIFIED_STRATEGIES = {"stratified", "stratified-error"}
# random draws (the scores are log weights plus Gumbel noise): a distance penalty on top would bias the draw
DRAW_STRATEGIES = {"random", "weighted", "error-model"}
OUT_OF_BAG_STRATEGIES = {"stratified-error", "error-model"}  # in simulations: a bootstrap forest's out-of-bag errors
# What a saved model alone cannot rank with (`al suggest`), and why.
NOT_FROM_A_SAVED_MODEL = {
    **{s: "it fits a second model to the desirability labels, and a saved model predicts the property"
       for s in DIRECT_STRATEGIES},
    **{s: "it allocates over the regions of a simulated pool" for s in (*STRATIFIED_STRATEGIES, "density")},
    "error-model": "it models the training set's out-of-fold errors, which a saved model does not keep; a campaign "
                   "with [goal] kind = 'error' can use it",
}
SIMULATION_ONLY = set(NOT_FROM_A_SAVED_MODEL) - {"error-model"}  # campaigns have the training set: error-model works


def score(strategy: str, goal: Goal, mean: np.ndarray, std: np.ndarray, *, best: float | None = None,
          samples: np.ndarray | None = None, rng: np.random.Generator | None = None,
          kappa: float = 2.0) -> np.ndarray:
    """Scores (higher is better) of one strategy for one goal.

    `best` is the best desirability among labelled materials (EI, PI). With `samples`, EI/PI/UCB of a
    window goal use the moments of the members' desirabilities, since -|y - centre| of a normal is not normal.
    For 'ei-direct' and 'pi-direct', `mean` and `std` are already the desirability's (a model fitted to it).
    """
    rng = rng or np.random.default_rng(0)
    mean, std = np.asarray(mean, float), np.asarray(std, float)
    if strategy == "random":
        return random_scores(len(mean), rng)
    if strategy == "uncertainty":
        return uncertainty(mean, std)
    if strategy in ("weighted", "error-model"):  # error-model: `std` is the predicted error (see error_model)
        # Gumbel-top-k trick: argsort of log(w) + Gumbel noise draws without replacement with p ∝ w.
        return np.log(np.maximum(std, _TINY)) + rng.gumbel(size=len(std))
    if strategy in STRATIFIED_STRATEGIES or strategy == "density":
        return uncertainty(mean, std)  # single-candidate ranking; batches: batch.stratified_batch / density_batch
    if strategy in ("range", "range-ensemble"):
        if goal.kind != "range":
            raise TansakuError(f"strategy {strategy!r} needs a window goal (--range LO HI)")
        if strategy == "range-ensemble" and samples is not None:
            return in_range_fraction(samples, goal.lo, goal.hi)
        return in_range_probability(mean, std, goal.lo, goal.hi)
    if strategy in DIRECT_STRATEGIES:
        if goal.kind == "error":
            raise TansakuError(f"strategy {strategy!r} needs a goal: --range, --maximize or --minimize")
        if best is None:
            raise TansakuError(f"{strategy} needs the best value found so far")
        fn = expected_improvement if strategy == "ei-direct" else probability_of_improvement
        return fn(mean, std, best)
    if strategy not in ("greedy", "ei", "pi", "ucb"):
        raise TansakuError(f"unknown strategy {strategy!r} (choose from {', '.join(STRATEGIES)})")
    if goal.kind == "error":
        raise TansakuError(f"strategy {strategy!r} needs a goal: --range, --maximize or --minimize")
    if goal.kind == "range" and samples is None:
        samples = mean + std * np.random.default_rng(12345).standard_normal((64, len(mean)))
    if goal.kind == "range":
        d = goal.desirability(samples)
        d_mean, d_std = d.mean(axis=0), d.std(axis=0)
        if strategy == "greedy":
            return d_mean
        if strategy == "ucb":
            return d_mean + kappa * d_std
        if best is None:
            raise TansakuError(f"{strategy} needs the best value found so far")
        # Normal formulas on the members' desirability moments: the members' own EI/PI is exactly 0 for
        # most candidates once a material near the centre is known, and ties would make the choice random.
        fn = expected_improvement if strategy == "ei" else probability_of_improvement
        return fn(d_mean, d_std, best)
    d_mean = goal.desirability(mean)
    if strategy == "greedy":
        return d_mean
    if strategy == "ucb":
        return upper_confidence_bound(d_mean, std, kappa)
    if best is None:
        raise TansakuError(f"{strategy} needs the best value found so far")
    fn = expected_improvement if strategy == "ei" else probability_of_improvement
    return fn(d_mean, std, best)
