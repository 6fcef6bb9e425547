"""Two goals at once on the reference paper's oxides: PBEsol gap ≥ 3 eV and ε_total ≥ 20 (the high-k screen).

Pool: the 1,266 oxides of subset `paper` that hold both values, structure descriptors; every property revealed
when an oxide is labelled. Per seed every strategy starts from the same 20 random oxides and adds 10 per round.
Strategies (`tansaku.active.multigoal`): `joint` (the probability of meeting both goals, one extra-trees surrogate
per property, errors independent), `random`, `single:band_gap` and `single:eps_total` (the probability of one
goal only), `ei-desirability` (EI on a forest fitted to the product of logistic desirabilities). We count
evaluations until half of the oxides that meet both goals are found.
Target (issue 32): `joint` needs ≤ 0.7× the evaluations of the best baseline (median over ≥ 10 seeds).

Run: .venv/bin/python benchmarks/al_multigoal.py [--seeds 10] [--budget 400]
Each (strategy, seed) curve is checkpointed under benchmarks/work/al_multigoal with the fingerprint of the code,
data and settings that made it (and its commit): run again to continue; a checkpoint made otherwise is recomputed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, RESULTS, SHARED, checkpointed, code_fingerprint, data_fingerprint, write_results  # noqa: E402
from tansaku.active import diversity, multigoal  # noqa: E402
from tansaku.active.multigoal import Condition, MultiSetup, initial_sample, run_multigoal  # noqa: E402
from tansaku.active.pools import multi_property_pool  # noqa: E402
from tansaku.active.simulate import evaluations_to_reach  # noqa: E402
from tansaku.models import learners  # noqa: E402
from tansaku.sources.oxi_diel_db import import_oxi_diel_db  # noqa: E402
from tansaku.store import open_database  # noqa: E402

WORK = REPO / "benchmarks" / "work" / "al_multigoal"
GOALS = ["band_gap>=3", "eps_total>=20"]
STRATEGIES = ["joint", "random", "single:band_gap", "single:eps_total", "ei-desirability"]


def hindsight(setup: MultiSetup) -> tuple[int, float]:
    """Evaluations to find half of the targets by ranking every oxide once by the joint probability from the
    same surrogates cross-fitted (5-fold) on all the others' labels: far more than any search has labelled when it
    reaches half. First with no random start paid, then (median over seeds) after each seed's own 20 random
    oxides, the rest in that order: about the least any strategy using these surrogates could need."""
    from sklearn.model_selection import KFold

    from tansaku.models import transform as transforms

    p = np.ones(len(setup.X))
    for condition in setup.conditions:
        y = setup.values[condition.prop]
        transform, _ = transforms.choose(condition.prop, y)
        target = transforms.forward(transform, y)
        for train, test in KFold(5, shuffle=True, random_state=0).split(setup.X):
            model = learners.make_model(setup.model, 0, trees=setup.trees).fit(setup.X[train], target[train])
            p[test] *= condition.probability(*model.predict_dist(setup.X[test]), transform)
    hits, order = setup.targets(), np.argsort(-p, kind="stable")
    half = hits.sum() / 2
    found = np.cumsum(hits[order])
    with_start = []
    for seed in range(setup.seeds):
        start = initial_sample(setup, seed)
        rest = order[~np.isin(order, start)]
        found_after = hits[start].sum() + np.cumsum(hits[rest])
        with_start.append(len(start) + int(np.argmax(found_after >= half)) + 1)
    return int(np.argmax(found >= half)) + 1, float(np.median(with_start))


def plot(curves: dict, n_half: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for strategy, runs in curves.items():
        x = np.array(runs[0]["evaluated"])
        found = np.array([r["found"] for r in runs], dtype=float)
        line, = ax.plot(x, np.median(found, axis=0), label=strategy)
        ax.fill_between(x, np.percentile(found, 10, axis=0), np.percentile(found, 90, axis=0),
                        color=line.get_color(), alpha=0.15)
    ax.axhline(n_half, color="grey", ls="--", lw=0.8, label="half of the targets")
    ax.set_xlabel("oxides labelled (evaluations)")
    ax.set_ylabel("found with gap ≥ 3 eV and ε ≥ 20")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=400)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--diversity", type=float, default=1.0,
                        help="Batch spreading (local penalization) for every strategy; results other than 1 go to "
                             "al_multigoal_diversity-<value>.md")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    db = open_database(Path(tempfile.mkdtemp()) / "oxides.db")
    import_oxi_diel_db(db, SHARED / "datasets" / "oxi_diel_db")
    X, values, _ = multi_property_pool(db, [Condition.parse(g).prop for g in GOALS], "structure",
                                       "paper")
    setup = MultiSetup(X, values, [Condition.parse(g) for g in GOALS], init=20, batch=10, budget=args.budget,
                       seeds=args.seeds, trees=args.trees, diversity=args.diversity)
    setup.check()
    n_targets = int(setup.targets().sum())
    curves: dict[str, list] = {s: [] for s in STRATEGIES}
    key = {"code": code_fingerprint(multigoal, diversity, learners),
           "data": data_fingerprint(X, *(values[c.prop] for c in setup.conditions)), "goals": GOALS,
           "init": setup.init, "batch": setup.batch, "budget": args.budget, "trees": args.trees}
    suffix = "" if args.diversity == 1.0 else f"_diversity-{args.diversity:g}"
    if suffix:
        key["diversity"] = args.diversity  # curves made with the default spreading keep their checkpoints
    for seed in range(args.seeds):
        for strategy in STRATEGIES:
            def compute(strategy=strategy, seed=seed) -> dict:
                started = time.perf_counter()
                curve = run_multigoal(setup, strategy, seed)
                print(f"seed {seed} {strategy}: {curve['found'][-1]} of {n_targets} in {args.budget}, "
                      f"{time.perf_counter() - started:.0f} s", flush=True)
                return curve

            path = WORK / f"{strategy.replace(':', '-')}-{seed}-{args.budget}-{args.trees}{suffix}.json"
            curves[strategy].append(checkpointed(path, key, compute))
    half = n_targets / 2
    reach = {s: [evaluations_to_reach(c["evaluated"], c["found"], half, True) for c in runs]
             for s, runs in curves.items()}

    def median(values):
        finite = [v for v in values if v is not None]
        return float(np.median(finite)) if len(finite) * 2 > len(values) else None  # most runs must get there

    medians = {s: median(v) for s, v in reach.items()}
    baselines = {s: m for s, m in medians.items() if s != "joint" and m is not None}
    best = min(baselines, key=baselines.get) if baselines else None
    ratio = medians["joint"] / baselines[best] if best and medians["joint"] else None
    # the bound no strategy can beat: after the random start, every pick a target
    oracle = float(np.median([c["evaluated"][0] + max(0.0, np.ceil(half - c["found"][0])) for c in curves["joint"]]))
    bound, bound_after_start = hindsight(setup)
    figure = RESULTS / f"al_multigoal{suffix}.png"
    plot(curves, half, figure)
    rows = "\n".join(
        f"| {s} | {'not reached' if medians[s] is None else f'{medians[s]:.0f}'} | "
        f"{sum(v is not None for v in reach[s])}/{len(reach[s])} | "
        f"{np.median([c['found'][-1] for c in curves[s]]):.0f} | "
        f"{np.mean([c['seconds'] for c in curves[s]]):.0f} |" for s in STRATEGIES)
    verdict = ("not measurable (a strategy did not reach half of the targets in most seeds)" if ratio is None else
               f"**{ratio:.2f}×** the best baseline ({best}); target ≤ 0.7×: {'met' if ratio <= 0.7 else 'not met'}")
    markdown = f"""# Two goals at once: gap ≥ 3 eV and ε_total ≥ 20 among the oxides

{len(X)} oxides of the paper's subset hold both values; {n_targets} meet both goals. Per seed (n = {args.seeds}):
20 random oxides, then batches of 10 up to {args.budget}, spread by local penalization of strength
{args.diversity:g} (1: the default); extra trees ({args.trees}) on structure descriptors, one per property (ε learned
as log10); the joint probability treats the two surrogates' errors as independent.

| strategy | evaluations to find half ({half:.1f}), median | seeds that got there | found at {args.budget} (median) | seconds per run |
| --- | --- | --- | --- | --- |
{rows}

`joint` against the best baseline: {verdict}. A strategy that picked only targets after the random start would
need {oracle:.0f} evaluations (median): the limit of any method here. Ranking every oxide once by the joint
probability of the same surrogates cross-fitted (5-fold) on all the others' labels, with no random start to pay,
finds half in **{bound}**; after each seed's own {setup.init} random oxides (which every strategy pays), in
**{bound_after_start:.0f}** (median): about the least these surrogates allow{
    f" (0.7× the best baseline is {0.7 * baselines[best]:.0f}: out of reach with them)" if best and bound_after_start > 0.7 * baselines[best]
    else ""}.

![discovery curves]({figure.name})
"""
    write_results(f"al_multigoal{suffix}", {"goals": GOALS, "diversity": args.diversity, "n_pool": len(X), "n_targets": n_targets, "seeds": args.seeds,
                                   "budget": args.budget, "trees": args.trees, "evaluations_to_half": reach,
                                   "medians": medians, "oracle_evaluations_to_half": oracle, "hindsight_evaluations_to_half": bound, "hindsight_after_random_start": bound_after_start, "ratio_to_best_baseline": ratio, "best_baseline": best,
                                   "curves": {s: [c["found"] for c in runs] for s, runs in curves.items()},
                                   "evaluated": curves["joint"][0]["evaluated"]}, markdown)


if __name__ == "__main__":
    main()
