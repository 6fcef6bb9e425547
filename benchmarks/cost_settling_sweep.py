"""The cost model's leave-one-out check on the DFT benchmark for several settling constants (issue 34).

Run: .venv/bin/python benchmarks/cost_settling_sweep.py [--results benchmarks/results/dft_reproduction.json]
     [--constants 0.15 0.2 0.25 0.3 0.35]

Computes no DFT: it re-sizes the finished materials of a `dft_reproduction.py` results file with each value of
`SETTLED_SPACING_PER_SQRT_GAP` (the k-spacing per √gap at which a small gap's ε∞ is taken to settle) and runs the
benchmark's own `cost_model_check` (step weights and scale learned from the other materials, each estimate sized
by the database's gap). Why: the constant decides which probes a small gap is charged, and the benchmark's small
gaps do not settle in the order of their gaps, so the value in `active/cost.py` is the one with the smallest total
error, and this is where that choice is measured.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dft_reproduction as benchmark  # noqa: E402
from _common import RESULTS, write_results  # noqa: E402
from tansaku.active import cost  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=RESULTS / "dft_reproduction.json",
                        help="a dft_reproduction.py results file (its finished materials are re-sized)")
    parser.add_argument("--constants", type=float, nargs="+", default=[0.15, 0.2, 0.25, 0.3, 0.35, 0.4],
                        help="values of SETTLED_SPACING_PER_SQRT_GAP to try (Å⁻¹ per √eV)")
    args = parser.parse_args()
    if not args.results.exists():
        sys.exit(f"{args.results}: no such results file (run benchmarks/dft_reproduction.py first)")
    try:
        data = json.loads(args.results.read_text())
        settings = benchmark.benchmark_settings(data["preset"], data.get("overrides", []), data.get("fixed", []))
        finished, commit = [r for r in data["materials"] if r.get("status") == "done"], data["machine"]["commit"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        sys.exit(f"{args.results}: not a dft_reproduction.py results file ({type(exc).__name__}: {exc})")
    ctx = SimpleNamespace(settings=settings, pseudos=benchmark.shared_pseudos())
    in_use = cost.SETTLED_SPACING_PER_SQRT_GAP
    sweep = []
    try:
        for constant in args.constants:
            cost.SETTLED_SPACING_PER_SQRT_GAP = constant
            rows = [{**row, "cost_size": benchmark._size(ctx, json.loads(
                        (benchmark.DATA_DIR / f"{row['mp_id']}.json").read_text()))}
                    for row in finished]
            check = benchmark.cost_model_check(rows, settings, ctx.pseudos, data["preset"])
            if not check:
                sys.exit(f"{args.results}: fewer than three finished materials with CPU times to check against")
            names = {row["mp_id"]: row["formula"] for row in rows}
            sweep.append({"constant": constant, "total_error": check["total_error"],
                          "median_abs_error": check["median_abs_error"],
                          "within_30_percent": check["within_30_percent"],
                          "errors": {names[k]: check["estimates"][k] / check["measured"][k] - 1
                                     for k in check["measured"]}})
    finally:
        cost.SETTLED_SPACING_PER_SQRT_GAP = in_use
    materials = list(sweep[0]["errors"])
    lines = ["# The cost model's settling constant against the DFT benchmark's CPU hours", "",
             f"Leave-one-out estimates of the {len(materials)} finished materials of `{args.results.name}` "
             f"(its run: {commit}), per value of SETTLED_SPACING_PER_SQRT_GAP; "
             f"active/cost.py uses {in_use}.", "",
             "| constant (Å⁻¹/√eV) | total error | median absolute error | within 30 % | " + " | ".join(materials) + " |",
             "| --- " * (4 + len(materials)) + "|"]
    for s in sweep:
        mark = " (in use)" if abs(s["constant"] - in_use) < 1e-9 else ""
        lines.append(f"| {s['constant']:g}{mark} | {s['total_error']:+.0%} | {s['median_abs_error']:.0%} | "
                     f"{s['within_30_percent']} of {len(materials)} | "
                     + " | ".join(f"{s['errors'][m]:+.0%}" for m in materials) + " |")
    write_results("cost_settling_sweep", {"results_file": args.results.name, "in_use": in_use, "sweep": sweep},
                  "\n".join(lines))


if __name__ == "__main__":
    main()
