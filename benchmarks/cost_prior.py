"""The cost model's prior scale: CPU hours per unit of size (`active.cost.cost_size`) of the whole dielectric
workflow (relaxation, SCF, ph.x) with the test preset and 2 MPI processes, on rock-salt SrS and BaS; and of its
relaxation and SCF alone, the gap workflow (`cost_size(gap_only=True)`).

`active.cost.PRIOR_HOURS_PER_SIZE['test']` and `PRIOR_GAP_HOURS_PER_SIZE['test']` hold these figures: the cost model
uses them until a user's own runs finish (the demo's campaign and every first campaign). Run it again after the
size's unit changes, and write the medians into those constants; the results say whether they and this run agree.

Run: .venv/bin/python benchmarks/cost_prior.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pymatgen.core import Lattice, Structure  # noqa: E402

from _common import local_dft_context, no_options, shared_pseudos, this_run, write_results  # noqa: E402
from tansaku.active.cost import cost_size, cpu_hours_by_material, prior_scale  # noqa: E402
from tansaku.dft.settings import preset  # noqa: E402
from tansaku.store import open_database  # noqa: E402
from tansaku.store.materials import ImportReport, add_structure_material  # noqa: E402
from tansaku.workflows.dielectric import GAP_STEPS, run_dielectric  # noqa: E402

ROCK_SALTS = {"SrS": 6.02, "BaS": 6.39}  # experimental lattice constants, Å
PRESET, MPI_PROCS = "test", 2


def main() -> None:
    no_options(__doc__)
    settings, pseudos = preset(PRESET), shared_pseudos()
    work = Path(tempfile.mkdtemp(prefix="cost-prior-"))
    db = open_database(work / "prior.db")
    ctx = local_dft_context(db, settings, PRESET, MPI_PROCS, work / "runs")
    rows = []
    for formula, a in ROCK_SALTS.items():
        cation, anion = formula[:2], formula[2:]
        structure = Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), [cation, anion],
                                              [[0, 0, 0], [0.5, 0.5, 0.5]])
        with db.session() as session:
            material, _ = add_structure_material(session, structure, "benchmark", formula, ImportReport())
            material_id = material.id
        result = run_dielectric(ctx, material_id)
        if result.status != "done":
            sys.exit(f"{formula}: the workflow ended {result.status} ({result.reason}); no prior from it")
        hours = cpu_hours_by_material(db, PRESET, MPI_PROCS, [material_id])[material_id]
        gap_hours = cpu_hours_by_material(db, PRESET, MPI_PROCS, [material_id], steps=GAP_STEPS)[material_id]
        size, gap_size = cost_size(structure, settings, pseudos), cost_size(structure, settings, pseudos,
                                                                            gap_only=True)
        rows.append({"formula": formula, "a": a, "cpu_hours": hours, "size": size, "hours_per_size": hours / size,
                     "gap_cpu_hours": gap_hours, "gap_size": gap_size, "gap_hours_per_size": gap_hours / gap_size,
                     "run": this_run()})
        print(rows[-1], flush=True)
    median = float(np.median([r["hours_per_size"] for r in rows]))
    gap_median = float(np.median([r["gap_hours_per_size"] for r in rows]))
    lines = ["# The cost model's prior scale (CPU hours per unit of size)", "",
             f"{PRESET} preset, {MPI_PROCS} MPI processes, QE's CPU time. Whole: the dielectric workflow "
             "(relaxation, SCF, ph.x); gap: its relaxation and SCF alone, what the gap workflow runs.", "",
             "| material | a (Å) | CPU hours whole / gap | size whole / gap | hours per size whole / gap |",
             "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['formula']} | {r['a']} | {r['cpu_hours']:.5f} / {r['gap_cpu_hours']:.5f} | {r['size']:.3e} / "
              f"{r['gap_size']:.3e} | {r['hours_per_size']:.3e} / {r['gap_hours_per_size']:.3e} |" for r in rows]
    constant, gap_constant = prior_scale(PRESET), prior_scale(PRESET, gap_only=True)
    lines += ["", f"Median, whole: **{median:.2e}** hours per size; the {PRESET} preset's `PRIOR_HOURS_PER_SIZE` in "
              f"src/tansaku/active/cost.py: {constant:.2e} ({constant / median - 1:+.0%} from this run).",
              "", f"Median, gap: **{gap_median:.2e}**; `PRIOR_GAP_HOURS_PER_SIZE`: {gap_constant:.2e} "
              f"({gap_constant / gap_median - 1:+.0%} from this run)."]
    write_results("cost_prior", {"rows": rows, "median_hours_per_size": median, "constant": constant,
                                 "gap_median_hours_per_size": gap_median, "gap_constant": gap_constant},
                  "\n".join(lines))

if __name__ == "__main__":
    main()
