"""Which Hubbard U on Zn 3d gives, with Quantum ESPRESSO, the reference database's ZnO band gap?

The reference (VASP, PBEsol + U = 5 eV on Zn d, projectors on PAW spheres) has 1.46 eV on its own cell. QE 6.7
projects on non-orthogonal atomic orbitals, and the same U opens the gap less. This scan runs only the SCF step
(standard preset, our input writer and parser) on the reference's own ZnO cell for each U, so that the U given to
`dft_reproduction.py` is chosen on the band gap, never on ε∞.

Run: nice .venv/bin/python benchmarks/zno_hubbard_gap.py --u 0 5 9 12 --mpi-procs 2   (about 3-4 min per U alone)
Resumable: a finished U is not recomputed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pymatgen.core import Structure

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, SHARED, shared_pseudos, write_results  # noqa: E402
from tansaku.dft.settings import preset, standard_cell  # noqa: E402
from tansaku.workflows.dielectric import scf_spec  # noqa: E402
from tansaku.workflows.executor import LocalExecutor, QECommands  # noqa: E402
from tansaku.workflows.run import RunContext  # noqa: E402
from tansaku.workflows.steps import run_step  # noqa: E402

MP_ID = "mp-2133"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--u", type=float, nargs="+", default=[0, 5, 9, 12], help="U values on Zn d (eV)")
    parser.add_argument("--mpi-procs", type=int, default=2)
    parser.add_argument("--work", type=Path, default=REPO / "benchmarks" / "work" / "zno_hubbard_gap")
    args = parser.parse_args()
    reference = json.loads((SHARED / "datasets" / "oxi_diel_db" / "data" / f"{MP_ID}.json").read_text())
    structure = standard_cell(Structure.from_dict(reference["structure"]))
    pseudos = shared_pseudos()
    rows = []
    for u in args.u:
        settings = preset("standard", {"hubbard_u": f"Zn:{u:g}"})
        root = args.work / f"u{u:g}"
        ctx = RunContext(None, settings, "standard", pseudos, LocalExecutor(), QECommands(mpi_procs=args.mpi_procs),
                         root, poll_seconds=2.0)
        state = run_step(scf_spec(ctx, ctx.run_root, structure), ctx.run_root / "scf", ctx.executor, ctx.commands,
                         settings.max_attempts, ctx.poll_seconds)
        rows.append({"u_ev": u, "gap_ev": state.outputs["gap"], "direct": state.outputs["direct"],
                     "seconds": state.seconds})
        print(f"U = {u:g} eV: gap {state.outputs['gap']:.3f} eV", flush=True)
    lines = ["# ZnO band gap against the Hubbard U on Zn 3d (QE 6.7, PBEsol, standard preset, reference cell)", "",
             f"Reference database ({MP_ID}, VASP PBEsol+U, U = 5 eV): **{reference['band_gap']:.2f} eV**.", "",
             "| U on Zn d (eV) | gap (eV) | direct | SCF wall time (s) |", "| --- | --- | --- | --- |"]
    lines += [f"| {r['u_ev']:g} | {r['gap_ev']:.3f} | {'yes' if r['direct'] else 'no'} | {r['seconds']:.0f} |"
              for r in rows]
    write_results("zno_hubbard_gap", {"mp_id": MP_ID, "reference_gap_ev": reference["band_gap"], "rows": rows},
                  "\n".join(lines))


if __name__ == "__main__":
    main()
