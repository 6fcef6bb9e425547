"""Searching on several properties at once: conditions such as `band_gap>=3` and `eps_total>=20`, the
probability that a candidate meets all of them, and a pool simulation that compares strategies on it.

One surrogate per property. Their errors are treated as independent (the members of two separately trained
forests are not paired draws), so the joint probability is the product of the per-condition probabilities;
the result records that choice. Pairing them through one multi-output forest, whose trees predict every
property at once, found the high-k oxides later (115 evaluations against 107, `al_multigoal_variants.md`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from tansaku import TansakuError
from tansaku.active.acquisition import expected_improvement
from tansaku.active.diversity import descriptor_coordinates, select_batch, typical_spacing
from tansaku.models import transform as transforms
from tansaku.models.learners import make_model
from tansaku.numbers import is_finite_number

_TINY = 1e-12
_SYNTAX = "property>=LO, property<=HI or property=LO:HI (e.g. band_gap>=3, m_e<=0.5, band_gap_hse06=2.2:2.6)"


@dataclass(frozen=True)
class Condition:
    """One property's requirement: at least `lo`, at most `hi`, or both (a window)."""

    prop: str
    lo: float | None = None
    hi: float | None = None

    def __post_init__(self) -> None:
        if self.lo is None and self.hi is None:
            raise TansakuError(f"condition on {self.prop!r} bounds nothing")
        for bound in (self.lo, self.hi):  # `--goal 'band_gap>=nan'` parses, and nothing would ever meet it
            if bound is not None and not is_finite_number(bound):
                raise TansakuError(f"condition on {self.prop!r}: {bound!r} is not a finite number")
        if self.lo is not None and self.hi is not None and not self.lo < self.hi:
            raise TansakuError(f"condition on {self.prop!r}: empty window, {self.lo} is not below {self.hi}")

    @classmethod
    def parse(cls, text: str) -> Condition:
        match = re.fullmatch(r"\s*([A-Za-z_]\w*)\s*(>=|<=|>|<|=)\s*([^:\s]+)\s*(?::\s*(\S+))?\s*", text)
        if not match:
            raise TansakuError(f"goal {text!r} is not {_SYNTAX}")
        prop, op, first, second = match.groups()
        try:
            a = float(first)
            b = float(second) if second is not None else None
        except ValueError:
            raise TansakuError(f"goal {text!r}: {first!r} or {second!r} is not a number") from None
        if op == "=":
            if b is None:
                raise TansakuError(f"goal {text!r}: a window needs both ends, LO:HI")
            return cls(prop, a, b)
        if b is not None:
            raise TansakuError(f"goal {text!r}: LO:HI goes with '=', not {op!r}")
        return cls(prop, lo=a) if op.startswith(">") else cls(prop, hi=a)

    def met(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=float)
        ok = np.isfinite(values)
        if self.lo is not None:
            ok &= values >= self.lo
        if self.hi is not None:
            ok &= values <= self.hi
        return ok

    def probability(self, mean: np.ndarray, std: np.ndarray, transform: str = "none") -> np.ndarray:
        """P(condition) for a normal prediction in model units (log10 for dielectric constants)."""
        mean, std = np.asarray(mean, float), np.maximum(np.asarray(std, float), _TINY)
        upper = np.ones_like(mean)
        lower = np.zeros_like(mean)
        if self.hi is not None:
            upper = norm.cdf((_bound(self.hi, transform, +np.inf) - mean) / std)
        if self.lo is not None:
            lower = norm.cdf((_bound(self.lo, transform, -np.inf) - mean) / std)
        return np.clip(upper - lower, 0.0, 1.0)

    def desirability(self, values: np.ndarray, scale: float) -> np.ndarray:
        """A smooth 0-1 desirability (logistic at each bound, width `scale`): what a desirability-product method
        multiplies."""
        values = np.asarray(values, float)
        d = np.ones_like(values)
        if self.lo is not None:
            d *= 1.0 / (1.0 + np.exp(-(values - self.lo) / scale))
        if self.hi is not None:
            d *= 1.0 / (1.0 + np.exp((values - self.hi) / scale))
        return d

    def __str__(self) -> str:
        if self.lo is not None and self.hi is not None:
            return f"{self.prop}={self.lo:g}:{self.hi:g}"
        return f"{self.prop}>={self.lo:g}" if self.lo is not None else f"{self.prop}<={self.hi:g}"


def _bound(value: float, transform: str, beyond: float) -> float:
    """A bound in model units; a log10 model's bound at or below zero lies below every value."""
    if transform == "log10":
        return float(np.log10(value)) if value > 0 else beyond
    return float(value)


def joint_probability(conditions: list[Condition], predictions: dict[str, tuple[np.ndarray, np.ndarray, str]]
                      ) -> np.ndarray:
    """P(all conditions) = Π P(condition), from each property's (mean, std, transform), errors independent."""
    joint = None
    for condition in conditions:
        mean, std, transform = predictions[condition.prop]
        p = condition.probability(mean, std, transform)
        joint = p if joint is None else joint * p
    return joint


MULTIGOAL_STRATEGIES = ("joint", "random", "ei-desirability")  # and single:<property>


@dataclass
class MultiSetup:
    """A pool simulation on several properties: descriptors, each property's values (property units), the
    conditions, and how the search runs."""

    X: np.ndarray
    values: dict[str, np.ndarray]
    conditions: list[Condition]
    init: int = 20
    batch: int = 10
    budget: int = 400
    seeds: int = 10
    model: str = "et"
    trees: int = 100
    diversity: float = 1.0

    def check(self) -> None:
        n = len(self.X)
        for condition in self.conditions:
            if condition.prop not in self.values:
                raise TansakuError(f"goal on {condition.prop!r}: no values of it (have {', '.join(self.values)})")
            if len(self.values[condition.prop]) != n:
                raise TansakuError(f"{condition.prop}: {len(self.values[condition.prop])} values for {n} rows")
        if not self.targets().any():
            raise TansakuError("no material meets every goal: nothing to find (" +
                               ", ".join(map(str, self.conditions)) + ")")
        if not 2 <= self.init < self.budget <= n:
            raise TansakuError(f"need 2 <= init ({self.init}) < budget ({self.budget}) <= materials ({n})")

    def targets(self) -> np.ndarray:
        hit = np.ones(len(self.X), dtype=bool)
        for condition in self.conditions:
            hit &= condition.met(self.values[condition.prop])
        return hit


def _surrogate(setup: MultiSetup, prop: str, labelled: list[int], seed: int):
    y = setup.values[prop][labelled]
    transform, _ = transforms.choose(prop, y)
    usable = transforms.usable(transform, y)
    model = make_model(setup.model, seed, trees=setup.trees)
    model.fit(setup.X[labelled][usable], transforms.forward(transform, y[usable]))
    return model, transform


def _scores(setup: MultiSetup, strategy: str, labelled: list[int], candidates: np.ndarray, seed: int,
            rng: np.random.Generator) -> np.ndarray:
    Xc = setup.X[candidates]
    if strategy == "random":
        return rng.random(len(candidates))
    if strategy == "ei-desirability":  # the usual construction: model the product of desirabilities, EI on it
        d = np.ones(len(labelled))
        for condition in setup.conditions:
            y = setup.values[condition.prop][labelled]
            d *= condition.desirability(y, 0.1 * float(np.nanstd(setup.values[condition.prop][labelled])) or 1.0)
        model = make_model(setup.model, seed, trees=setup.trees).fit(setup.X[labelled], d)
        mean, std = model.predict_dist(Xc)
        return expected_improvement(mean, std, float(d.max()))
    props = [c.prop for c in setup.conditions]
    if strategy.startswith("single:"):
        props = [strategy.removeprefix("single:")]
    predictions = {}
    for prop in props:
        model, transform = _surrogate(setup, prop, labelled, seed)
        mean, std = model.predict_dist(Xc)
        predictions[prop] = (mean, std, transform)
    return joint_probability([c for c in setup.conditions if c.prop in props], predictions)


def initial_sample(setup: MultiSetup, seed: int) -> np.ndarray:
    """The `init` random materials every strategy of a seed starts from."""
    return np.random.default_rng(seed).choice(len(setup.X), size=setup.init, replace=False)


def run_multigoal(setup: MultiSetup, strategy: str, seed: int, scores: Callable | None = None) -> dict:
    """One discovery curve: targets found against materials labelled (every property revealed at once).
    `scores(setup, labelled, candidates, seed)`, when given, replaces the strategy's acquisition (a variant to
    compare; batches are spread as for `joint`)."""
    known = {"joint", "random", "ei-desirability"} | {f"single:{c.prop}" for c in setup.conditions}
    if strategy not in known and scores is None:
        raise TansakuError(f"unknown multi-goal strategy {strategy!r} (choose from {', '.join(sorted(known))})")
    hit = setup.targets()
    labelled = [int(i) for i in initial_sample(setup, seed)]
    choice_rng = np.random.default_rng(10_000 + seed)
    coords = descriptor_coordinates(setup.X) if setup.diversity > 0 and setup.batch > 1 else None
    spacing = typical_spacing(coords, np.random.default_rng(0)) if coords is not None else 1.0
    curve: dict = {"evaluated": [], "found": []}
    start = time.perf_counter()
    while True:
        curve["evaluated"].append(len(labelled))
        curve["found"].append(int(hit[labelled].sum()))
        if len(labelled) >= setup.budget:
            break
        unlabelled = np.setdiff1d(np.arange(len(setup.X)), labelled)
        k = min(setup.batch, setup.budget - len(labelled), len(unlabelled))
        values = (scores(setup, labelled, unlabelled, seed) if scores is not None
                  else _scores(setup, strategy, labelled, unlabelled, seed, choice_rng))
        if strategy == "random" or coords is None:
            chosen = select_batch(values, k, choice_rng)
        else:
            chosen = select_batch(values, k, choice_rng, coords[unlabelled], setup.diversity * spacing)
        labelled.extend(int(i) for i in unlabelled[chosen])
    curve["seconds"] = time.perf_counter() - start
    return curve


def simulate_multigoal(setup: MultiSetup, strategies: list[str], progress=None) -> dict:
    """Every strategy on every seed (the same start per seed); the JSON-ready result with, per strategy, the
    evaluations each seed needed to find half of the materials meeting every goal."""
    from tansaku.active.simulate import evaluations_to_reach

    setup.check()
    n_targets = int(setup.targets().sum())
    result: dict = {"goals": [str(c) for c in setup.conditions], "n_pool": len(setup.X), "n_targets": n_targets,
                    "init": setup.init, "batch": setup.batch, "budget": setup.budget, "model": setup.model,
                    "trees": setup.trees, "seeds": setup.seeds, "joint_errors": "independent",
                    "strategies": {s: [] for s in strategies}}
    jobs = [(seed, s) for seed in range(setup.seeds) for s in strategies]
    for seed, strategy in progress(jobs) if progress else jobs:
        curve = run_multigoal(setup, strategy, seed)
        curve["to_half"] = evaluations_to_reach(curve["evaluated"], curve["found"], n_targets / 2, True)
        result["strategies"][strategy].append({"seed": seed, **curve})
    return result
