"""A two-level campaign replayed against stored values: Materials Project PBE gaps (cheap, price 1) and
experimental gaps (expensive, price 10), target 2.2-2.6 eV at the expensive level.

Pool: 600 compositions drawn (seed 0) from the 3,347 that hold both values (polymorphs' PBE gaps by their median,
`active.pools.two_level_pool`), stored as composition-only materials. The campaign (`tansaku campaign`, dataset
oracle, strategy joint with levels): 20 candidates at both levels first, then 10 options per round ranked by
expected hits per CPU hour, 140 picks. Measured per campaign seed: how often a promoted composition is a hit,
against the share of hits in the pool (what a random promotion would give), and what each level cost.

Run: .venv/bin/python benchmarks/campaign_two_levels.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED, write_results  # noqa: E402
from tansaku.active.campaign import run_campaign  # noqa: E402
from tansaku.active.campaign_config import config_from_dict  # noqa: E402
from tansaku.active.oracles import DatasetOracle  # noqa: E402
from tansaku.active.pools import store_two_level_pool, two_level_pool  # noqa: E402
from tansaku.store import open_database  # noqa: E402

WINDOW, METHOD, PRICES = (2.2, 2.6), "import:matbench", {"cheap": 1.0, "expensive": 10.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    matbench = SHARED / "datasets" / "matbench"
    pool = two_level_pool(matbench / "matbench_mp_gap.csv.gz", matbench / "matbench_expt_gap.csv.gz")
    rows = np.random.default_rng(0).choice(len(pool.formulas), size=600, replace=False)
    db = open_database(Path(tempfile.mkdtemp()) / "gaps.db")
    store_two_level_pool(db, pool, rows, METHOD)
    base = float(np.mean([WINDOW[0] <= pool.expensive[i] <= WINDOW[1] for i in rows]))
    runs = []
    for seed in range(args.seeds):
        config = config_from_dict({
            "name": f"green-{seed}", "goal": [{"property": "band_gap_expt", "lo": WINDOW[0], "hi": WINDOW[1],
                                               "cheap": "band_gap"}],
            "levels": {"cheap_cpu_hours": PRICES["cheap"], "expensive_cpu_hours": PRICES["expensive"]},
            "acquisition": {"batch": 10, "seed": seed}, "budget": {"runs": 140}, "candidates": {"query": "all"},
            "training": {"init_random": 20}, "model": {"learner": "et", "trees": 50, "cv_folds": 0},
            "oracle": {"kind": "dataset", "method": METHOD}})
        oracle = DatasetOracle(db, config.property, METHOD, config.properties, config.level_properties(), PRICES)
        status = run_campaign(db, config, oracle, say=lambda _: None)
        picks = [p for r in status["rounds"] for p in r["picks"]]
        promoted = [p for p in picks if p["level"] == "expensive" and p["reason"].startswith("promote:")]
        runs.append({"seed": seed, "hits": status["hits"], "promoted": len(promoted),
                     "promoted_hit_rate": float(np.mean([p["hit"] for p in promoted])) if promoted else None,
                     "by_level": status["by_level"], "cost": status["cpu_hours"]})
        print(runs[-1], flush=True)
    lines = ["# A two-level campaign replayed: PBE gaps screen, experimental gaps confirm (2.2-2.6 eV)", "",
             f"600 compositions (seed 0) of the 3,347 with both levels; {base:.1%} of them are hits. Prices: PBE "
             "gap 1, experimental gap 10. 20 candidates at both levels first, then 10 options per round, 140 picks, "
             "extra trees (50) on composition descriptors.", "",
             "| campaign seed | hits | promoted (after screening) | hit rate of the promoted | cheap runs / cost | "
             "expensive runs / cost |", "| --- | --- | --- | --- | --- | --- |"]
    for r in runs:
        rate = "–" if r["promoted_hit_rate"] is None else f"{r['promoted_hit_rate']:.1%}"
        lines.append(f"| {r['seed']} | {r['hits']} | {r['promoted']} | {rate} | "
                     f"{r['by_level']['cheap']['runs']} / {r['by_level']['cheap']['cpu_hours']:g} | "
                     f"{r['by_level']['expensive']['runs']} / {r['by_level']['expensive']['cpu_hours']:g} |")
    rates = [r["promoted_hit_rate"] for r in runs if r["promoted_hit_rate"] is not None]
    lines += ["", f"Median hit rate of the promoted: **{np.median(rates):.1%}**, against {base:.1%} for a random "
              f"promotion ({np.median(rates) / base:.1f}×)."]
    write_results("campaign_two_levels", {"base_rate": base, "runs": runs, "prices": PRICES}, "\n".join(lines))


if __name__ == "__main__":
    main()
