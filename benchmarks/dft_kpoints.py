"""How ε∞, the Born charges and the band gap converge with the k-point spacing, on the reference database's own
cells (no relaxation), to choose the default spacing and to check the automatic k-mesh mode.

Run: nice .venv/bin/python benchmarks/dft_kpoints.py --mpi-procs 2
Each point is the automatic mode's probe (SCF with fixed occupations, then ph.x with the electric field only) on an
even Γ-centred mesh (as before issue 34; the standard preset now also takes odd ones), at
the standard preset's cutoff and thresholds, in the standard primitive cell. The densest spacing of the list is
the reference (on MgO, 0.2 Å⁻¹ changed ε∞ by 0.01 % from 0.25: `--spacings ... 0.2`). Resumable: finished
probes are skipped; results are rewritten after every material.

With --phonons each mesh also gets the full ph.x (atomic displacements too), written to dft_kpoints_phonons: how
ε_ion and the Γ frequencies converge, and ε_ion from each mesh's force constants with the densest mesh's Born
charges, which tells whether the force constants could stay on a coarser mesh than ε∞ and Z* need (on BaO they
cannot: its soft TO mode moves 22 % between 4x4x4 and 8x8x8).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pymatgen.core import Structure  # noqa: E402

from _common import (  # noqa: E402
    REPO,
    SHARED,
    local_dft_context,
    run_number,
    runs_legend,
    step_runs,
    unrecorded_steps,
    write_results,
)
from tansaku.cli.run_cmd import parse_overrides  # noqa: E402
from tansaku.dft.ionic import ionic_dielectric  # noqa: E402
from tansaku.dft.qe.parsers import read_dyn_gamma  # noqa: E402
from tansaku.dft.settings import kmesh, preset, standard_frame  # noqa: E402
from tansaku.workflows.dielectric import DYN_FILE, phonon_spec, scf_spec  # noqa: E402
from tansaku.workflows.kmesh_convergence import probe  # noqa: E402
from tansaku.workflows.run import Run, WorkflowResult  # noqa: E402

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
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="A setting over the standard preset's (ecutwfc=50, tr2_ph=1e-12): its own work "
                             "directory and results file, named after the overrides.")
    parser.add_argument("--phonons", action="store_true",
                        help="Also the full ph.x at each mesh (force constants): ε_ion's convergence.")
    args = parser.parse_args()
    args.suffix = "".join("_" + re.sub(r"[^A-Za-z0-9.]+", "-", o) for o in args.overrides)
    settings = preset("standard", {"kspacing": 0.25, "even_kmesh": True,  # the meshes before issue 34
                                   **parse_overrides(args.overrides)})
    ctx = local_dft_context(None, settings, "standard", args.mpi_procs, Path(f"{args.work}{args.suffix}"))
    materials = []
    for mp_id in args.ids:
        reference = json.loads((SHARED / "datasets" / "oxi_diel_db" / "data" / f"{mp_id}.json").read_text())
        structure = standard_frame(Structure.from_dict(reference["structure"]))[0]
        run = Run(ctx, 0, structure, ctx.run_root / mp_id, WorkflowResult(status="running"),
                  lambda step, f=reference["formula"]: print(f"{f}: {step}", flush=True))
        run.step = unrecorded_steps(run)
        probes, seen = [], set()
        for spacing in sorted(args.spacings, reverse=True):
            mesh = kmesh(structure, spacing, settings.even_kmesh)
            if mesh in seen:
                continue
            seen.add(mesh)
            if args.report_only and not _finished(run.root, mesh, "phonon" if args.phonons else "eps"):
                continue  # a mesh not computed (yet): the others are still reported
            probes.append(probe(run, structure, spacing, keep_scratch=args.phonons).as_dict())
            if args.phonons:
                probes[-1].update(_phonons(run, structure, spacing))
            name = "kmesh-" + "x".join(map(str, mesh)) + ("-phonon" if args.phonons else "-eps")
            probes[-1]["run"] = step_runs(run.root).get(name)
        if not probes:
            continue
        materials.append({"mp_id": mp_id, "formula": reference["formula"], "atoms": len(structure),
                          "gap_db": reference["band_gap"],
                          "eps_electronic_db": reference["dielectric"]["epsilon_electronic_avg"], "probes": probes})
        if args.phonons:
            report_phonons(materials, args)
        else:
            report(materials, args)


def _phonons(run: Run, structure: Structure, spacing: float) -> dict:
    """The full ph.x on the probe's SCF at `spacing` (run again when its save is gone): its dynamical matrix's
    path and CPU seconds."""
    ctx = replace(run.ctx, settings=replace(run.ctx.settings, kspacing=spacing))
    name = "kmesh-" + "x".join(map(str, kmesh(structure, spacing, ctx.settings.even_kmesh)))
    scratch = run.root / f"{name}-scratch"
    run.needs_save(f"{name}-phonon", f"{name}-scf", scf_spec(ctx, run.root, structure, f"{name}-scf", scratch),
                   scratch, ctx)
    state = run.step(f"{name}-phonon", phonon_spec(ctx, run.root, f"{name}-phonon", f"{name}-scf", scratch))
    shutil.rmtree(scratch, ignore_errors=True)
    return {"dyn": str(run.root / f"{name}-phonon" / DYN_FILE), "phonon_cpu_seconds": state.cpu_seconds}


def _finished(root: Path, mesh: tuple[int, int, int], kind: str = "eps") -> bool:
    state = root / f"kmesh-{'x'.join(map(str, mesh))}-{kind}" / "state.json"
    return state.exists() and json.loads(state.read_text())["status"] == "done"


NO_RUNS = ("These rows were computed before each row's run was recorded: the command that computed them is in the "
           "message of the commit that added them.")


def _run_cell(markers: list[tuple], run: dict | None) -> str:
    return str(run_number(markers, run)) if run else "before runs were recorded"


def report(materials: list[dict], args) -> None:
    lines = ["# k-point convergence of ε∞, Born charges and gap (standard preset"
             + "".join(f", {o}" for o in args.overrides) + ", database cells)", "",
             "Each row is one distinct Γ-centred mesh (even numbers); Δ is against the densest mesh of the material. "
             "CPU is SCF + electric-field ph.x, all processes.", "",
             "| oxide | atoms | spacing (Å⁻¹) | mesh | k-points | ε∞ | Δε∞ | Z* | ΔZ* | gap (eV) | Δgap (eV) | CPU (s) "
             "| run |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    markers, legend = runs_legend([p["run"] for m in materials for p in m["probes"] if p.get("run")])
    worst: dict[float, dict[str, float]] = {}
    for m in materials:
        ref = m["probes"][-1]
        if ref["spacing"] > min(args.spacings) + 1e-9:
            lines.append(f"| {m['formula']} ({m['mp_id']}) | | reference: the densest finished mesh, "
                         f"{'x'.join(map(str, ref['mesh']))} | | | | | | | | | | |")
        for p in m["probes"]:
            d_eps = p["eps_electronic"] / ref["eps_electronic"] - 1
            d_z = p["born_charge"] / ref["born_charge"] - 1
            d_gap = p["band_gap"] - ref["band_gap"]
            lines.append(f"| {m['formula']} ({m['mp_id']}) | {m['atoms']} | {p['spacing']} | "
                         f"{'x'.join(map(str, p['mesh']))} | {p['k_points']} | {p['eps_electronic']:.3f} | "
                         f"{d_eps:+.2%} | {p['born_charge']:.3f} | {d_z:+.2%} | {p['band_gap']:.3f} | {d_gap:+.3f} | "
                         f"{p['cpu_seconds']:.0f} | {_run_cell(markers, p.get('run'))} |")
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
    lines += ["", *(legend if markers else [NO_RUNS])]
    write_results("dft_kpoints" + args.suffix, {"overrides": args.overrides, "spacings": args.spacings, "materials": materials,
                                  "worst_by_spacing": {str(k): v for k, v in worst.items()}}, "\n".join(lines))


def _ionic(dyn, charges_from=None):
    """ε_ion (average) and the optical Γ frequencies (THz, ascending) of a dynamical matrix, with the Born charges
    of `charges_from` when given (another mesh's)."""
    charges = (charges_from or dyn).born_charges
    ionic = ionic_dielectric(dyn.force_constants, charges, dyn.masses_amu, dyn.volume_bohr3)
    optical = sorted(f for i, f in enumerate(ionic.frequencies_thz) if i not in ionic.acoustic)
    return ionic.average, optical


def report_phonons(materials: list[dict], args) -> None:
    lines = ["# k-point convergence of ε_ion and the Γ frequencies (standard preset"
             + "".join(f", {o}" for o in args.overrides) + ", database cells)", "",
             "Each row is one distinct Γ-centred mesh (even numbers), with the full ph.x at Γ; Δ is against the "
             "densest mesh of the material. 'Split' is ε_ion from this mesh's force constants and the densest "
             "mesh's Born charges: were it close to the densest ε_ion, the phonons could run on a coarser mesh "
             "than the response. Δω is the largest change of an optical frequency. CPU is the "
             "phonon ph.x alone, all processes.", "",
             "| oxide | atoms | spacing (Å⁻¹) | mesh | k-points | ε∞ | Δε∞ | Z* | ΔZ* | lowest ω_TO (THz) | max \\|Δω\\| "
             "| ε_ion | Δε_ion | split ε_ion | Δ split | CPU (s) | run |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    markers, legend = runs_legend([p["run"] for m in materials for p in m["probes"] if p.get("run")])
    for m in materials:
        ref = m["probes"][-1]
        ref_dyn = read_dyn_gamma(Path(ref["dyn"]))
        ref_eps, ref_freqs = _ionic(ref_dyn)
        for p in m["probes"]:
            dyn = read_dyn_gamma(Path(p["dyn"]))
            eps, freqs = _ionic(dyn)
            split, _ = _ionic(dyn, ref_dyn)
            d_freq = max(abs(a / b - 1) for a, b in zip(freqs, ref_freqs, strict=True) if abs(b) > 0.3)
            p.update(eps_ionic=eps, optical_thz=freqs, split_eps_ionic=split, max_freq_change=d_freq)
            lines.append(
                f"| {m['formula']} ({m['mp_id']}) | {m['atoms']} | {p['spacing']} | {'x'.join(map(str, p['mesh']))} | "
                f"{p['k_points']} | {p['eps_electronic']:.3f} | {p['eps_electronic'] / ref['eps_electronic'] - 1:+.2%} | "
                f"{p['born_charge']:.3f} | {p['born_charge'] / ref['born_charge'] - 1:+.2%} | {min(freqs):.2f} | "
                f"{d_freq:.2%} | {eps:.2f} | {eps / ref_eps - 1:+.2%} | {split:.2f} | {split / ref_eps - 1:+.2%} | "
                f"{p['phonon_cpu_seconds']:.0f} | {_run_cell(markers, p.get('run'))} |")
    lines += ["", *(legend if markers else [NO_RUNS])]
    write_results("dft_kpoints_phonons" + args.suffix, {"spacings": args.spacings, "materials": materials}, "\n".join(lines))


if __name__ == "__main__":
    main()
