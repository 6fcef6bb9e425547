"""Acquisition functions: pure functions of a predictive distribution that score candidates (higher = better).

Every function takes the predictive mean and standard deviation (arrays of the same length) and its own
parameters. Those that need the full distribution also accept `samples` (models x candidates), the
ensemble's per-member predictions, and then use it instead of the normal approximation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from tansaku import TansakuError
from tansaku.numbers import is_finite_number

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
            if not (is_finite_number(self.lo) and is_finite_number(self.hi)):
                raise TansakuError(f"window {self.lo}-{self.hi}: both ends must be finite numbers (for an open "
                                   "window, maximize or minimize instead, or give a goal such as 'band_gap>=2')")
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


def _desirability_moments(goal: Goal, mean, std, samples):
    """Mean and spread of the desirability. For a window, -|y - centre| of a normal is not normal: take it of
    every ensemble member (or of 64 normal draws when the model has no members) and use the moments."""
    if goal.kind != "range":
        return goal.desirability(mean), std
    if samples is None:
        samples = mean + std * np.random.default_rng(12345).standard_normal((64, len(mean)))
    d = goal.desirability(samples)
    return d.mean(axis=0), d.std(axis=0)


def _needs_best(name: str, best: float | None) -> float:
    if best is None:
        raise TansakuError(f"{name} needs the best value found so far")
    return best


def _improvement(name: str):
    """EI or PI of the desirability. Normal formulas on the members' desirability moments: the members' own
    EI/PI is exactly 0 for most candidates once a material near the centre is known, and ties would make the
    choice random."""
    fn = expected_improvement if name.startswith("ei") else probability_of_improvement

    def scorer(goal, mean, std, best, samples, rng, kappa):
        d_mean, d_std = _desirability_moments(goal, mean, std, samples)
        return fn(d_mean, d_std, _needs_best(name, best))
    return scorer


def _direct(name: str):
    """ei-direct / pi-direct: `mean` and `std` are already the desirability's (a model fitted to it)."""
    fn = expected_improvement if name.startswith("ei") else probability_of_improvement

    def scorer(goal, mean, std, best, samples, rng, kappa):
        return fn(mean, std, _needs_best(name, best))
    return scorer


def _greedy(goal, mean, std, best, samples, rng, kappa):
    return _desirability_moments(goal, mean, std, samples)[0]


def _ucb(goal, mean, std, best, samples, rng, kappa):
    d_mean, d_std = _desirability_moments(goal, mean, std, samples)
    return upper_confidence_bound(d_mean, d_std, kappa)


def _in_window(goal, mean, std, best, samples, rng, kappa):
    if samples is not None:
        return in_range_fraction(samples, goal.lo, goal.hi)
    return in_range_probability(mean, std, goal.lo, goal.hi)


def _weighted_draw(goal, mean, std, best, samples, rng, kappa):
    # Gumbel-top-k trick: argsort of log(w) + Gumbel noise draws without replacement with p ∝ w.
    # For error-model, `std` is the predicted error (see error_model).
    return np.log(np.maximum(std, _TINY)) + rng.gumbel(size=len(std))


@dataclass(frozen=True)
class Strategy:
    """One way to rank candidates: how it scores, what it needs, and how a batch is formed from its scores.

    `batch` says how a batch is formed: "scores" (best scores, spread by the diversity penalty), "random" (a
    uniform draw without replacement), "draw" (the scores are a weighted random draw: a distance penalty would
    bias it), "stratified", "density", "error-model"
    and "direct" (which need what only a simulation or a campaign holds: regions of the pool, out-of-fold
    residuals, a second model fitted to desirabilities).
    """

    name: str
    description: str
    scorer: Callable
    batch: str = "scores"
    needs_goal: bool = False  # scores a desirability: needs --range, --maximize or --minimize
    needs_window: bool = False
    members: bool = False  # reads the ensemble's members for a window goal when the model has them
    members_required: bool = False
    out_of_bag: bool = False  # in simulations: a bootstrap forest's out-of-bag errors
    saved_model: str | None = None  # why a saved model alone cannot rank with it (`al suggest`); None: it can
    campaign: bool = True  # a campaign (which has its training set) can use it

    @property
    def is_draw(self) -> bool:
        return self.batch in ("random", "draw", "error-model")

    def check(self, goal: Goal) -> None:
        """Refuse a goal the strategy cannot serve, before any work."""
        if self.needs_window and goal.kind != "range":
            raise TansakuError(f"strategy {self.name!r} needs a window goal (--range LO HI)")
        if self.needs_goal and goal.kind == "error":
            raise TansakuError(f"strategy {self.name!r} needs a goal: --range, --maximize or --minimize")

    def wants_members(self, goal: Goal) -> bool:
        return self.members and goal.kind == "range"

    def score(self, goal: Goal, mean, std, *, best: float | None = None, samples: np.ndarray | None = None,
              rng: np.random.Generator | None = None, kappa: float = 2.0) -> np.ndarray:
        self.check(goal)
        rng = rng or np.random.default_rng(0)
        return self.scorer(goal, np.asarray(mean, float), np.asarray(std, float), best, samples, rng, kappa)


_SATURATION = "it allocates over the regions of a simulated pool"
_DIRECT_WHY = "it fits a second model to the desirability labels, and a saved model predicts the property"


def _registry(*strategies: Strategy) -> dict[str, Strategy]:
    return {s.name: s for s in strategies}


STRATEGIES: dict[str, Strategy] = _registry(
    Strategy("random", "random order (the baseline)", lambda goal, mean, std, best, samples, rng, kappa:
             rng.random(len(mean)), batch="random"),
    Strategy("uncertainty", "largest predictive standard deviation",
             lambda goal, mean, std, best, samples, rng, kappa: std.copy()),
    Strategy("weighted", "random draws with probability ∝ standard deviation (uncertainty without chasing "
             "outliers)", _weighted_draw, batch="draw"),
    Strategy("stratified", "regions of descriptor space sampled in proportion to size x mean uncertainty "
             "(Neyman)", lambda goal, mean, std, best, samples, rng, kappa: std.copy(), batch="stratified",
             saved_model=_SATURATION, campaign=False),
    Strategy("stratified-error", "the same Neyman allocation with each region's measured error (out-of-bag "
             "residuals)", lambda goal, mean, std, best, samples, rng, kappa: std.copy(), batch="stratified",
             out_of_bag=True, saved_model=_SATURATION, campaign=False),
    Strategy("density", "random draws ∝ standard deviation x number of pool materials with the same descriptors",
             lambda goal, mean, std, best, samples, rng, kappa: std.copy(), batch="density",
             saved_model=_SATURATION, campaign=False),
    Strategy("error-model", "random draws ∝ the error a second model predicts from the forest's out-of-bag "
             "residuals", _weighted_draw, batch="error-model", out_of_bag=True,
             saved_model="it models the training set's out-of-fold errors, which a saved model does not keep; a "
                         "campaign with [goal] kind = 'error' can use it"),
    Strategy("greedy", "best predicted desirability", _greedy, needs_goal=True, members=True),
    Strategy("ei", "expected improvement of the desirability", _improvement("ei"), needs_goal=True, members=True),
    Strategy("pi", "probability of improving the desirability", _improvement("pi"), needs_goal=True,
             members=True),
    Strategy("ucb", "upper confidence bound of the desirability (kappa = 2)", _ucb, needs_goal=True, members=True),
    # The textbook way to aim EI/PI at a window: transform the labels into desirabilities and model those. The
    # surrogate must then be trained on desirabilities, which a saved property model is not: simulations only.
    Strategy("ei-direct", "expected improvement from a second model fitted to the desirability labels themselves",
             _direct("ei-direct"), batch="direct", needs_goal=True, saved_model=_DIRECT_WHY, campaign=False),
    Strategy("pi-direct", "probability of improvement from a second model fitted to the desirability labels "
             "themselves", _direct("pi-direct"), batch="direct", needs_goal=True, saved_model=_DIRECT_WHY,
             campaign=False),
    Strategy("range", "probability of lying inside the window (normal approximation)", _in_window,
             needs_window=True),
    Strategy("range-ensemble", "probability of lying inside the window (fraction of ensemble members)",
             _in_window, needs_window=True, members=True, members_required=True),
)


def strategy_named(name: str) -> Strategy:
    """The strategy called `name`, or an error listing them all."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise TansakuError(f"unknown strategy {name!r} (choose from {', '.join(STRATEGIES)})") from None


def score(name: str, goal: Goal, mean: np.ndarray, std: np.ndarray, *, best: float | None = None,
          samples: np.ndarray | None = None, rng: np.random.Generator | None = None,
          kappa: float = 2.0) -> np.ndarray:
    """Scores (higher is better) of one strategy for one goal (`Strategy.score` by name).

    `best` is the best desirability among labelled materials (EI, PI). `samples` (members x candidates) are the
    ensemble's predictions, used by the strategies that read members.
    """
    return strategy_named(name).score(goal, mean, std, best=best, samples=samples, rng=rng, kappa=kappa)
