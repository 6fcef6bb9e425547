"""How to use 2 cores for pw.x and ph.x (issue 34, item 3): plane-wave MPI, k-point pools or OpenMP threads.

One SCF of rhombohedral NaInO2 (mp-5175, the issue's example; standard preset: 80 Ry, 0.25 Å⁻¹ mesh, fixed
occupations) in the standardized cell, where pw.x keeps all 12 symmetry operations. Every configuration runs
the same input in the same session, best of `--repeats`; the figure is the ratio to the plain 2-process run
(what `--mpi-procs 2` does today). Wall and CPU seconds from the run itself (/usr/bin/time is not needed:
Python's resource accounting of the child).

`--program ph` times ph.x at Γ (electric field and phonons) on the same cell instead, after one SCF, at
`--kspacing` (default 0.4 Å⁻¹, coarser than the SCF figure's: ph.x costs many SCFs); its results go to
dft_parallel_ph.

Run: .venv/bin/python benchmarks/dft_parallel.py [--repeats 1] [--program ph]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pymatgen.core import Structure  # noqa: E402

from _common import SHARED, shared_pseudos, write_results  # noqa: E402
from tansaku.dft.qe.inputs import ph_input, pw_input  # noqa: E402
from tansaku.dft.qe.parsers import irreducible_k_points, read_ph_dielectric, symmetry_operations  # noqa: E402
from tansaku.dft.settings import kmesh, preset, standard_frame  # noqa: E402

MPI = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np"]
CONFIGS = {  # name: (command prefix, extra pw.x arguments, OMP_NUM_THREADS)
    "1 process": ([], [], "1"),
    "2 MPI processes, plane waves (today)": ([*MPI, "2"], [], "1"),
    "2 MPI processes, 2 k-point pools (-nk 2)": ([*MPI, "2"], ["-nk", "2"], "1"),
    "1 process, 2 OpenMP threads": ([], [], "2"),
}


def run(directory: Path, prefix: list[str], extra: list[str], threads: str, program: str = "pw") -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": threads}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    out = subprocess.run([*prefix, f"{program}.x", *extra, "-in", f"{program}.in"], cwd=directory, env=env,
                         capture_output=True, text=True, check=True).stdout
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if program == "ph":
        eps, born = read_ph_dielectric(out)
        result = f"ε∞ {np.trace(eps) / 3:.5f}, Z*(1)xx {born[0, 0, 0]:.4f}"
    else:
        result = next(line for line in out.splitlines() if line.lstrip().startswith("!")).split("=")[1].strip()
    return {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "result": result,
            "symmetry_operations": symmetry_operations(out), "k_points": irreducible_k_points(out)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--program", choices=["pw", "ph"], default="pw")
    parser.add_argument("--kspacing", type=float, help="Å⁻¹ (default: the preset's for pw.x, 0.4 for ph.x)")
    args = parser.parse_args()
    data = json.loads((SHARED / "datasets" / "oxi_diel_db" / "data" / "mp-5175.json").read_text())
    cell, _ = standard_frame(Structure.from_dict(data["structure"]))
    overrides = {"kspacing": args.kspacing or (0.4 if args.program == "ph" else None)}
    settings = preset("standard", {k: v for k, v in overrides.items() if v})
    pseudos = shared_pseudos()
    work = Path(tempfile.mkdtemp(prefix="dft-parallel-"))
    (work / "pw.in").write_text(pw_input(cell, "scf", settings, pseudos, "scf", work / "out", None))
    configs = CONFIGS
    if args.program == "ph":
        scf = run(work, [*MPI, "2"], [], "1")  # the ground state every ph.x configuration starts from
        (work / "ph.in").write_text(ph_input(settings, "scf", work / "out", "gamma.dyn"))
        # Two processes only: one process is 2x slower for pw.x, and Debian's QE has no OpenMP (dft_parallel.md)
        configs = {name: c for name, c in CONFIGS.items() if name.startswith("2 MPI")}
    rows = []
    for name, (prefix, extra, threads) in configs.items():
        best = min((run(work, prefix, extra, threads, args.program) for _ in range(args.repeats)),
                   key=lambda r: r["wall_s"])
        rows.append({"configuration": name, **best})
        print(rows[-1], flush=True)
    today = next(r for r in rows if "today" in r["configuration"])
    first = scf if args.program == "ph" else rows[0]
    what = ("ph.x at Γ (electric field and phonons) after one SCF" if args.program == "ph" else "SCF")
    lines = [f"# Two cores for {args.program}.x: MPI over plane waves, k-point pools or OpenMP", "",
             f"{what} of NaInO2 (R-3m, 4 atoms, standard preset at {settings.kspacing} Å⁻¹: mesh "
             f"{kmesh(cell, settings.kspacing)}, {first['k_points']} irreducible k-points, "
             f"{first['symmetry_operations']} symmetry operations), best of {args.repeats}. Ratio: wall time against "
             "the 2-process plane-wave run." + (" One process and OpenMP are left out: one process is twice as slow for "
                                                "pw.x and Debian's QE has no OpenMP (dft_parallel.md)."
                                                if args.program == "ph" else ""),
             "", f"| configuration | wall (s) | CPU (s) | wall / today | {'result' if args.program == 'ph' else 'total energy'} |",
             "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['configuration']} | {r['wall_s']} | {r['cpu_s']} | {r['wall_s'] / today['wall_s']:.2f} | "
              f"{r['result']} |" for r in rows]
    name = "dft_parallel" + ("_ph" if args.program == "ph" else "")
    write_results(name, {"program": args.program, "kspacing": settings.kspacing, "rows": rows,
                         "repeats": args.repeats}, "\n".join(lines))


if __name__ == "__main__":
    main()
