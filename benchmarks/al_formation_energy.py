"""Uncertainty sampling against random sampling on formation energies (issue 5, experiment 1).

Data: matbench's 132,752 formation energies (../shared/datasets/matbench/mp_e_form.csv.gz), composition
descriptors, a random forest refitted every round, batches of 200 from 1,000 to 4,000 labelled.
(a) random start; the test set (5 %) is drawn like the pool.
(b) a database biased to one chemistry: start from 1,000 oxides, select from the whole pool, test on a fixed
    sample of non-oxides (5 % of the data) that never enters the pool.

Run: .venv/bin/python benchmarks/al_formation_energy.py [--seeds 3] [--settings a b] [--strategies ...]
     [--reuse benchmarks/results/al_formation_energy.json]  (curves of strategies already run with the same
     settings are taken from that file instead of being recomputed: a new strategy costs only its own runs)
Target: a strategy of our design reaches random's final test MAE with at most 70 % of random's 3,000 added
samples, in both settings; plain uncertainty sampling reported beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, SHARED, write_results  # noqa: E402
from tansaku.active.acquisition import STRATEGIES as DESCRIPTIONS  # noqa: E402
from tansaku.active.acquisition import Goal  # noqa: E402
from tansaku.active.pools import pool_from_csv  # noqa: E402
from tansaku.active.simulate import Setup, evaluations_to_reach, simulate, split  # noqa: E402
from tansaku.plots.figures import active_learning_curves  # noqa: E402

STRATEGIES = ["random", "uncertainty", "weighted", "stratified", "stratified-error", "density", "error-model"]
OURS = ["weighted", "stratified", "stratified-error", "density", "error-model"]
SAME_RUN = ("init", "batch", "budget", "model", "trees", "seeds", "n_pool", "n_test")  # must match to reuse curves
SETTINGS = {"a": "random start, test drawn like the pool", "b": "start from oxides, test on non-oxides"}


def additions_ratio(result: dict, init: int, budget: int) -> dict:
    """Per strategy: added samples needed to reach random's final MAE (on the seed-mean curves) / random's."""
    runs = result["strategies"]
    level = float(np.mean([r["mae"][-1] for r in runs["random"]]))
    out = {}
    for name, seeds in runs.items():
        mae = np.mean([r["mae"] for r in seeds], axis=0)
        reached = evaluations_to_reach(seeds[0]["evaluated"], mae, level, higher_is_better=False)
        per_seed = [evaluations_to_reach(r["evaluated"], r["mae"], r_random["mae"][-1], False)
                    for r, r_random in zip(seeds, runs["random"], strict=True)]
        out[name] = {"final_mae_mean": float(mae[-1]),
                     "final_mae_std": float(np.std([r["mae"][-1] for r in seeds])),
                     "final_r2_mean": float(np.mean([r["r2"][-1] for r in seeds])),
                     "coverage_68": float(np.mean([r["coverage_68"][-1] for r in seeds])),
                     "mae_after_2000_added": float(np.interp(init + 2000, seeds[0]["evaluated"], mae)),
                     "ratio": None if reached is None else (reached - init) / (budget - init),
                     "ratio_per_seed": [None if e is None else (e - init) / (budget - init) for e in per_seed],
                     "seconds_per_seed": float(np.mean([r["seconds"][-1] for r in seeds]))}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--settings", nargs="+", default=["a", "b"], choices=list(SETTINGS))
    parser.add_argument("--trees", type=int, default=50)
    parser.add_argument("--init", type=int, default=1000)
    parser.add_argument("--budget", type=int, default=4000)
    parser.add_argument("--strategies", nargs="+", default=STRATEGIES, choices=STRATEGIES,
                        help="random is always run: it is the yardstick")
    parser.add_argument("--reuse", type=Path, help="earlier results JSON whose curves are taken where the settings "
                                                    "match (simulations are deterministic per seed)")
    args = parser.parse_args()
    earlier = json.loads(args.reuse.read_text())["settings"] if args.reuse else {}
    strategies = ["random", *(s for s in args.strategies if s != "random")]
    ours = [s for s in OURS if s in strategies]
    if not ours:
        parser.error(f"--strategies needs at least one of ours to compare: {', '.join(OURS)}")
    pool = pool_from_csv(SHARED / "datasets" / "matbench" / "mp_e_form.csv.gz")
    oxide = pool.containing("O")
    data: dict = {"n_materials": len(pool.y), "oxide_fraction": float(oxide.mean()), "seeds": args.seeds,
                  "settings": {}}
    md = ["# Active learning of formation energies: uncertainty against random sampling", "",
          f"{len(pool.y):,} compositions (matbench mp_e_form), composition descriptors, random forest of "
          f"{args.trees} trees refitted every round, {args.init:,} labelled at the start, batches of 200, "
          f"{args.budget:,} at the end; {args.seeds} seeds, the same start and test set for every strategy.", "",
          "Strategies: " + "; ".join(f"**{s}**: {DESCRIPTIONS[s].description}" for s in strategies) + ".", "",
          "Ratio: added samples a strategy needs to reach random's final test MAE (seed-mean curves) divided by "
          f"random's {args.budget - args.init:,}; target ≤ 0.70. '—' means never reached within the budget.", ""]
    for name in args.settings:
        kw = {"init_mask": oxide, "test_mask": ~oxide} if name == "b" else {}
        setup = Setup(pool.X, pool.y, Goal("error"), init=args.init, batch=200, budget=args.budget,
                      seeds=args.seeds, test_fraction=0.05, model="rf", trees=args.trees, **kw)
        start = time.perf_counter()
        old = earlier.get(name, {}).get("result", {})
        reused = {s: old["strategies"][s] for s in strategies if s in old.get("strategies", {})}
        pool_ids, test_ids, _ = split(setup, 0)
        now = {**{key: getattr(setup, key) for key in SAME_RUN[:-2]}, "n_pool": len(pool_ids),
               "n_test": len(test_ids)}
        if reused and any(old[key] != now[key] for key in SAME_RUN):
            raise SystemExit(f"--reuse {args.reuse}: setting ({name}) was run with other settings")
        missing = [s for s in strategies if s not in reused]
        result = {**old, **now, "strategies": {}} if not missing else simulate(setup, missing)
        result["strategies"] = {s: reused.get(s) or result["strategies"][s] for s in strategies}
        seconds = time.perf_counter() - start
        summary = additions_ratio(result, args.init, args.budget)
        plot = RESULTS / f"al_formation_energy_{name}.png"
        active_learning_curves(result, plot, "formation energy, eV/atom")
        best_name = min(ours, key=lambda s: np.inf if summary[s]["ratio"] is None else summary[s]["ratio"])
        best = summary[best_name]["ratio"]
        data["settings"][name] = {"description": SETTINGS[name], "n_pool": result["n_pool"],
                                  "n_test": result["n_test"], "seconds": seconds, "reused": sorted(reused),
                                  "summary": summary,
                                  "best_of_ours": best_name, "target_met": best is not None and best <= 0.7,
                                  "result": result}
        md += [f"## Setting ({name}): {SETTINGS[name]} ({result['n_pool']:,} in pool, {result['n_test']:,} in test)",
               "", "| strategy | final MAE (eV/atom) | MAE after 2,000 added | final R² | 68 % coverage | ratio | "
               "ratio per seed |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for s, v in summary.items():
            ratio = "—" if v["ratio"] is None else f"{v['ratio']:.2f}"
            per_seed = ", ".join("—" if r is None else f"{r:.2f}" for r in v["ratio_per_seed"])
            md.append(f"| {s} | {v['final_mae_mean']:.4f} ± {v['final_mae_std']:.4f} | "
                      f"{v['mae_after_2000_added']:.4f} | {v['final_r2_mean']:.3f} | {v['coverage_68']:.2f} | "
                      f"{ratio} | {per_seed} |")
        verdict = "met" if data["settings"][name]["target_met"] else "missed"
        md += ["", f"Best of our strategies: **{best_name}**, ratio **{'—' if best is None else f'{best:.2f}'}** "
               f"(target ≤ 0.70: {verdict}). {seconds / 60:.0f} min"
               + (f" (curves of {', '.join(sorted(reused))} reused from the earlier run)." if reused else "."), "",
               f"![learning curves]({plot.name})", ""]
        print("\n".join(md[-14:]), flush=True)
    write_results("al_formation_energy", data, "\n".join(md), compact=True)


if __name__ == "__main__":
    main()
