"""Pool-based simulation of active learning on a labelled dataset: which strategy needs fewer calculations?

The labels stay hidden until a strategy asks for them. Each seed fixes one split into pool and test set and
one initial labelled set, shared by every strategy, so strategies are compared on the same data. Per round we
record how many materials are labelled, how many targets (materials with the wanted property) are among them,
and the test-set error of the model trained on them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np
from sklearn.metrics import mean_absolute_error, r2_score

from tansaku import TansakuError
from tansaku.active.acquisition import STRATEGIES, Goal, strategy_named
from tansaku.active.diversity import (
    density_batch,
    descriptor_coordinates,
    duplicate_groups,
    pool_strata,
    stratified_batch,
    stratum_errors,
    typical_spacing,
)
from tansaku.active.error_model import predicted_error
from tansaku.active.ranking import Prediction, predict_for, rank
from tansaku.models.calibration import Calibrated
from tansaku.models.learners import make_model


@dataclass
class Setup:
    """Everything that defines a simulation except the strategies compared in it."""

    X: np.ndarray
    y: np.ndarray
    goal: Goal
    init: int
    batch: int
    budget: int  # total labelled materials at the end, the initial ones included
    seeds: int = 5
    test_fraction: float = 0.2
    model: str = "et"
    trees: int = 100
    calibrate: bool = False
    diversity: float = 1.0  # batch penalty length scale, in units of the pool's nearest-neighbour spacing
    top_fraction: float = 0.05  # maximize/minimize: targets are this top fraction of the pool
    init_mask: np.ndarray | None = None  # initial set drawn only where True (e.g. oxides)
    test_mask: np.ndarray | None = None  # test set drawn only where True (e.g. non-oxides); the rest is pool
    strata: int = 1000  # regions of the pool for the 'stratified' strategy
    names: list[str] = field(default_factory=list)
    first_seed: int = 0  # seeds first_seed ... first_seed + seeds - 1 (lets a run be split across processes)

    def check(self) -> None:
        n = len(self.y)
        if n == 0:
            raise TansakuError("the pool is empty: no material has the property")
        if len(self.X) != n:
            raise TansakuError(f"{len(self.X)} descriptor rows for {n} labels")
        bad = ~np.isfinite(self.X).any(axis=1)
        if bad.any():
            first = self.names[int(np.flatnonzero(bad)[0])] if self.names else int(np.flatnonzero(bad)[0])
            raise TansakuError(f"{bad.sum()} materials have no usable descriptor (all NaN), e.g. {first}")
        if not 0 <= self.test_fraction < 1:
            raise TansakuError(f"--test-fraction must be in [0, 1), got {self.test_fraction}")
        if self.init < 2:
            raise TansakuError("--init must be at least 2 (a model needs data to start from)")
        if self.batch < 1:
            raise TansakuError("--batch must be at least 1")
        if self.budget <= self.init:
            raise TansakuError(f"the budget ({self.budget}) must be larger than the initial set ({self.init})")
        if self.seeds < 1:
            raise TansakuError("--seeds must be at least 1")


def split(setup: Setup, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pool, test, initial) index arrays for one seed; initial ⊂ pool, pool ∩ test = ∅."""
    rng = np.random.default_rng(seed)
    n = len(setup.y)
    if setup.test_mask is not None:
        test = np.flatnonzero(setup.test_mask)
        if setup.test_fraction and len(test) > setup.test_fraction * n:
            test = np.sort(rng.choice(test, size=int(setup.test_fraction * n), replace=False))
        pool = np.setdiff1d(np.arange(n), test)
    else:
        order = rng.permutation(n)
        n_test = int(round(setup.test_fraction * n))
        test, pool = np.sort(order[:n_test]), np.sort(order[n_test:])
    eligible = pool if setup.init_mask is None else pool[setup.init_mask[pool]]
    if len(pool) < setup.budget:
        raise TansakuError(f"the budget ({setup.budget}) exceeds the pool ({len(pool)} materials)")
    if len(eligible) < setup.init:
        raise TansakuError(f"only {len(eligible)} materials can start the run, --init asks for {setup.init}")
    initial = rng.choice(eligible, size=setup.init, replace=False)
    return pool, test, initial


def targets(setup: Setup, pool: np.ndarray) -> np.ndarray:
    """Boolean over all materials: which pool materials count as found when labelled."""
    hit = np.zeros(len(setup.y), dtype=bool)
    goal = setup.goal
    if goal.kind == "range":
        hit[pool] = (setup.y[pool] >= goal.lo) & (setup.y[pool] <= goal.hi)
    elif goal.kind in ("maximize", "minimize"):
        d = goal.desirability(setup.y[pool])
        threshold = np.quantile(d, 1 - setup.top_fraction)
        hit[pool] = d >= threshold
    return hit


def _fit(setup: Setup, seed: int, X, y, oob: bool = False):
    model = make_model(setup.model, seed, trees=setup.trees, oob=oob)
    if setup.calibrate:
        model = Calibrated(model, folds=3, random_state=seed)
    return model.fit(X, y)


def run_strategy(setup: Setup, strategy: str, seed: int, pool, test, initial, hit, coords=None,
                 spacing: float = 1.0, regions: dict | None = None) -> dict:
    """One learning/discovery curve; raises if a material would be labelled twice or leak from the test set."""
    rng = np.random.default_rng(10_000 + seed)
    labelled = list(initial)
    unlabelled = np.ones(len(setup.y), dtype=bool)
    unlabelled[np.setdiff1d(np.arange(len(setup.y)), pool)] = False
    unlabelled[labelled] = False
    test_set = set(test.tolist())
    curve: dict[str, list] = {"evaluated": [], "found": [], "mae": [], "r2": [], "coverage_68": [], "seconds": []}
    start = time.perf_counter()
    while True:
        if len(set(labelled)) != len(labelled) or test_set.intersection(labelled):
            raise TansakuError("bookkeeping error: a material was labelled twice or taken from the test set")
        model = _fit(setup, seed, setup.X[labelled], setup.y[labelled], oob=STRATEGIES[strategy].out_of_bag)
        held = test if len(test) else np.flatnonzero(unlabelled)
        mean, std = model.predict_dist(setup.X[held])
        curve["evaluated"].append(len(labelled))
        curve["found"].append(int(hit[labelled].sum()))
        curve["mae"].append(float(mean_absolute_error(setup.y[held], mean)))
        curve["r2"].append(float(r2_score(setup.y[held], mean)))
        curve["coverage_68"].append(float(np.mean(np.abs(setup.y[held] - mean) <= std)))
        curve["seconds"].append(time.perf_counter() - start)
        if len(labelled) >= setup.budget or not unlabelled.any():
            break
        candidates = np.flatnonzero(unlabelled)
        chosen = candidates[choose(setup, strategy, model, candidates, labelled, rng, coords, spacing, regions, seed)]
        labelled.extend(int(i) for i in chosen)
        unlabelled[chosen] = False
    if setup.goal.kind == "error":
        curve["found"] = None
    curve["labelled"] = [int(i) for i in labelled]  # order of labelling (indices into the data), initial ones first
    return curve


def choose(setup: Setup, strategy: str, model, candidates: np.ndarray, labelled: list[int],
           rng: np.random.Generator, coords=None, spacing: float = 1.0, regions: dict | None = None,
           seed: int = 0) -> np.ndarray:
    """Positions (in `candidates`) of the next batch; `regions` holds the pool's strata and duplicate groups."""
    k = min(setup.batch, setup.budget - len(labelled), len(candidates))
    chosen = STRATEGIES[strategy]
    Xc = setup.X[candidates]
    allocate = None
    if chosen.batch == "density":
        groups, size = regions["groups"]
        allocate = partial(density_batch, groups=groups[candidates], group_size=size, k=k, rng=rng)
    elif chosen.batch == "stratified":
        strata = regions["strata"]
        n_strata = int(strata.max()) + 1
        counts = np.bincount(strata[labelled], minlength=n_strata)

        def allocate(std):
            sigma = None
            if chosen.out_of_bag:  # each region's measured error
                residuals = setup.y[labelled] - model.oob_prediction()
                sigma = stratum_errors(std, strata[candidates], residuals, strata[labelled], n_strata)
            return stratified_batch(std, strata[candidates], counts, k, rng, sigma)
    if chosen.batch == "error-model":
        error = predicted_error(setup.X[labelled], setup.y[labelled] - model.oob_prediction(), Xc, seed=seed)
        prediction = Prediction(error, error)
    elif chosen.batch == "direct":  # a second surrogate, fitted to the desirabilities of the labelled ones
        d_model = _fit(setup, seed, setup.X[labelled], setup.goal.desirability(setup.y[labelled]))
        prediction = predict_for(chosen, setup.goal, d_model, Xc)
    else:
        prediction = predict_for(chosen, setup.goal, model, Xc)
    best = None
    if setup.goal.kind != "error":
        best = float(setup.goal.desirability(setup.y[labelled]).max())
    return rank(chosen, setup.goal, prediction, k, rng, best=best,
                coords=None if coords is None else coords[candidates], spacing=spacing,
                diversity=setup.diversity, allocate=allocate).chosen


def simulate(setup: Setup, strategies: list[str], progress: Callable | None = None) -> dict:
    """Every strategy on every seed; returns the JSON-ready result (see `tansaku al simulate --help`)."""
    setup.check()
    for name in strategies:  # fail before hours of work, not in round 1 of the third strategy
        strategy_named(name).check(setup.goal)
    if blocks := make_model(setup.model).extra_blocks:
        raise TansakuError(f"--model {setup.model} also reads the {', '.join(blocks)} descriptor block, which "
                           "simulation pools do not carry; simulate with rf, et, lgbm, lgbm-cal or blend")
    oob = sorted(s for s in strategies if STRATEGIES[s].out_of_bag)
    if oob and (setup.model != "rf" or setup.calibrate):
        raise TansakuError(f"strategy {oob[0]!r} measures errors out of bag: it needs --model rf (a "
                           "bootstrap forest) without --calibrate")
    coords = descriptor_coordinates(setup.X) if setup.diversity > 0 and setup.batch > 1 else None
    spacing = typical_spacing(coords, np.random.default_rng(0)) if coords is not None else 1.0
    result: dict = {"goal": setup.goal.__dict__, "n_materials": int(len(setup.y)), "init": setup.init,
                    "batch": setup.batch, "budget": setup.budget, "model": setup.model, "trees": setup.trees,
                    "calibrate": setup.calibrate, "diversity": setup.diversity, "seeds": setup.seeds,
                    "strategies": {s: [] for s in strategies}}
    jobs = [(seed, s) for seed in range(setup.first_seed, setup.first_seed + setup.seeds) for s in strategies]
    groups = None
    splits: dict[int, tuple] = {}
    for seed, strategy in progress(jobs) if progress else jobs:
        if seed not in splits:
            pool, test, initial = split(setup, seed)
            regions: dict = {}
            if any(STRATEGIES[s].batch == "stratified" for s in strategies):
                regions["strata"] = np.full(len(setup.y), -1)
                regions["strata"][pool] = pool_strata(setup.X[pool], setup.strata, seed)
            if "density" in strategies:
                groups = duplicate_groups(setup.X) if groups is None else groups
                regions["groups"] = (groups, np.bincount(groups[pool], minlength=groups.max() + 1))
            splits[seed] = (pool, test, initial, targets(setup, pool), regions)
            result.setdefault("n_pool", int(len(pool)))
            result.setdefault("n_test", int(len(test)))
            if setup.goal.kind != "error":
                result.setdefault("n_targets", int(splits[seed][3].sum()))
        pool, test, initial, hit, regions = splits[seed]
        curve = run_strategy(setup, strategy, seed, pool, test, initial, hit, coords, spacing, regions)
        result["strategies"][strategy].append({"seed": seed, **curve})
    return result


def evaluations_to_reach(evaluated, values, level: float, higher_is_better: bool) -> float | None:
    """First number of evaluations at which a curve reaches `level` (linear between rounds); None if never."""
    evaluated, values = np.asarray(evaluated, float), np.asarray(values, float)
    ok = values >= level if higher_is_better else values <= level
    if not ok.any():
        return None
    i = int(np.argmax(ok))
    if i == 0:
        return float(evaluated[0])
    x0, x1, v0, v1 = evaluated[i - 1], evaluated[i], values[i - 1], values[i]
    return float(x0 + (level - v0) / (v1 - v0) * (x1 - x0)) if v1 != v0 else float(x1)
