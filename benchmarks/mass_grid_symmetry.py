"""The band-mass grid with and without symmetry (issue 34's "symmetry QE can see", applied to `run electronic`).

A band mass is fitted to a 3x3x3 grid of k-points around each band edge. `run electronic` now asks pw.x for one
point of each class of points equivalent under the edge's little group and time reversal
(`dft.kpoint_symmetry`), with four empty bands instead of eight, and gives the other points their class's energies.
This script runs, on the same SCF save and in the same run, the full grid the workflow used before and the
reduced one it uses now, and compares their CPU time (QE's CPU × processes), the energies of every grid point
(bands up to four above the gap) and the fitted band masses.

Input: the standard-preset run directories of `benchmarks/electronic_reproduction.py` (their SCF save, band path and
finished masses step); materials whose directories are gone are skipped with a message.

Run: .venv/bin/python benchmarks/mass_grid_symmetry.py [--runs DIR] [--mpi-procs 2] [--ids GaN GaAs]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pymatgen.core import Structure  # noqa: E402

from _common import REPO, this_run, write_results  # noqa: E402
from tansaku.dft.qe.parsers import cpu_seconds, read_pw_xml  # noqa: E402
from tansaku.dft.settings import preset  # noqa: E402
from tansaku.workflows.electronic import (  # noqa: E402
    MASS_EXTRA_BANDS,
    channels_of,
    fitted_masses,
    mass_points,
    reduced_mass_grid,
)

RUNS = REPO / "benchmarks" / "work" / "electronic_reproduction" / "runs"


def run_grid(run_dir: Path, points: np.ndarray, nbnd: int | None, work: Path, procs: int) -> tuple[np.ndarray, float]:
    """pw.x `bands` at `points` on the run's SCF save, with the masses step's own input otherwise: (energies, CPU s)."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copytree(run_dir / "scratch" / "scf.save", work / "scf.save")
    shutil.copy(run_dir / "scratch" / "scf.xml", work / "scf.xml")
    text = re.sub(r"outdir = '.*'", f"outdir = '{work}'", (run_dir / "masses" / "input.in").read_text())
    if nbnd is not None:
        text = re.sub(r"nbnd = \d+", f"nbnd = {nbnd}", text)
    text = text[: text.index("K_POINTS")] + f"K_POINTS crystal\n  {len(points)}\n" + "".join(
        f"  {a:.10f} {b:.10f} {c:.10f} 1\n" for a, b, c in points)
    (work / "in").write_text(text)
    command = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(procs), "pw.x", "-in", "in"]
    with open(work / "out", "w") as log:
        subprocess.run(command if procs > 1 else command[5:], cwd=work, stdout=log, stderr=subprocess.STDOUT,
                       check=True)
    cpu = cpu_seconds((work / "out").read_text())
    return np.asarray(read_pw_xml(work / "scf.xml")["eigenvalues_ev"]), cpu * procs


def compare(run_dir: Path, procs: int) -> dict:
    state = json.loads((run_dir / "masses" / "state.json").read_text())
    old = state["outputs"]
    structure = Structure.from_dict(state["structure"])
    bands_out = json.loads((run_dir / "bands" / "state.json").read_text())["outputs"]
    scf_out = json.loads((run_dir / "scf" / "state.json").read_text())["outputs"]
    k_frac = np.asarray(bands_out["k_frac"])
    grids = [mass_points(structure, k_frac[k], preset("standard").mass_step) for k in old["centres"]]
    full = np.vstack([points for points, _ in grids])
    reduced, expand = reduced_mass_grid(structure, k_frac[old["centres"]], grids)
    channels = channels_of(bands_out, scf_out.get("magnetization"))
    occupied = max(c.occupied for c in channels)
    nbnd = occupied + MASS_EXTRA_BANDS if len(channels) == 1 else None
    with tempfile.TemporaryDirectory() as tmp:
        full_energies, full_cpu = run_grid(run_dir, full, None, Path(tmp) / "full", procs)
        reduced_energies, reduced_cpu = run_grid(run_dir, reduced, nbnd, Path(tmp) / "reduced", procs)
    unfolded = reduced_energies[expand]
    compared = min(full_energies.shape[1], unfolded.shape[1], occupied + MASS_EXTRA_BANDS)
    path = np.asarray(bands_out["eigenvalues_ev"])
    offsets = grids[0][1].tolist()

    def masses(energies: np.ndarray) -> dict:
        out = {"offsets": offsets, "centres": old["centres"], "eigenvalues_ev": np.round(energies, 6).tolist()}
        fitted = fitted_masses(out, path, channels, "", "")
        return {side: [b.get("average") for b in fitted[side]["bands"]] for side in ("holes", "electrons")}

    before, after = masses(full_energies), masses(unfolded)
    worst = max(abs(a / b - 1) for side in before for a, b in zip(after[side], before[side], strict=True)
                if a is not None and b is not None)
    return {"material": run_dir.name.split("-", 1)[1], "points_full": len(full), "points_reduced": len(reduced),
            "nbnd_reduced": nbnd, "cpu_full": full_cpu, "cpu_reduced": reduced_cpu,
            "max_energy_diff_ev": float(np.abs(full_energies[:, :compared] - unfolded[:, :compared]).max()),
            "bands_compared": compared, "masses_full": before, "masses_reduced": after,
            "max_mass_rel_diff": worst, "run": this_run()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=RUNS, help="electronic_reproduction's run directories")
    parser.add_argument("--mpi-procs", type=int, default=2)
    parser.add_argument("--ids", nargs="*", help="materials (formulas) to compare; default every finished one")
    args = parser.parse_args()
    rows = []
    for run_dir in sorted(args.runs.glob("*-*")):
        name = run_dir.name.split("-", 1)[1]
        if args.ids and name not in args.ids:
            continue
        if not (run_dir / "scratch" / "scf.save").is_dir() or not (run_dir / "masses" / "state.json").exists():
            print(f"{run_dir}: no SCF save or masses step; skipped", flush=True)
            continue
        print(f"{name}: full and reduced mass grids", flush=True)
        rows.append(compare(run_dir, args.mpi_procs))
    if not rows:
        sys.exit(f"no finished electronic runs under {args.runs}")
    lines = ["# Band-mass grid: every point against one per symmetry class", "",
             "Standard preset, the same SCF save, both in this run. CPU: QE's CPU time × MPI processes.", "",
             "| material | k-points full → reduced | empty bands | CPU s full → reduced | ratio | largest energy "
             "difference (eV) | band masses full → reduced (holes; electrons) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        def fmt(m: dict) -> str:
            return "; ".join(", ".join(f"{v:.3f}" if v is not None else "–" for v in m[s]) for s in ("holes",
                                                                                                   "electrons"))
        lines.append(f"| {r['material']} | {r['points_full']} → {r['points_reduced']} | "
                     f"{'8 → 4' if r['nbnd_reduced'] else '8'} | {r['cpu_full']:.0f} → {r['cpu_reduced']:.0f} | "
                     f"{r['cpu_reduced'] / r['cpu_full']:.2f} | {r['max_energy_diff_ev']:.1e} | "
                     f"{fmt(r['masses_full'])} → {fmt(r['masses_reduced'])} |")
    lines += ["", "Energies are compared on every grid point, bands up to four above the gap; masses agree to "
              f"{max(r['max_mass_rel_diff'] for r in rows):.1e} (relative) at most."]
    write_results("mass_grid_symmetry", {"rows": rows}, "\n".join(lines))


if __name__ == "__main__":
    main()
