"""How ε∞, the Born charges and the band gap converge with the k-point spacing, on the reference database's own
cells (no relaxation), to choose the default spacing and to check the automatic k-mesh mode.

Run: nice .venv/bin/python benchmarks/dft_kpoints.py --mpi-procs 2
Each point is the automatic mode's probe (SCF with fixed occupations, then ph.x with the electric field only) on an
even Γ-centred mesh (as before issue 34; the standard preset now also takes odd ones), at
the standard preset's cutoff and thresholds, in the standard primitive cell. The densest spacing of the list is
the reference (on MgO, 0.2 Å⁻¹ changed ε∞ by 0.01 % from 0.25: `--spacings ... 0.2`). Resumable: finished
probes are skipped; results are rewritten after every material.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pymatgen.core import Structure  # noqa: E402

from _common import REPO, SHARED, write_results  # noqa: E402
from tansaku.dft.pseudos import load_family  # noqa: E402
from tansaku.dft.settings import kmesh, preset, standard_frame  # noqa: E402
from tansaku.workflows.dielectric import Run, RunContext, WorkflowResult  # noqa: E402
from tansaku.workflows.executor import LocalExecutor, QECommands  # noqa: E402
from tansaku.workflows.kmesh_convergence import probe  # noqa: E402

# Rock salts, rutile, wurtzite, α-NaFeO2 type, perovskite, delafossite, corundum: PBEsol gaps 0.9-6 eV, the small
# gaps (slowest to converge) first.
DEFAULT_IDS = ["mp-1265", "mp-1342", "mp-856", "mp-2133", "mp-7914", "mp-5020", "mp-3748", "mp-1143"]
SPACINGS = [0.6, 0.5, 0.4, 0.35, 0.3, 0.25]  # 0.25: the standard preset's spacing before issue 34


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ids", nargs="*", default=DEFAULT_IDS)
    parser.add_argument("--spacings", nargs="*", type=float, default=SPACINGS)
    parser.add_argument("--mpi-procs", type=int, default=2)
    parser.add_argument("--work", type=Path, default=REPO / "benchmarks" / "work" / "dft_kpoints")
    parser.add_argument("--report-only", action="store_true",
                        help="Tabulate the probes already finished under --work, computing nothing; a material "
                             "whose densest spacing is missing is compared with its densest finished mesh.")
    args = parser.parse_args()
    settings = preset("standard", {"kspacing": 0.25, "even_kmesh": True})  # the meshes before issue 34
    ctx = RunContext(None, settings, "standard", load_family(SHARED / "pseudos" / "pseudodojo-nc-sr-pbe-v0.4"),
                     LocalExecutor(), QECommands(mpi_procs=args.mpi_procs), args.work, poll_seconds=2.0)
    materials = []
    for mp_id in args.ids:
        reference = json.loads((SHARED / "datasets" / "oxi_diel_db" / "data" / f"{mp_id}.json").read_text())
        structure = standard_frame(Structure.from_dict(reference["structure"]))[0]
        run = Run(ctx, 0, structure, ctx.run_root / mp_id, WorkflowResult(status="running"),
                  lambda step, f=reference["formula"]: print(f"{f}: {step}", flush=True))
        run.step = _unrecorded(run)
        probes, seen = [], set()
        for spacing in sorted(args.spacings, reverse=True):
            mesh = kmesh(structure, spacing, settings.even_kmesh)
            if mesh in seen:
                continue
            seen.add(mesh)
            if args.report_only and not _finished(run.root, mesh):
                break
            probes.append(probe(run, structure, spacing).as_dict())
        if not probes:
            continue
        materials.append({"mp_id": mp_id, "formula": reference["formula"], "atoms": len(structure),
                          "gap_db": reference["band_gap"],
                          "eps_electronic_db": reference["dielectric"]["epsilon_electronic_avg"], "probes": probes})
        report(materials, args)


def _finished(root: Path, mesh: tuple[int, int, int]) -> bool:
    state = root / f"kmesh-{'x'.join(map(str, mesh))}-eps" / "state.json"
    return state.exists() and json.loads(state.read_text())["status"] == "done"


def _unrecorded(run: Run):
    """Run.step without the database rows (this benchmark keeps its record in the step directories)."""
    from tansaku.workflows.steps import run_step

    def step(name, spec, ctx=None):
        ctx = ctx or run.ctx
        run.report(name)
        run.steps[name] = run_step(spec, run.root / name, ctx.executor, ctx.commands, ctx.settings.max_attempts,
                                   ctx.poll_seconds)
        return run.steps[name]

    return step


def report(materials: list[dict], args) -> None:
    lines = ["# k-point convergence of ε∞, Born charges and gap (standard preset, database cells)", "",
             "Each row is one distinct Γ-centred mesh (even numbers); Δ is against the densest mesh of the material. "
             "CPU is SCF + electric-field ph.x, all processes.", "",
             "| oxide | atoms | spacing (Å⁻¹) | mesh | k-points | ε∞ | Δε∞ | Z* | ΔZ* | gap (eV) | Δgap (eV) | CPU (s) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    worst: dict[float, dict[str, float]] = {}
    for m in materials:
        ref = m["probes"][-1]
        if ref["spacing"] > min(args.spacings) + 1e-9:
            lines.append(f"| {m['formula']} ({m['mp_id']}) | | reference: the densest finished mesh, "
                         f"{'x'.join(map(str, ref['mesh']))} | | | | | | | | | |")
        for p in m["probes"]:
            d_eps = p["eps_electronic"] / ref["eps_electronic"] - 1
            d_z = p["born_charge"] / ref["born_charge"] - 1
            d_gap = p["band_gap"] - ref["band_gap"]
            lines.append(f"| {m['formula']} ({m['mp_id']}) | {m['atoms']} | {p['spacing']} | "
                         f"{'x'.join(map(str, p['mesh']))} | {p['k_points']} | {p['eps_electronic']:.3f} | "
                         f"{d_eps:+.2%} | {p['born_charge']:.3f} | {d_z:+.2%} | {p['band_gap']:.3f} | {d_gap:+.3f} | "
                         f"{p['cpu_seconds']:.0f} |")
        if ref["spacing"] > min(args.spacings) + 1e-9:
            continue  # no reference mesh yet: left out of the summary
        for spacing in args.spacings:  # the mesh a spacing gives is the densest probe at or above it
            at = [p for p in m["probes"] if p["spacing"] >= spacing - 1e-9]
            if not at or spacing <= ref["spacing"] + 1e-9:
                continue
            p = at[-1]
            w = worst.setdefault(spacing, {"eps": 0.0, "z": 0.0, "gap": 0.0, "cpu": 0.0, "cpu_ref": 0.0})
            w["eps"] = max(w["eps"], abs(p["eps_electronic"] / ref["eps_electronic"] - 1))
            w["z"] = max(w["z"], abs(p["born_charge"] / ref["born_charge"] - 1))
            w["gap"] = max(w["gap"], abs(p["band_gap"] - ref["band_gap"]))
            w["cpu"] += p["cpu_seconds"]
            w["cpu_ref"] += ref["cpu_seconds"]
    complete = [m["formula"] for m in materials if m["probes"][-1]["spacing"] <= min(args.spacings) + 1e-9]
    lines += ["", f"Largest change against the densest mesh, by spacing, over {', '.join(complete) or 'no material'} "
              "(the materials that reached the densest spacing):", "",
              "| spacing (Å⁻¹) | max \\|Δε∞\\| | max \\|ΔZ*\\| | max \\|Δgap\\| (eV) | CPU vs densest |",
              "| --- | --- | --- | --- | --- |"]
    for spacing, w in sorted(worst.items(), reverse=True):
        lines.append(f"| {spacing} | {w['eps']:.2%} | {w['z']:.2%} | {w['gap']:.3f} | {w['cpu'] / w['cpu_ref']:.2f} |")
    write_results("dft_kpoints", {"spacings": args.spacings, "materials": materials,
                                  "worst_by_spacing": {str(k): v for k, v in worst.items()}}, "\n".join(lines))


if __name__ == "__main__":
    main()
