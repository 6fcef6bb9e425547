"""Two levels of theory for one property: a cheap level (a PBE gap) that says much about an expensive one (an
experimental or hybrid gap), each with its price, and a search that spends on the cheap level to learn where the
expensive one is worth paying for.

A hit is a material whose expensive value meets the goal, measured at the expensive level: a cheap value alone
never counts. Strategies (`TWO_LEVEL_STRATEGIES`):

- `expensive`: range search on the expensive level only (P(goal) from a surrogate of the expensive values).
- `funnel`: screen then verify, as people do by hand: range search on the cheap level, the window mapped onto
  the cheap scale by a straight line fitted to the pairs known so far; each round screens a batch and verifies
  up to a batch of the screened materials inside the mapped window widened by the line's residual spread,
  nearest its centre first.
- `two-level`: the expensive surrogate takes the cheap value as a descriptor (measured where known, else
  integrated over the cheap surrogate's prediction). Each round compares, per unit cost, promoting a screened
  material (P(goal | its cheap value) / expensive cost) with screening one (the best expected hits per cost of
  screening and then promoting the cheap outcomes worth it), and takes the best options.
- `two-level-delta`: the same, the expensive surrogate learning the difference expensive - cheap.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from tansaku import TansakuError
from tansaku.active.diversity import descriptor_coordinates, select_batch, typical_spacing
from tansaku.active.multigoal import Condition
from tansaku.models.learners import make_model

TWO_LEVEL_STRATEGIES = ("expensive", "funnel", "two-level", "two-level-delta")
_NODES, _WEIGHTS = np.polynomial.hermite.hermgauss(7)  # Gauss-Hermite: E over a normal cheap prediction


@dataclass
class TwoLevelSetup:
    """A pool with both levels' values (the simulation reveals them as they are paid for), the goal on the
    expensive level, the two prices and how the search runs. `init` materials start with both levels known;
    their price is counted for every strategy alike."""

    X: np.ndarray
    cheap: np.ndarray
    expensive: np.ndarray
    condition: Condition
    cheap_cost: float = 1.0
    expensive_cost: float = 10.0
    init: int = 20
    batch: int = 10
    budget: float = 5000.0  # cost units
    seeds: int = 10
    model: str = "et"
    trees: int = 100
    diversity: float = 1.0
    stop_at: float = 0.5  # stop a run once this fraction of the targets is found (1: spend the whole budget)

    def check(self) -> None:
        n = len(self.X)
        for name, values in (("cheap", self.cheap), ("expensive", self.expensive)):
            if len(values) != n:
                raise TansakuError(f"{name} level: {len(values)} values for {n} materials")
        for name, cost in (("cheap", self.cheap_cost), ("expensive", self.expensive_cost)):
            if not (np.isfinite(cost) and cost > 0):
                raise TansakuError(f"{name} level: its cost must be a positive number, got {cost!r}")
        if self.cheap_cost >= self.expensive_cost:
            raise TansakuError(f"the cheap level costs {self.cheap_cost:g}, not less than the expensive level's "
                               f"{self.expensive_cost:g}: nothing to gain from it")
        if not self.targets().any():
            raise TansakuError(f"no material meets {self.condition} at the expensive level: nothing to find")
        if not 2 <= self.init < n:
            raise TansakuError(f"need 2 <= init ({self.init}) < materials ({n})")

    def targets(self) -> np.ndarray:
        return self.condition.met(self.expensive)

    def start_cost(self) -> float:
        return self.init * (self.cheap_cost + self.expensive_cost)


@dataclass
class TwoLevelState:
    screened: np.ndarray  # cheap level known
    verified: np.ndarray  # expensive level known
    cost: float


def _fit(setup: TwoLevelSetup, X: np.ndarray, y: np.ndarray, seed: int):
    return make_model(setup.model, seed, trees=setup.trees).fit(X, y)


def _with_cheap(X: np.ndarray, cheap: np.ndarray) -> np.ndarray:
    return np.column_stack([X, cheap])


def expensive_given_cheap(setup: TwoLevelSetup, state: TwoLevelState, seed: int, delta: bool):
    """P(goal) as a function of (descriptors, cheap value): the surrogate of the expensive level trained on the
    materials with both levels known (`delta`: on expensive - cheap)."""
    rows = np.flatnonzero(state.verified & state.screened)
    target = setup.expensive[rows] - (setup.cheap[rows] if delta else 0.0)
    model = _fit(setup, _with_cheap(setup.X[rows], setup.cheap[rows]), target, seed)

    def probability(X: np.ndarray, cheap: np.ndarray) -> np.ndarray:
        mean, std = model.predict_dist(_with_cheap(X, cheap))
        return setup.condition.probability(mean + (cheap if delta else 0.0), std)

    return probability


def screening_rate(node_p: np.ndarray, weights: np.ndarray, cheap_cost: float, expensive_cost: float
                   ) -> np.ndarray:
    """Expected hits per unit cost of screening a material and promoting the cheap outcomes worth it.

    `node_p` (materials x nodes): P(goal) if the cheap value came out at each node, `weights` the nodes'
    probabilities (nodes, or materials x nodes when they differ, e.g. times the chance that other goals the
    screening reveals are met). Promoting the outcomes with the highest P first, the best rate over how many to
    promote is Σ_top w p / (cheap + expensive Σ_top w); promoting none earns nothing.
    """
    order = np.argsort(-node_p, axis=1)
    p = np.take_along_axis(node_p, order, axis=1)
    w = np.take_along_axis(np.broadcast_to(weights, node_p.shape), order, axis=1)
    hits = np.cumsum(w * p, axis=1)
    cost = cheap_cost + expensive_cost * np.cumsum(w, axis=1)
    return (hits / cost).max(axis=1)


def two_level_options(setup: TwoLevelSetup, state: TwoLevelState, seed: int, delta: bool,
                      eligible: np.ndarray | None = None, other: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(candidate, level, rate) of every option: promote a screened material, or screen an unscreened one.

    `eligible` limits the options to some rows (the others only teach the models); `other` is each row's
    probability of meeting goals on other properties, which the screening reveals: a promotion pays only when
    they are met."""
    n = len(setup.X)
    eligible = np.ones(n, bool) if eligible is None else eligible
    other = np.ones(n) if other is None else np.asarray(other, float)
    p_of = expensive_given_cheap(setup, state, seed, delta)
    promote = np.flatnonzero(state.screened & ~state.verified & eligible)
    screen = np.flatnonzero(~state.screened & eligible)
    rates_promote = (p_of(setup.X[promote], setup.cheap[promote]) * other[promote] / setup.expensive_cost
                     if len(promote) else [])
    rates_screen = np.zeros(len(screen))
    if len(screen):
        known = np.flatnonzero(state.screened)
        cheap_model = _fit(setup, setup.X[known], setup.cheap[known], seed)
        mean, std = cheap_model.predict_dist(setup.X[screen])
        nodes = mean[:, None] + np.sqrt(2.0) * std[:, None] * _NODES[None, :]
        node_p = np.column_stack([p_of(setup.X[screen], nodes[:, k]) for k in range(len(_NODES))])
        weights = (_WEIGHTS / np.sqrt(np.pi))[None, :] * other[screen][:, None]
        rates_screen = screening_rate(node_p, weights, setup.cheap_cost, setup.expensive_cost)
    candidates = np.concatenate([promote, screen]).astype(int)
    levels = np.concatenate([np.ones(len(promote), int), np.zeros(len(screen), int)])  # 1 expensive, 0 cheap
    return candidates, levels, np.concatenate([np.asarray(rates_promote, float), rates_screen])


def _funnel_picks(setup: TwoLevelSetup, state: TwoLevelState, seed: int) -> tuple[list[int], list[int]]:
    """(to screen, to verify): range search on the cheap level for the window mapped onto it by a straight line
    fitted to the pairs known so far, and the screened materials within that window widened by the line's
    residual spread (the tolerance people allow for the cheap level's error), nearest its centre first."""
    pairs = np.flatnonzero(state.verified & state.screened)
    slope, intercept = np.polyfit(setup.cheap[pairs], setup.expensive[pairs], 1)
    if slope <= 0:
        slope, intercept = 1.0, 0.0
    spread = float(np.std(setup.expensive[pairs] - (intercept + slope * setup.cheap[pairs]))) / slope

    def on_cheap(bound, widen):
        return None if bound is None else (bound - intercept) / slope + widen

    lo, hi = setup.condition.lo, setup.condition.hi
    mapped = Condition(setup.condition.prop, on_cheap(lo, 0.0), on_cheap(hi, 0.0))
    band = Condition(setup.condition.prop, on_cheap(lo, -spread), on_cheap(hi, spread))
    waiting = np.flatnonzero(state.screened & ~state.verified)
    waiting = waiting[band.met(setup.cheap[waiting])]
    centre = np.mean([b for b in (mapped.lo, mapped.hi) if b is not None])
    verify = waiting[np.argsort(np.abs(setup.cheap[waiting] - centre), kind="stable")][: setup.batch]
    unscreened = np.flatnonzero(~state.screened)
    screen: list[int] = []
    if len(unscreened):
        known = np.flatnonzero(state.screened)
        mean, std = _fit(setup, setup.X[known], setup.cheap[known], seed).predict_dist(setup.X[unscreened])
        p = mapped.probability(mean, std)
        screen = unscreened[np.argsort(-p, kind="stable")[: setup.batch]].tolist()
    return screen, verify.tolist()


def run_two_level(setup: TwoLevelSetup, strategy: str, seed: int) -> dict:
    """One discovery curve: hits (expensive values in the goal) against cumulative cost, with the picks per
    level."""
    if strategy not in TWO_LEVEL_STRATEGIES:
        raise TansakuError(f"unknown two-level strategy {strategy!r} (choose from {', '.join(TWO_LEVEL_STRATEGIES)})")
    rng = np.random.default_rng(seed)
    n = len(setup.X)
    hit = setup.targets()
    start = rng.choice(n, size=setup.init, replace=False)
    state = TwoLevelState(np.zeros(n, bool), np.zeros(n, bool), setup.start_cost())
    state.screened[start] = state.verified[start] = True
    choice_rng = np.random.default_rng(10_000 + seed)
    coords = descriptor_coordinates(setup.X) if setup.diversity > 0 and setup.batch > 1 else None
    spacing = typical_spacing(coords, np.random.default_rng(0)) if coords is not None else 1.0
    goal = setup.stop_at * hit.sum()
    curve: dict = {"cost": [], "found": [], "cheap": [], "expensive": []}
    began = time.perf_counter()
    while True:
        curve["cost"].append(state.cost)
        curve["found"].append(int(hit[state.verified].sum()))
        curve["cheap"].append(int(state.screened.sum()))
        curve["expensive"].append(int(state.verified.sum()))
        if state.cost >= setup.budget or curve["found"][-1] >= goal or state.verified.all():
            break
        if strategy == "expensive":
            rows = np.flatnonzero(state.verified)
            todo = np.flatnonzero(~state.verified)
            mean, std = _fit(setup, setup.X[rows], setup.expensive[rows], seed).predict_dist(setup.X[todo])
            scores = setup.condition.probability(mean, std)
            picked = todo[_select(scores, setup.batch, choice_rng, coords, todo, setup.diversity * spacing)]
            screen, verify = [], picked.tolist()
        elif strategy == "funnel":
            screen, verify = _funnel_picks(setup, state, seed)
        else:
            candidates, levels, rates = two_level_options(setup, state, seed, strategy == "two-level-delta")
            chosen = _select(rates, setup.batch, choice_rng, coords, candidates, setup.diversity * spacing)
            screen = [int(candidates[i]) for i in chosen if levels[i] == 0]
            verify = [int(candidates[i]) for i in chosen if levels[i] == 1]
        if not screen and not verify:
            break  # nothing left that this strategy would pay for
        state.screened[screen] = True
        state.verified[verify] = True
        state.cost += len(screen) * setup.cheap_cost + len(verify) * setup.expensive_cost
    curve["seconds"] = time.perf_counter() - began
    return curve


def _select(scores, k, rng, coords, candidates, length_scale) -> np.ndarray:
    if coords is None:
        return select_batch(scores, k, rng)
    return select_batch(scores, k, rng, coords[candidates], length_scale)


def cost_to_reach(curve: dict, level: float) -> float | None:
    """The cumulative cost at which a curve first finds `level` hits (linear within a round); None if never."""
    from tansaku.active.simulate import evaluations_to_reach

    return evaluations_to_reach(curve["cost"], curve["found"], level, True)


def simulate_two_level(setup: TwoLevelSetup, strategies: list[str], progress=None) -> dict:
    """Every strategy on every seed (the same start per seed): the JSON-ready curves with, per run, the cost at
    which half of the targets were found."""
    setup.check()
    unknown = sorted(set(strategies) - set(TWO_LEVEL_STRATEGIES))
    if unknown:
        raise TansakuError(f"unknown two-level strategy {', '.join(unknown)} "
                           f"(choose from {', '.join(TWO_LEVEL_STRATEGIES)})")
    n_targets = int(setup.targets().sum())
    result: dict = {"goal": str(setup.condition), "n_pool": len(setup.X), "n_targets": n_targets,
                    "costs": {"cheap": setup.cheap_cost, "expensive": setup.expensive_cost}, "init": setup.init,
                    "batch": setup.batch, "budget": setup.budget if np.isfinite(setup.budget) else None,
                    "model": setup.model, "trees": setup.trees,
                    "seeds": setup.seeds, "strategies": {s: [] for s in strategies}}
    jobs = [(seed, s) for seed in range(setup.seeds) for s in strategies]
    for seed, strategy in progress(jobs) if progress else jobs:
        curve = run_two_level(setup, strategy, seed)
        curve["cost_to_half"] = cost_to_reach(curve, n_targets / 2)
        result["strategies"][strategy].append({"seed": seed, **curve})
    return result
