"""Target-range search for band gaps of the reference paper's 1,266 oxides (issue 5, experiment 2).

Pool: the 1,266 oxides with structure descriptors; the labels are the database's PBEsol band gaps. Every
strategy starts from the same 20 random oxides per seed and adds 5 per round. Targets: the oxides whose gap
lies in the window. We count evaluations (labelled oxides, the initial ones included) until half of the
targets are found, per seed, and compare target range with the better of EI and PI on desirability.

Run: .venv/bin/python benchmarks/al_band_gap.py [--seeds 10] [--budget 700] [--windows 2-3 4-5] [--strategies ...]
Target: target range needs ≤ 0.6 × the evaluations of the best of EI/PI (median over ≥ 10 seeds).
Two EI/PI baselines are measured: 'ei'/'pi' take the desirability of every tree's prediction (our stronger
variant), 'ei-direct'/'pi-direct' fit a second forest to the desirability labels (the textbook construction:
transform the objective, then ordinary EI/PI). The ratio is reported against both.
A full run takes hours on 2 cores, so every (window, strategy, seed) curve is checkpointed under --work as it
finishes, with the commit that made it; the same command run again (after a kill, or with a strategy added)
computes only what is missing. A checkpoint is reused only when made from the same descriptors, labels,
settings and code (a fingerprint of the modules that decide a curve); otherwise it is computed again.
Each window also gets a hindsight ranking (the same forest cross-fitted on 80 % of all labels): whether the
target is within this surrogate's reach at all; `--hindsight rf lgbm blend` ranks with other learners too
(would a different surrogate put it within reach?).
Reference (plain version measured by the issue's author): ~180 of 322 found after 400 evaluations, EI ~113,
random ~100.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    REPO,
    RESULTS,
    SHARED,
    code_fingerprint,
    data_fingerprint,
    save_checkpoint,
    stored_result,
    this_run,
    write_results,
)
from tansaku.active import acquisition, diversity, error_model, ranking  # noqa: E402
from tansaku.active import simulate as simulation  # noqa: E402
from tansaku.active.acquisition import Goal, score  # noqa: E402
from tansaku.active.pools import pool_from_database  # noqa: E402
from tansaku.active.simulate import Setup, evaluations_to_reach, simulate  # noqa: E402
from tansaku.models import calibration, learners  # noqa: E402
from tansaku.models.learners import MODELS, make_model  # noqa: E402
from tansaku.plots.figures import active_learning_curves  # noqa: E402
from tansaku.sources.oxi_diel_db import import_oxi_diel_db  # noqa: E402
from tansaku.store import open_database  # noqa: E402

STRATEGIES = ["random", "ei", "pi", "ei-direct", "pi-direct", "ucb", "range", "range-ensemble"]
BASELINES = {"per-tree desirability (ei, pi)": ("ei", "pi"),
             "model fitted to the desirability (ei-direct, pi-direct)": ("ei-direct", "pi-direct")}
SETTINGS = ("init", "batch", "budget", "model", "trees", "diversity", "calibrate", "test_fraction")


def checkpoint_key(setup: Setup, window: str) -> dict:
    """What a curve depends on besides seed and strategy: the code that draws it, data, settings and window."""
    return {"code": code_fingerprint(simulation, acquisition, diversity, error_model, ranking, learners, calibration),
            "data": data_fingerprint(setup.X, setup.y), "window": window,
            **{k: getattr(setup, k) for k in SETTINGS}}


def hindsight(setup: Setup, repeats: int = 3) -> dict:
    """How many evaluations half the targets take when a ranker has seen 80 % of all labels: the same forest and
    range probability, cross-fitted (5-fold) so that every material is scored by a model that never saw it,
    then the whole pool walked down in score order. An active-learning run has at most a few hundred labels, so
    this is about the best ordering this model and these descriptors give; if it needs more evaluations than a
    target allows, no acquisition function on this surrogate reaches the target."""
    from sklearn.model_selection import KFold

    goal = setup.goal
    hit = (setup.y >= goal.lo) & (setup.y <= goal.hi)
    half = hit.sum() / 2
    needed, precision = [], []
    for repeat in range(repeats):
        p = np.empty(len(setup.y))
        for train, test in KFold(5, shuffle=True, random_state=repeat).split(setup.X):
            model = make_model(setup.model, repeat, trees=setup.trees).fit(setup.X[train], setup.y[train])
            p[test] = score("range", goal, *model.predict_dist(setup.X[test]))
        found = np.cumsum(hit[np.argsort(-p, kind="stable")])
        needed.append(int(np.argmax(found >= half)) + 1)
        precision.append(float(found[199] / 200))
    return {"evaluations_for_half": needed, "median": float(np.median(needed)),
            "precision_top_200": precision}


def run_curve(setup: Setup, seed: int, strategy: str, path: Path, key: dict) -> dict:
    """One strategy on one seed, checkpointed before it is returned: a killed run loses only running jobs."""
    start = time.perf_counter()
    result = simulate(replace(setup, seeds=1, first_seed=seed), [strategy])
    part = {"meta": {k: v for k, v in result.items() if k != "strategies"},
            "curve": result["strategies"][strategy][0], "seconds": time.perf_counter() - start, "run": this_run()}
    save_checkpoint(path, key, part)
    return part


def half_evaluations(result: dict, strategy: str) -> list[float | None]:
    return [evaluations_to_reach(r["evaluated"], r["found"], result["n_targets"] / 2, True)
            for r in result["strategies"][strategy]]


def summarize(result: dict) -> dict:
    """Median (and 10-90 %) evaluations for half the targets; a seed that never got there counts as > budget."""
    out = {}
    for name in result["strategies"]:
        half = half_evaluations(result, name)
        filled = np.array([h if h is not None else np.inf for h in half])
        found400 = [int(np.interp(400, r["evaluated"], r["found"])) for r in result["strategies"][name]]
        out[name] = {"half": half, "median_half": float(np.median(filled)),
                     "p10_half": float(np.percentile(filled, 10)), "p90_half": float(np.percentile(filled, 90)),
                     "seeds_reaching_half": int(np.isfinite(filled).sum()),
                     "found_at_400_median": float(np.median(found400)),
                     "found_final_median": float(np.median([r["found"][-1] for r in result["strategies"][name]]))}
    return out


def pin_worker(counter) -> None:
    """Give each worker process a core of its own: the forests' threads use only ~1.2 of 2 cores."""
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[index % len(cpus)]})


def merge(parts: dict[tuple[str, int], dict], strategies: list[str], seeds: int) -> dict:
    """One result (as `simulate` returns it) from per-(strategy, seed) parts of one window."""
    first = next(iter(parts.values()))
    return {**first["meta"], "seeds": seeds,
            "strategies": {s: [parts[s, seed]["curve"] for seed in range(seeds)] for s in strategies}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=700)
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--windows", nargs="+", default=["2-3", "4-5"])
    parser.add_argument("--db", type=Path, help="An oxide database already imported (skips the import).")
    parser.add_argument("--strategies", nargs="+", default=STRATEGIES, choices=STRATEGIES,
                        help="Which to run; a baseline pair (ei/pi, ei-direct/pi-direct) needs one of its two.")
    parser.add_argument("--hindsight", nargs="*", default=[], choices=MODELS, metavar="MODEL",
                        help=f"Also rank in hindsight with these learners ({', '.join(MODELS)}): would another "
                             "surrogate put the target within reach? The simulations keep extra trees.")
    parser.add_argument("--work", type=Path, default=REPO / "benchmarks" / "work" / "al_band_gap",
                        help="Checkpoints, one file per strategy and seed: running again computes only what is "
                             "missing, or stale (other data or settings; a strategy whose first rounds the "
                             "current code no longer reproduces).")
    args = parser.parse_args()
    db_path = args.db
    if db_path is None:
        db_path = Path(tempfile.mkdtemp()) / "oxides.db"
        import_oxi_diel_db(open_database(db_path), SHARED / "datasets" / "oxi_diel_db")
    pool = pool_from_database(open_database(db_path), "band_gap", "structure", "paper")
    data: dict = {"n_materials": len(pool.y), "seeds": args.seeds, "budget": args.budget, "windows": {}}
    md = ["# Target-range search for band gaps of the 1,266 oxides", "",
          f"Extra trees ({args.trees} trees, structure descriptors), 20 random oxides to start, batches of 5, "
          f"{args.budget} evaluations at most, {args.seeds} seeds (same start and pool for every strategy). "
          "Desirability for EI/PI/UCB: −|gap − window centre|. 'ei', 'pi', 'ucb' compute it for every tree's "
          "prediction and use its mean and spread; 'ei-direct', 'pi-direct' fit a second forest to the "
          "desirability labels and use that forest's mean and spread (the textbook construction). 'range': "
          "Φ((hi−μ)/σ) − Φ((lo−μ)/σ) from the trees' mean and spread; 'range-ensemble': fraction of trees "
          "predicting inside.",
          "", "Evaluations until half of the in-window oxides are found (median over seeds, 10–90 % in brackets; "
          "a seed that never gets there counts as more than the budget):", ""]
    setups, keys, parts, jobs = {}, {}, {}, []
    for window in args.windows:
        lo, hi = (float(x) for x in window.split("-"))
        setups[window] = Setup(pool.X, pool.y, Goal("range", lo, hi), init=20, batch=5, budget=args.budget,
                               seeds=args.seeds, test_fraction=0.0, model="et", trees=args.trees, names=pool.names)
        keys[window] = checkpoint_key(setups[window], window)
        parts[window] = {}
        for strategy in args.strategies:
            for seed in range(args.seeds):
                path = args.work / window / f"{strategy}-seed{seed}.json"
                if (part := stored_result(path, keys[window])) is not None:
                    parts[window][strategy, seed] = part
                else:
                    jobs.append((window, seed, strategy, path))
    cached = {w: len(parts[w]) for w in args.windows}
    print(f"{sum(cached.values())} curves from checkpoints in {args.work}, {len(jobs)} to compute", flush=True)
    start = time.perf_counter()
    needed = args.seeds * len(args.strategies)

    def finish(w: str) -> None:
        nonlocal md
        md += window_report(w, merge(parts[w], args.strategies, args.seeds), args, len(pool.y), data,
                            time.perf_counter() - start, cached[w], parts[w], hindsight(setups[w]),
                            {m: hindsight(replace(setups[w], model=m)) for m in args.hindsight if m != setups[w].model})
        write_results("al_band_gap", data, "\n".join(md), compact=True)  # a long run keeps what it has

    for w in (w for w in args.windows if len(parts[w]) == needed):  # everything checkpointed already
        finish(w)
    workers = max(1, min(len(jobs), os.cpu_count() or 1))
    with ProcessPoolExecutor(workers, initializer=pin_worker, initargs=(multiprocessing.Value("i", 0),)) as executor:
        futures = {executor.submit(run_curve, setups[w], seed, strategy, path, keys[w]): (w, seed, strategy)
                   for w, seed, strategy, path in jobs}
        for future in as_completed(futures):
            w, seed, strategy = futures[future]
            parts[w][strategy, seed] = future.result()
            print(f"window {w}: {len(parts[w])}/{needed} curves ({strategy}, seed {seed})", flush=True)
            if len(parts[w]) == needed:
                finish(w)


def window_report(window: str, result: dict, args, n_materials: int, data: dict, seconds: float, cached: int,
                  parts: dict, bound: dict, others: dict[str, dict]) -> list[str]:
    """Summary, ratios, plot and Markdown of one finished window; fills data['windows'][window]."""
    md: list[str] = []
    lo, hi = (float(x) for x in window.split("-"))
    summary = summarize(result)
    ranges = [s for s in ("range", "range-ensemble") if s in summary]
    ours = min(ranges, key=lambda s: summary[s]["median_half"]) if ranges else None
    ratios = {}
    for label, pair in BASELINES.items():
        if ours is None or not any(s in summary for s in pair):
            continue
        best = min((s for s in pair if s in summary), key=lambda s: summary[s]["median_half"])
        per_seed = [a / b for a, b in zip(summary[ours]["half"], summary[best]["half"], strict=True)
                    if a is not None and b is not None]
        ratio = summary[ours]["median_half"] / summary[best]["median_half"]
        ratios[label] = {"baseline": best, "ratio": ratio, "ratio_per_seed": per_seed,
                         "target_met": bool(ratio <= 0.6)}
    plot = RESULTS / f"al_band_gap_{window}.png"
    active_learning_curves(result, plot, "band gap, eV")
    core_seconds = sum(p["seconds"] for p in parts.values())
    data["windows"][window] = {"n_targets": result["n_targets"], "seconds": seconds, "core_seconds": core_seconds,
                               "curves_from_checkpoints": cached, "summary": summary, "ours": ours,
                               "ratios": ratios, "hindsight": bound, "hindsight_other_learners": others,
                               "result": result}
    md += [f"## Window {lo:g}–{hi:g} eV: {result['n_targets']} of {n_materials} oxides inside", "",
           "| strategy | evaluations for half (median, 10–90 %) | seeds reaching half | found at 400 "
           f"(median) | found at {args.budget} (median) |", "| --- | --- | --- | --- | --- |"]
    for name, s in summary.items():
        half = "> budget" if not np.isfinite(s["median_half"]) else f"{s['median_half']:.0f}"
        p10 = "> budget" if not np.isfinite(s["p10_half"]) else f"{s['p10_half']:.0f}"
        p90 = "> budget" if not np.isfinite(s["p90_half"]) else f"{s['p90_half']:.0f}"
        md.append(f"| {name} | {half} ({p10}–{p90}) | {s['seeds_reaching_half']}/{args.seeds} | "
                  f"{s['found_at_400_median']:.0f} | {s['found_final_median']:.0f} |")
    md.append("")
    for label, r in ratios.items():
        verdict = "met" if r["target_met"] else "missed"
        spread = (f"; per seed {np.percentile(r['ratio_per_seed'], 10):.2f}–"
                  f"{np.percentile(r['ratio_per_seed'], 90):.2f} (10–90 %)" if r["ratio_per_seed"] else "")
        md.append(f"- Against EI/PI on {label}: {ours} / {r['baseline']} = **{r['ratio']:.2f}** "
                  f"(target ≤ 0.6: {verdict}){spread}.")
    if ratios:
        allowed = 0.6 * min(summary[r["baseline"]]["median_half"] for r in ratios.values())
        md.append(f"- Hindsight: the same forest cross-fitted on 80 % of all labels, ranking the whole pool by range "
                  f"probability, needs **{bound['median']:.0f}** evaluations for half the targets (3 fold splits: "
                  f"{', '.join(map(str, bound['evaluations_for_half']))}; precision of its first 200: "
                  f"{np.mean(bound['precision_top_200']):.2f}); the target allows {allowed:.0f}. An active-learning "
                  "run knows far fewer labels than this ranker.")
        if others:
            md.append("- The same hindsight with the project's other learners (does a different surrogate open the "
                      "way?): " + ", ".join(f"{m} **{b['median']:.0f}** (precision of first 200: "
                                            f"{np.mean(b['precision_top_200']):.2f})" for m, b in others.items())
                      + f"; allowed {allowed:.0f}.")
    made = sorted({(p["run"]["commit"], p["run"]["date"][:10]) for p in parts.values()})
    runs = "; ".join(f"{commit} ({date}): {sum(p['run']['commit'] == commit for p in parts.values())}"
                     for commit, date in made)
    origin = (f"{cached} of its {len(parts)} curves came from checkpoints of earlier invocations (same code, data "
              "and settings)" if cached else "every curve computed by this invocation")
    if cached < len(parts):
        origin += f", which reached its last curve after {seconds / 60:.1f} min wall"
    origin += f"; curves by the commit that made them: {runs}."
    md += ["", f"{core_seconds / 60:.1f} core-minutes for this window's curves (one process per core); {origin}", "",
           f"![discovery curves]({plot.name})", ""]
    print("\n".join(md[-10:]), flush=True)
    return md


if __name__ == "__main__":
    main()
