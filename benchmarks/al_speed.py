"""One active-learning round over a 100,000-candidate pool: refit, predict mean and spread, score, pick a batch.

Pool: the first 100,000 + labelled compositions of matbench mp_e_form (composition descriptors, cached after the
first featurization, which is not timed). Per labelled-set size and surrogate we time the refit, the prediction
over all candidates, and uncertainty scoring plus a diverse batch of 200 (local penalization), and measure the
round's peak memory (tracemalloc, in a second pass). Peer in the same run: the same forest predicted tree by tree
into a trees x candidates array on one thread (what a straightforward implementation does). The 'error-model'
strategy's round instead fits its second model (extra trees on the out-of-bag residuals), predicts every
candidate's error with it, draws the batch and predicts mean and spread for the batch only.

Run: .venv/bin/python benchmarks/al_speed.py
Target (issue 5): one round under 10 s on 2 cores.
"""

from __future__ import annotations

import os
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED, no_options, write_results  # noqa: E402
from tansaku.active.acquisition import Goal, score  # noqa: E402
from tansaku.active.diversity import descriptor_coordinates, select_batch, typical_spacing  # noqa: E402
from tansaku.active.error_model import predicted_error  # noqa: E402
from tansaku.active.pools import pool_from_csv  # noqa: E402
from tansaku.models.learners import make_model  # noqa: E402

POOL = 100_000
CASES = [("rf", 50, 1000, "uncertainty"), ("rf", 50, 4000, "uncertainty"), ("et", 100, 4000, "uncertainty"),
         ("rf", 50, 4000, "error-model")]


def one_round(model_name: str, trees: int, X_lab, y_lab, X_pool, coords, spacing, strategy: str) -> dict:
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    model = make_model(model_name, 0, trees=trees, oob=strategy == "error-model").fit(X_lab, y_lab)
    t1 = time.perf_counter()
    if strategy == "error-model":  # the choice needs no pool-wide spread: the chosen batch is predicted after
        t2 = time.perf_counter()
        error = predicted_error(X_lab, y_lab - model.oob_prediction(), X_pool)
        chosen = select_batch(score(strategy, Goal("error"), error, error, rng=rng), 200, rng)
        model.predict_dist(X_pool[chosen])
    else:
        mean, std = model.predict_dist(X_pool)
        t2 = time.perf_counter()
        chosen = select_batch(score(strategy, Goal("error"), mean, std), 200, rng, coords, spacing)
    t3 = time.perf_counter()
    assert len(set(chosen.tolist())) == 200
    return {"fit": t1 - t0, "predict": t2 - t1, "select": t3 - t2, "round": t3 - t0, "model": model}


def naive_predict(model, X) -> float:
    """The peer: every tree in turn on one thread, stacked, then mean and std."""
    start = time.perf_counter()
    forest = model.learner_.forest_
    Xi = model.imputer_.transform(X)
    per_tree = np.stack([tree.predict(Xi) for tree in forest.estimators_])
    per_tree.mean(axis=0), per_tree.std(axis=0)
    return time.perf_counter() - start


def main() -> None:
    no_options(__doc__)
    pool = pool_from_csv(SHARED / "datasets" / "matbench" / "mp_e_form.csv.gz")
    rng = np.random.default_rng(0)
    order = rng.permutation(len(pool.y))
    candidates = order[:POOL]
    X_pool = pool.X[candidates]
    start = time.perf_counter()
    coords = descriptor_coordinates(X_pool)
    spacing = typical_spacing(coords, rng)
    coords_seconds = time.perf_counter() - start
    rows = []
    for model_name, trees, n_lab, strategy in CASES:
        labelled = order[POOL : POOL + n_lab]
        X_lab, y_lab = pool.X[labelled], pool.y[labelled]
        one_round(model_name, trees, X_lab, y_lab, X_pool[:1000], coords[:1000], spacing, strategy)  # warm-up
        timing = one_round(model_name, trees, X_lab, y_lab, X_pool, coords, spacing, strategy)
        model = timing.pop("model")
        peer = None if strategy == "error-model" else naive_predict(model, X_pool)  # no pool-wide predict to compare
        tracemalloc.start()
        one_round(model_name, trees, X_lab, y_lab, X_pool, coords, spacing, strategy)
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        rows.append({"model": model_name, "trees": trees, "labelled": n_lab, "strategy": strategy, **timing,
                     "peer_predict": peer, "predict_speedup": peer and peer / timing["predict"], "peak_mib": peak})
        print(rows[-1], flush=True)
    import resource

    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    worst = max(r["round"] for r in rows)
    md = ["# One active-learning round over 100,000 candidates", "",
          f"{POOL:,} candidates with composition descriptors ({X_pool.shape[1]} columns), {os.cpu_count()} cores. "
          "A round: refit the surrogate on the labelled set, predict mean and spread for every candidate, score "
          "by uncertainty, pick a batch of 200 spread out by local penalization ('error-model': fit the error "
          "model to the out-of-bag residuals, predict every candidate's error, draw 200 ∝ it, then predict mean "
          "and spread of those 200 only; it needs no pool-wide spread, so its predict column is empty). Peak memory is the round's "
          "Python/NumPy allocations (tracemalloc) beyond the pool itself; process maximum RSS "
          f"{max_rss:.0f} MiB (pool and descriptors of all 132,752 compositions included). Descriptor "
          f"coordinates for diversity (PCA, once per campaign, not per round): {coords_seconds:.1f} s.", "",
          "| surrogate | strategy | labelled | refit (s) | predict (s) | score (+ error model) + batch (s) | **round (s)** | peer predict, one "
          "thread, stacked (s) | speed-up | peak memory (MiB) |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        md.append(f"| {r['model']} ({r['trees']} trees) | {r['strategy']} | {r['labelled']:,} | {r['fit']:.2f} | {r['predict']:.2f} | "
                  f"{r['select']:.2f} | **{r['round']:.2f}** | "
                  + ("— | — |" if r["peer_predict"] is None else
                     f"{r['peer_predict']:.2f} | {r['predict_speedup']:.1f}× |") + f" {r['peak_mib']:.0f} |")
    md += ["", f"Slowest round: **{worst:.1f} s** (target < 10 s: {'met' if worst < 10 else 'missed'})."]
    write_results("al_speed", {"pool": POOL, "cases": rows, "max_rss_mib": max_rss,
                               "coords_seconds": coords_seconds, "target_met": worst < 10}, "\n".join(md))


if __name__ == "__main__":
    main()
