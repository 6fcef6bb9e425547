"""Could a small-gap material run its atomic displacements on the fixed k-mesh? (issue 34, `small_gap_split`)

When the PBEsol gap is small the dielectric workflow probes denser meshes until ε∞ settles; the settled probe
gives ε∞ and the Born charges Z*, and the displacements run on the settled mesh. (Runs made before 949f4ce ran
the whole ph.x there instead, `phonon-<mesh>`, whose K is the same.) ε∞ and Z* are what need the dense mesh;
the Γ force constants K may not. Here, for finished runs of `dft_reproduction.py`, K also comes from a
displacement-only ph.x (epsil = false) on the fixed-mesh SCF the workflow already has (the workflow's own
`phonon-displacements-<fixed mesh>` when `small_gap_split` made it, else computed here under split-fixed/), and
ε_ion = Z*ᵀ K⁻¹ Z* / Ω is formed with the settled mesh's Z*. Reported against ε_ion with K from the settled mesh:
the ε_ion tensor average, the optical frequencies, and the CPU of the displacements on each mesh.

Run: nice .venv/bin/python benchmarks/dft_split_mesh.py --materials 5-BaTiO3 [...]
(directories under benchmarks/work/dft_reproduction/runs).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, local_dft_context, this_run, write_results  # noqa: E402
from tansaku.dft.ionic import ionic_dielectric  # noqa: E402
from tansaku.dft.qe.parsers import read_dyn_gamma  # noqa: E402
from tansaku.dft.settings import preset  # noqa: E402
from tansaku.workflows.dielectric import DYN_FILE, phonon_spec  # noqa: E402
from tansaku.workflows.kmesh_convergence import DISPLACEMENTS_STEP  # noqa: E402
from tansaku.workflows.steps import run_step  # noqa: E402

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
    ctx = local_dft_context(None, preset("standard"), "standard", mpi_procs, RUNS)
    spec = phonon_spec(ctx, root, SPLIT, "scf", scratch, electric_field=False)
    state = run_step(spec, root / SPLIT, ctx.executor, ctx.commands, max_attempts=2, poll_seconds=ctx.poll_seconds)
    shutil.rmtree(scratch, ignore_errors=True)
    return read_dyn_gamma(root / SPLIT / DYN_FILE), state.cpu_seconds


def settled_run(root: Path, fixed_mesh: str) -> tuple[str, object, float, float | None]:
    """The settled mesh, its K with the Z* the workflow used (the settled probe's, or for a run made before
    949f4ce its whole ph.x's own), the CPU of that ph.x and of the settled probe's field-only ph.x."""
    def cpu(step: str) -> float | None:
        state = root / step / "state.json"
        return json.loads(state.read_text())["cpu_seconds"] if state.exists() else None

    for directory in sorted(root.glob(f"{DISPLACEMENTS_STEP}*")):
        mesh = directory.name.removeprefix(DISPLACEMENTS_STEP)
        if mesh != fixed_mesh:  # on the fixed mesh it is the split itself
            field = json.loads((root / f"kmesh-{mesh}-eps" / "state.json").read_text())["outputs"]
            dyn = replace(read_dyn_gamma(directory / DYN_FILE), born_charges=np.asarray(field["born_charges"]))
            return mesh, dyn, cpu(directory.name), cpu(f"kmesh-{mesh}-eps")
    old = sorted(p for p in root.glob("phonon-*") if re.fullmatch(r"phonon-\d+x\d+x\d+", p.name))
    if not old:
        raise SystemExit(f"{root.name}: no phonons on a refined mesh (it settled on the fixed mesh {fixed_mesh}, "
                         "or its gap sent it to no probes)")
    mesh = old[0].name.removeprefix("phonon-")
    return mesh, read_dyn_gamma(old[0] / DYN_FILE), cpu(old[0].name), cpu(f"kmesh-{mesh}-eps")


def _mesh(step_dir: Path) -> list[int]:
    text = (step_dir / "input.in").read_text()
    return [int(x) for x in text.split("K_POINTS automatic", 1)[1].split()[:3]]


def one_material(root: Path, mpi_procs: int) -> dict:
    fixed_mesh = "x".join(map(str, _mesh(root / "scf")))
    mesh, full, full_cpu, field_cpu = settled_run(root, fixed_mesh)
    workflow_split = root / f"{DISPLACEMENTS_STEP}{fixed_mesh}"
    if (workflow_split / DYN_FILE).exists():
        fixed = read_dyn_gamma(workflow_split / DYN_FILE)
        split_cpu = json.loads((workflow_split / "state.json").read_text())["cpu_seconds"]
    else:
        fixed, split_cpu = displacements_on_fixed_mesh(root, mpi_procs)
    reference = ionic_dielectric(full.force_constants, full.born_charges, full.masses_amu, full.volume_bohr3)
    split = ionic_dielectric(fixed.force_constants, full.born_charges, full.masses_amu, full.volume_bohr3)

    def optical(result) -> list[float]:
        keep = [m for m in range(len(result.frequencies_thz)) if m not in result.acoustic]
        return np.round(np.sort(result.frequencies_thz[keep]), 2).tolist()

    return {"material": root.name, "settled_mesh": mesh, "fixed_mesh": fixed_mesh,
            "eps_ionic_settled": reference.average, "eps_ionic_split": split.average,
            "imaginary_settled": len(reference.imaginary_modes), "imaginary_split": len(split.imaginary_modes),
            "optical_thz_settled": optical(reference), "optical_thz_split": optical(split),
            "cpu_phonon_settled": full_cpu, "cpu_displacements_fixed": split_cpu,
            "cpu_field_probe_settled": field_cpu, "run": this_run()}


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
                f"{r['cpu_phonon_settled']:.0f} | {r['cpu_displacements_fixed']:.0f} | {probe} |")

    table = "\n".join(line(r) for r in rows)
    markdown = f"""# Force constants from the fixed mesh, Born charges from the settled one (issue 34, under test)

ε_ion with K and Z* both from the settled mesh (what the workflow does) against K from a displacement-only ph.x
on the fixed-mesh SCF and Z* from the settled mesh. Modes below 0.1 THz in magnitude count as neither; ε_ion
leaves imaginary modes out. CPU in seconds (QE's own, × processes).

| run | settled mesh | ε_ion settled | ε_ion split | optical modes (THz), settled / split | CPU ph.x, settled (whole before 949f4ce, displacements since) | CPU displacements, fixed | CPU field-only probe, settled |
| --- | --- | --- | --- | --- | --- | --- | --- |
{table}
"""
    write_results("dft_split_mesh", {"rows": rows}, markdown)


if __name__ == "__main__":
    main()
