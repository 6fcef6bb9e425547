"""How to use 2 cores for pw.x (issue 34, item 3): plane-wave MPI, k-point pools or OpenMP threads.

One SCF of rhombohedral NaInO2 (mp-5175, the issue's example; standard preset: 80 Ry, 0.25 Å⁻¹ mesh, fixed
occupations) in the standardized cell, where pw.x keeps all 12 symmetry operations. Every configuration runs
the same input in the same session, best of `--repeats`; the figure is the ratio to the plain 2-process run
(what `--mpi-procs 2` does today). Wall and CPU seconds from the run itself (/usr/bin/time is not needed:
Python's resource accounting of the child).

Run: .venv/bin/python benchmarks/dft_parallel.py [--repeats 1]
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pymatgen.core import Structure  # noqa: E402

from _common import SHARED, write_results  # noqa: E402
from tansaku.dft.pseudos import load_family  # noqa: E402
from tansaku.dft.qe.inputs import pw_input  # noqa: E402
from tansaku.dft.qe.parsers import symmetry_operations  # noqa: E402
from tansaku.dft.settings import kmesh, preset, standard_frame  # noqa: E402

MPI = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np"]
CONFIGS = {  # name: (command prefix, extra pw.x arguments, OMP_NUM_THREADS)
    "1 process": ([], [], "1"),
    "2 MPI processes, plane waves (today)": ([*MPI, "2"], [], "1"),
    "2 MPI processes, 2 k-point pools (-nk 2)": ([*MPI, "2"], ["-nk", "2"], "1"),
    "1 process, 2 OpenMP threads": ([], [], "2"),
}


def run(directory: Path, prefix: list[str], extra: list[str], threads: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": threads}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    out = subprocess.run([*prefix, "pw.x", *extra, "-in", "scf.in"], cwd=directory, env=env, capture_output=True,
                         text=True, check=True).stdout
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    energy = next(line for line in out.splitlines() if line.lstrip().startswith("!"))
    return {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "energy": energy.split("=")[1].strip(),
            "symmetry_operations": symmetry_operations(out),
            "k_points": int(next(line for line in out.splitlines() if "number of k points=" in line).split()[4])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    data = json.loads((SHARED / "datasets" / "oxi_diel_db" / "data" / "mp-5175.json").read_text())
    cell, _ = standard_frame(Structure.from_dict(data["structure"]))
    settings = preset("standard")
    pseudos = load_family(SHARED / "pseudos" / "pseudodojo-nc-sr-pbe-v0.4")
    work = Path(tempfile.mkdtemp(prefix="dft-parallel-"))
    (work / "scf.in").write_text(pw_input(cell, "scf", settings, pseudos, "scf", work / "out", None))
    rows = []
    for name, (prefix, extra, threads) in CONFIGS.items():
        best = min((run(work, prefix, extra, threads) for _ in range(args.repeats)), key=lambda r: r["wall_s"])
        rows.append({"configuration": name, **best})
        print(rows[-1], flush=True)
    today = next(r for r in rows if "today" in r["configuration"])
    lines = ["# Two cores for pw.x: MPI over plane waves, k-point pools or OpenMP", "",
             f"SCF of NaInO2 (R-3m, 4 atoms, standard preset, mesh {kmesh(cell, settings.kspacing)}, "
             f"{rows[0]['k_points']} irreducible k-points, {rows[0]['symmetry_operations']} symmetry operations), "
             f"best of {args.repeats}. Ratio: wall time against the 2-process plane-wave run.", "",
             "| configuration | wall (s) | CPU (s) | wall / today | total energy |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['configuration']} | {r['wall_s']} | {r['cpu_s']} | {r['wall_s'] / today['wall_s']:.2f} | "
              f"{r['energy']} |" for r in rows]
    write_results("dft_parallel", {"rows": rows, "repeats": args.repeats}, "\n".join(lines))


if __name__ == "__main__":
    main()
