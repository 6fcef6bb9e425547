"""Could a small-gap material skip the atomic displacements on its refined k-mesh? (issue 34, an idea under test)

When the PBEsol gap is small the dielectric workflow probes denser meshes until ε∞ settles, then runs the whole
ph.x (electric field and every displacement) on the settled mesh. ε∞ and the Born charges Z* are what need the
dense mesh; the Γ force constants K may not. Here, for finished runs of `dft_reproduction.py`, K comes from a
displacement-only ph.x (epsil = false) on the fixed-mesh SCF the workflow already has, and
ε_ion = Z*ᵀ K⁻¹ Z* / Ω is formed with the settled mesh's Z*. Reported against the workflow's own ε_ion (K and Z*
both from the settled mesh): the ε_ion tensor average, the optical frequencies, and the CPU of the displacements
on each mesh. If they agree, the workflow could run the settled mesh's field-only ph.x (a probe it already ran
for all but the finest mesh) and the displacements on the fixed mesh.

Run: nice .venv/bin/python benchmarks/dft_split_mesh.py --materials 5-BaTiO3 [...]
(directories under benchmarks/work/dft_reproduction/runs; each new ph.x is kept there under split-fixed/).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, this_run, write_results  # noqa: E402
from tansaku.dft.ionic import ionic_dielectric  # noqa: E402
from tansaku.dft.qe.inputs import merge, ph_input  # noqa: E402
from tansaku.dft.qe.parsers import read_dyn_gamma  # noqa: E402
from tansaku.dft.settings import preset  # noqa: E402
from tansaku.workflows.dielectric import DYN_FILE  # noqa: E402
from tansaku.workflows.executor import LocalExecutor, QECommands  # noqa: E402
from tansaku.workflows.steps import StepSpec, run_step  # noqa: E402

RUNS = REPO / "benchmarks" / "work" / "dft_reproduction" / "runs"
SPLIT = "split-fixed"


def displacements_on_fixed_mesh(root: Path, mpi_procs: int):
    """A displacement-only ph.x on the fixed-mesh SCF (its save copied, so the workflow's stays as it was)."""
    scratch = root / f"{SPLIT}-scratch"
    if not (root / SPLIT / "state.json").exists() or json.loads((root / SPLIT / "state.json").read_text())[
            "status"] != "done":
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
        shutil.copytree(root / "scratch" / "scf.save", scratch / "scf.save")
        shutil.copy2(root / "scratch" / "scf.xml", scratch / "scf.xml")
    settings = preset("standard")

    def write(structure, overrides: dict) -> str:
        return ph_input(settings, "scf", scratch, DYN_FILE, merge({"inputph": {"epsil": False}}, overrides))

    def parse(directory: Path, log: str) -> dict:
        return {"dyn_file": DYN_FILE}

    state = run_step(StepSpec(SPLIT, "ph", write, parse), root / SPLIT, LocalExecutor(),
                     QECommands(mpi_procs=mpi_procs), max_attempts=2, poll_seconds=2.0)
    shutil.rmtree(scratch, ignore_errors=True)
    return read_dyn_gamma(root / SPLIT / DYN_FILE), state.cpu_seconds


def one_material(root: Path, mpi_procs: int) -> dict:
    settled = sorted(p for p in root.glob("phonon-*") if re.fullmatch(r"phonon-\d+x\d+x\d+", p.name))
    if not settled:
        raise SystemExit(f"{root.name}: no refined-mesh phonon step (its gap did not send it to a denser mesh)")
    full_dir = settled[0]
    full = read_dyn_gamma(full_dir / DYN_FILE)
    fixed, split_cpu = displacements_on_fixed_mesh(root, mpi_procs)
    reference = ionic_dielectric(full.force_constants, full.born_charges, full.masses_amu, full.volume_bohr3)
    split = ionic_dielectric(fixed.force_constants, full.born_charges, full.masses_amu, full.volume_bohr3)

    def optical(result) -> list[float]:
        keep = [m for m in range(len(result.frequencies_thz)) if m not in result.acoustic]
        return np.round(np.sort(result.frequencies_thz[keep]), 2).tolist()

    full_cpu = json.loads((full_dir / "state.json").read_text())["cpu_seconds"]
    field_probe = root / f"kmesh-{full_dir.name.removeprefix('phonon-')}-eps" / "state.json"
    return {"material": root.name, "settled_mesh": full_dir.name.removeprefix("phonon-"),
            "eps_ionic_settled": reference.average, "eps_ionic_split": split.average,
            "imaginary_settled": len(reference.imaginary_modes), "imaginary_split": len(split.imaginary_modes),
            "optical_thz_settled": optical(reference), "optical_thz_split": optical(split),
            "cpu_full_phonon_settled": full_cpu, "cpu_displacements_fixed": split_cpu,
            "cpu_field_probe_settled": json.loads(field_probe.read_text())["cpu_seconds"]
            if field_probe.exists() else None, "run": this_run()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--materials", nargs="+", required=True, help="Run directories, e.g. 5-BaTiO3.")
    parser.add_argument("--mpi-procs", type=int, default=2)
    args = parser.parse_args()
    rows = [one_material(RUNS / name, args.mpi_procs) for name in args.materials]
    def line(r: dict) -> str:
        modes = ", ".join(f"{a:g}/{b:g}" for a, b in zip(r["optical_thz_settled"], r["optical_thz_split"], strict=True))
        probe = "–" if r["cpu_field_probe_settled"] is None else f"{r['cpu_field_probe_settled']:.0f}"
        return (f"| {r['material']} | {r['settled_mesh']} | {r['eps_ionic_settled']:.2f} ({r['imaginary_settled']} "
                f"imag.) | {r['eps_ionic_split']:.2f} ({r['imaginary_split']} imag.) | {modes} | "
                f"{r['cpu_full_phonon_settled']:.0f} | {r['cpu_displacements_fixed']:.0f} | {probe} |")

    table = "\n".join(line(r) for r in rows)
    markdown = f"""# Force constants from the fixed mesh, Born charges from the settled one (issue 34, under test)

ε_ion with K and Z* both from the settled mesh (what the workflow does) against K from a displacement-only ph.x
on the fixed-mesh SCF and Z* from the settled mesh. Modes below 0.1 THz in magnitude count as neither; ε_ion
leaves imaginary modes out. CPU in seconds (QE's own, × processes).

| run | settled mesh | ε_ion settled | ε_ion split | optical modes (THz), settled / split | CPU full ph.x, settled | CPU displacements, fixed | CPU field-only probe, settled |
| --- | --- | --- | --- | --- | --- | --- | --- |
{table}
"""
    write_results("dft_split_mesh", {"rows": rows}, markdown)


if __name__ == "__main__":
    main()
