"""How far can error-directed sampling go? An oracle for formation-energy setting (a) of issue 5.

The error-model strategy draws candidates with probability ∝ an error predicted from out-of-bag residuals.
This diagnostic replaces that prediction with the truth: every candidate's actual absolute error under the
current forest (it reads the candidates' labels, which no real campaign has). If even the oracle does not reach
random's final test MAE with ≤ 70 % of the added samples, a better error model cannot either, and the target
asks for more than error-weighted sampling gives on these data. Draws ∝ |error| and ∝ |error|^0.5 are run.

Same data, settings, seeds and splits as benchmarks/al_formation_energy.py setting (a); random's and error-model's
curves are taken from that benchmark's committed JSON (simulations are deterministic per seed).

Run: .venv/bin/python benchmarks/al_error_oracle.py [--seeds 3] [--powers 1 0.5]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import al_formation_energy as formation  # noqa: E402
from _common import RESULTS, SHARED, write_results  # noqa: E402
from tansaku.active import simulate as simulation  # noqa: E402
from tansaku.active.acquisition import Goal  # noqa: E402
from tansaku.active.pools import pool_from_csv  # noqa: E402


class ErrorOracle:
    """Stands in for `predicted_error` during one simulation: the true |error| of each candidate, to a power."""

    def __init__(self, y: np.ndarray, power: float):
        self.y, self.power = y, power
        self.model = self.candidates = None

    def choose(self, setup, strategy, model, candidates, *args, **kwargs):
        self.model, self.candidates = model, candidates  # what the error call below needs and is not given
        return original_choose(setup, strategy, model, candidates, *args, **kwargs)

    def predicted_error(self, X_labelled, residuals, X_candidates, seed=0):
        mean, _ = self.model.predict_dist(X_candidates)
        return np.maximum(np.abs(self.y[self.candidates] - mean), 1e-6) ** self.power


original_choose, original_predicted_error = simulation.choose, simulation.predicted_error  # restored after each run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--powers", nargs="+", type=float, default=[1.0, 0.5])
    parser.add_argument("--committed", type=Path, default=RESULTS / "al_formation_energy.json")
    args = parser.parse_args()
    committed = json.loads(args.committed.read_text())["settings"]["a"]
    old = committed["result"]
    pool = pool_from_csv(SHARED / "datasets" / "matbench" / "mp_e_form.csv.gz")
    setup = simulation.Setup(pool.X, pool.y, Goal("error"), init=1000, batch=200, budget=4000, seeds=args.seeds,
                             test_fraction=0.05, model="rf", trees=old["trees"])
    if len(old["strategies"]["random"]) != args.seeds:
        sys.exit(f"{args.committed} has {len(old['strategies']['random'])} seeds of random, not {args.seeds}")
    curves = {"random": old["strategies"]["random"], "error-model": old["strategies"]["error-model"]}
    start = time.perf_counter()
    for power in args.powers:
        oracle = ErrorOracle(pool.y, power)
        simulation.choose, simulation.predicted_error = oracle.choose, oracle.predicted_error
        try:
            run = simulation.simulate(setup, ["error-model"])
        finally:
            simulation.choose, simulation.predicted_error = original_choose, original_predicted_error
        curves[f"oracle, draws ∝ true error^{power:g}"] = run["strategies"]["error-model"]
    ratios = formation.additions_ratio({"strategies": curves}, 1000, 4000)
    md = ["# Error-directed sampling with an oracle (formation energies, setting (a))", "",
          f"{pool.X.shape[0]:,} compositions, the settings of `al_formation_energy.md` setting (a), {args.seeds} seeds. "
          "'oracle' draws ∝ the candidates' true absolute errors under the current forest (labels no campaign has);"
          " random and error-model are the committed curves.", "",
          "| strategy | final MAE (eV/atom) | MAE after 2,000 added | ratio | ratio per seed |",
          "| --- | --- | --- | --- | --- |"]
    for name, r in ratios.items():
        ratio = "—" if r["ratio"] is None else f"{r['ratio']:.2f}"
        seeds = ", ".join("—" if x is None else f"{x:.2f}" for x in r["ratio_per_seed"])
        md.append(f"| {name} | {r['final_mae_mean']:.4f} | {r['mae_after_2000_added']:.4f} | {ratio} | {seeds} |")
    best = min((r["ratio"] for n, r in ratios.items() if n.startswith("oracle") and r["ratio"] is not None),
               default=None)
    md += ["", f"Best oracle ratio: **{'—' if best is None else f'{best:.2f}'}** (target ≤ 0.70). "
           "'—': random's final MAE never reached within the budget. "
           f"{(time.perf_counter() - start) / 60:.0f} min."]
    write_results("al_error_oracle", {"seeds": args.seeds, "powers": args.powers, "ratios": ratios,
                                      "strategies": {n: [{k: s[k] for k in ("evaluated", "mae", "r2")} for s in c]
                                                     for n, c in curves.items()}}, "\n".join(md))


if __name__ == "__main__":
    main()
