"""Two levels of theory: find experimental band gaps in 2.2-2.6 eV with PBE gaps as the cheap level (issue 32).

Pool: the compositions that matbench's PBE gaps (Materials Project, median over polymorphs) and experimental gaps
share, with composition descriptors. A hit is an experimental gap in the window, measured (paid for) at the
expensive level. Prices: PBE 1, experiment 10 (also 3 and 30). Every strategy starts, per seed, from the same 20
compositions with both levels known (their price counted for all) and picks 10 options per round; we measure the
cumulative cost to find half of the in-window compositions.
Strategies (`tansaku.active.multifidelity`): `expensive` (range search on the experimental level only), `funnel`
(range search on PBE for the window mapped onto it, then verifying the screened compositions nearest the mapped
centre), `two-level` (the experimental surrogate takes the PBE gap as a descriptor; promote or screen by expected
hits per cost), `two-level-delta` (the same, learning experiment - PBE; at price 10 only).
`expensive` and `funnel` pick the same materials whatever the prices: they run once per seed and are costed at
each price. The hindsight bound: the same forest cross-fitted (5-fold) on all compositions with the PBE gap of
every composition known for free; the verifications it needs to find half, times the price, is what no strategy
using this surrogate could beat by much.

Run: .venv/bin/python benchmarks/al_multifidelity.py [--seeds 10] [--trees 50]
Each curve is checkpointed under benchmarks/work/al_multifidelity with the fingerprint of the code, data and
settings that made it (and its commit): run again to continue; a checkpoint made otherwise is recomputed.
Target: two-level ≤ 0.5× the cost of the better single-level baseline (median over seeds).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, RESULTS, SHARED, checkpointed, code_fingerprint, data_fingerprint, write_results  # noqa: E402
from tansaku.active import diversity, multifidelity, multigoal  # noqa: E402
from tansaku.active.multifidelity import TwoLevelSetup, run_two_level  # noqa: E402
from tansaku.active.multigoal import Condition  # noqa: E402
from tansaku.active.pools import two_level_pool  # noqa: E402
from tansaku.active.simulate import evaluations_to_reach  # noqa: E402
from tansaku.models import learners  # noqa: E402

WORK = REPO / "benchmarks" / "work" / "al_multifidelity"
MATBENCH = SHARED / "datasets" / "matbench"
GOAL = "band_gap=2.2:2.6"
PRICES = (3.0, 10.0, 30.0)
FIXED = ("expensive", "funnel")  # their picks do not depend on the prices
PRICED = {"two-level": PRICES, "two-level-delta": (10.0,)}


def hindsight(pool, condition: Condition, trees: int) -> dict:
    """Verifications to find half with a forest cross-fitted on every composition, with and without free PBE gaps."""
    from sklearn.model_selection import KFold

    from tansaku.models.learners import make_model

    hit = condition.met(pool.expensive)
    out = {}
    for name, features in (("descriptors", pool.X), ("descriptors + PBE gap", np.column_stack([pool.X, pool.cheap]))):
        p = np.zeros(len(hit))
        for train, test in KFold(5, shuffle=True, random_state=0).split(features):
            model = make_model("et", 0, trees=trees).fit(features[train], pool.expensive[train])
            p[test] = condition.probability(*model.predict_dist(features[test]))
        found = np.cumsum(hit[np.argsort(-p, kind="stable")])
        out[name] = int(np.argmax(found >= hit.sum() / 2)) + 1
    return out


def plot(curves: dict, half: float, path: Path) -> None:
    """One panel per price: hits against cost, median over seeds (a run that stopped at half keeps its count)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PRICES), figsize=(4.2 * len(PRICES), 3.8), sharey=True)
    for ax, price in zip(axes, PRICES, strict=True):
        for label, runs in curves[price].items():
            grid = np.linspace(0, max(max(r["cost"]) for r in runs), 200)
            found = np.array([np.interp(grid, r["cost"], r["found"]) for r in runs])
            ax.plot(grid, np.median(found, axis=0), label=label)
        ax.axhline(half, color="grey", ls="--", lw=0.8)
        ax.set_title(f"experiment costs {price:g}× a PBE gap", fontsize=9)
        ax.set_xlabel("cumulative cost (PBE gaps = 1)")
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_ylabel("experimental gaps in 2.2-2.6 eV found")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--trees", type=int, default=50)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    pool = two_level_pool(MATBENCH / "matbench_mp_gap.csv.gz", MATBENCH / "matbench_expt_gap.csv.gz")
    condition = Condition.parse(GOAL)

    def setup(price: float) -> TwoLevelSetup:
        return TwoLevelSetup(pool.X, pool.cheap, pool.expensive, condition, 1.0, price, init=20, batch=10,
                             budget=1e9, seeds=args.seeds, trees=args.trees)

    base = setup(10.0)
    base.check()
    n_targets = int(base.targets().sum())
    half = n_targets / 2

    code = code_fingerprint(multifidelity, multigoal, diversity, learners)
    data = data_fingerprint(pool.X, pool.cheap, pool.expensive)

    def curve_for(strategy: str, price: float, seed: int) -> dict:
        def compute() -> dict:
            started = time.perf_counter()
            curve = run_two_level(setup(price), strategy, seed)
            print(f"{strategy} price {price:g} seed {seed}: cost {curve['cost'][-1]:.0f}, {curve['cheap'][-1]} PBE, "
                  f"{curve['expensive'][-1]} experiments, {time.perf_counter() - started:.0f} s", flush=True)
            return curve

        key = {"code": code, "data": data, "goal": GOAL, "trees": args.trees, "init": 20, "batch": 10}
        return checkpointed(WORK / f"{strategy}-{price:g}-{seed}-{args.trees}.json", key, compute)

    curves: dict[float, dict[str, list]] = {p: {} for p in PRICES}
    for seed in range(args.seeds):
        for strategy in FIXED:
            curve = curve_for(strategy, 10.0, seed)
            for price in PRICES:
                costs = [c + e * price for c, e in zip(curve["cheap"], curve["expensive"], strict=True)]
                curves[price].setdefault(strategy, []).append({**curve, "cost": costs})
        for strategy, prices in PRICED.items():
            for price in prices:
                curves[price].setdefault(strategy, []).append(curve_for(strategy, price, seed))
    reach = {p: {s: [evaluations_to_reach(r["cost"], r["found"], half, True) for r in runs]
                 for s, runs in by.items()} for p, by in curves.items()}

    def median(values):
        finite = [v for v in values if v is not None]
        return float(np.median(finite)) if len(finite) * 2 > len(values) else None

    bound = hindsight(pool, condition, args.trees)
    rows, summary = [], {}
    for price in PRICES:
        medians = {s: median(v) for s, v in reach[price].items()}
        baselines = {s: medians[s] for s in FIXED if medians[s] is not None}
        best = min(baselines, key=baselines.get) if baselines else None
        ratio = medians["two-level"] / baselines[best] if best and medians["two-level"] else None
        free_pbe = bound["descriptors + PBE gap"] * price
        summary[price] = {"medians": medians, "best_baseline": best, "ratio": ratio,
                          "bound_free_pbe_cost": free_pbe,
                          "bound_ratio": free_pbe / baselines[best] if best else None}
        for s, values in reach[price].items():
            finite = [v for v in values if v is not None]
            spread = f"{np.percentile(finite, 10):.0f}-{np.percentile(finite, 90):.0f}" if finite else "–"
            last = curves[price][s]
            rows.append(f"| {price:g} | {s} | {'not reached' if medians[s] is None else f'{medians[s]:.0f}'} | "
                        f"{spread} | {len(finite)}/{len(values)} | "
                        f"{np.median([r['cheap'][-1] for r in last]):.0f} / "
                        f"{np.median([r['expensive'][-1] for r in last]):.0f} | "
                        f"{np.mean([r['seconds'] for r in last]):.0f} |")
    verdicts = "\n".join(
        f"- price {p:g}: two-level **{s['ratio']:.2f}×** the better baseline ({s['best_baseline']}); "
        f"hindsight bound with every PBE gap free: {s['bound_ratio']:.2f}×" if s["ratio"] else
        f"- price {p:g}: not measurable (a strategy did not reach half in most seeds)" for p, s in summary.items())
    figure = RESULTS / "al_multifidelity.png"
    plot(curves, half, figure)
    markdown = f"""# Two levels of theory: experimental gaps in 2.2-2.6 eV, PBE gaps as the cheap level

{len(pool.formulas)} compositions hold both a PBE gap (median over polymorphs) and an experimental gap; {n_targets}
have an experimental gap in the window. Per seed (n = {args.seeds}): 20 random compositions with both levels known,
then 10 options per round; extra trees ({args.trees}) on composition descriptors. Cost: PBE gap 1, experiment as
in the first column; the 20 starting compositions count for every strategy.

| price of an experiment | strategy | cost to find half ({half:.0f}), median | 10-90 % over seeds | seeds that got there | PBE gaps / experiments paid (median, at stop) | seconds per run |
| --- | --- | --- | --- | --- | --- | --- |
{chr(10).join(rows)}

Target: two-level ≤ 0.5× the better single-level baseline.
{verdicts}

Hindsight (5-fold cross-fitted forest on all {len(pool.formulas)} compositions): {bound['descriptors']} experiments
find half from the descriptors alone, {bound['descriptors + PBE gap']} with every PBE gap known for free. The
second, times the price, is about the least any strategy with this surrogate could pay; its ratio to the
measured baseline is the bound above.

![hits against cost](al_multifidelity.png)
"""
    write_results("al_multifidelity", {"goal": GOAL, "n_pool": len(pool.formulas), "n_targets": n_targets,
                                       "seeds": args.seeds, "trees": args.trees, "prices": PRICES,
                                       "cost_to_half": {str(p): v for p, v in reach.items()},
                                       "summary": {str(p): v for p, v in summary.items()},
                                       "hindsight_experiments_to_half": bound}, markdown)


if __name__ == "__main__":
    main()
