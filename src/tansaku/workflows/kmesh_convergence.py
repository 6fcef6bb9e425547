"""Choosing a material's k-mesh by measurement: the coarsest mesh whose ε∞ and gap a denser one no longer changes.

Each probe is an SCF and an electric-field-only ph.x (3 perturbations instead of 3 × atoms + 3), a small part of
the full workflow's cost; the relaxation, SCF and phonons then run on the chosen mesh.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace

import numpy as np
from pymatgen.core import Structure

from tansaku import TansakuError
from tansaku.dft.ionic import isotropic_born_charge
from tansaku.dft.settings import kmesh, standard_frame
from tansaku.store.materials import tensor_average

DISPLACEMENTS_STEP = "phonon-displacements-"  # + "8x8x6"

REFINE = 0.8  # each probe's spacing is this fraction of the last one's
FINEST = 0.1  # Å⁻¹: no probe is denser than this


@dataclass
class Probe:
    spacing: float
    mesh: tuple[int, int, int]
    k_points: int | None
    band_gap: float
    eps_electronic: float
    born_charge: float
    cpu_seconds: float
    scf_step: str = ""  # the SCF it read: its own, or the workflow's "scf" when that is the same calculation

    def as_dict(self) -> dict:
        return {**self.__dict__, "mesh": list(self.mesh)}


def probe_spacings(structure: Structure, coarsest: float, even: bool = True) -> list[float]:
    """Spacings from `coarsest` down, 0.8× each time, keeping only the first spacing of each distinct mesh."""
    spacings, meshes = [], set()
    spacing = coarsest
    while spacing >= FINEST - 1e-9:
        mesh = kmesh(structure, spacing, even)
        if mesh not in meshes:
            meshes.add(mesh)
            spacings.append(round(spacing, 4))
        spacing *= REFINE
    return spacings


def probe(run, structure: Structure, spacing: float, keep_scratch: bool = False) -> Probe:
    """SCF and electric-field ph.x at one spacing, as steps of their own (resumable, recorded) in run.root. On the
    run's own mesh and cell the workflow's finished SCF is that SCF: the field ph.x then reads a copy of its save
    (the SCF is not run twice, and the workflow's ph.x later finds its scratch as the SCF left it), unless an
    earlier version of the workflow already gave this probe its own SCF in the run directory."""
    from tansaku.workflows.dielectric import phonon_spec, scf_spec  # the workflow imports this module

    ctx = replace(run.ctx, settings=replace(run.ctx.settings, kspacing=spacing))
    mesh = kmesh(structure, spacing, ctx.settings.even_kmesh)
    name, scratch = probe_name(mesh), probe_scratch(run, mesh)
    shared = _is_the_runs_scf(run, structure, spacing) and not (run.root / f"{name}-scf" / "state.json").exists()
    scf_name = "scf" if shared else f"{name}-scf"
    spec = scf_spec(run.ctx if shared else ctx, run.root, structure, scf_name, None if shared else scratch)
    scf = run.steps["scf"] if shared else run.step(scf_name, spec, ctx)
    if scf.outputs["gap"] < ctx.settings.metal_gap_ev:  # no dielectric response to probe: the workflow's own
        shutil.rmtree(scratch, ignore_errors=True)    # relaxation and SCF then stop the metal with its reason
        return Probe(spacing, mesh, scf.outputs.get("k_points"), scf.outputs["gap"], float("nan"), float("nan"),
                     scf.cpu_seconds, scf_name)
    field = phonon_spec(ctx, run.root, f"{name}-eps", scf_name, scratch, phonons=False)
    if shared:
        run.needs_save(f"{name}-eps", "scf", spec)

        def copy_save() -> None:
            shutil.rmtree(scratch, ignore_errors=True)
            shutil.copytree(run.root / "scratch" / "scf.save", scratch / "scf.save")

        field = replace(field, prepare=copy_save)
    else:
        run.needs_save(f"{name}-eps", scf_name, spec, scratch, ctx)
    ph = run.step(f"{name}-eps", field, ctx)
    if shared or not keep_scratch:  # a copy is no use once the field ran
        shutil.rmtree(scratch, ignore_errors=True)
    born = np.asarray(ph.outputs["born_charges"])
    return Probe(spacing, mesh, scf.outputs.get("k_points"), scf.outputs["gap"],
                 tensor_average(np.asarray(ph.outputs["eps_electronic"])), isotropic_born_charge(born),
                 (0.0 if shared else scf.cpu_seconds) + ph.cpu_seconds, scf_name)


def _is_the_runs_scf(run, structure: Structure, spacing: float) -> bool:
    """Is the run's finished SCF ("scf") the calculation a probe at `spacing` on `structure` would make?"""
    scf = run.steps.get("scf")
    return (scf is not None and scf.status == "done" and spacing == run.ctx.settings.kspacing
            and scf.structure is not None and Structure.from_dict(scf.structure) == structure)


def refines(fine: tuple[int, int, int], coarse: tuple[int, int, int]) -> bool:
    """Is `fine` denser than `coarse` in every direction?"""
    return all(f > c for f, c in zip(fine, coarse, strict=True))


def refined_from(probes: list[Probe]) -> Probe | None:
    """The probe the last one is compared with: the latest before it that its mesh refines in every direction. A
    pair that refines only some (ZnO's 10x10x6 and 12x12x6) can agree while ε∞ still moves with the others: those
    two agreed to 0.7 % with the 1/N_k limit 1.5 % below (kmesh_probes.md)."""
    return next((p for p in reversed(probes[:-1]) if refines(probes[-1].mesh, p.mesh)), None)


def close_enough(coarse: Probe, fine: Probe, tolerance: float, gap_tolerance_ev: float) -> bool:
    return (abs(coarse.eps_electronic / fine.eps_electronic - 1) < tolerance
            and abs(coarse.band_gap - fine.band_gap) < gap_tolerance_ev)


def settle(run, structure: Structure, spacings: list[float], tolerance: float,
           keep_chosen: bool = False) -> tuple[Probe, list[Probe]]:
    """Probe the spacings in order until two meshes, the finer refining the coarser in every direction, agree (ε∞
    within `tolerance`, gap within k_converge_gap_ev); the coarser of the two, and every probe up to the finer (the
    last, whose ε∞, Z* and gap are already paid for and nearer the converged values: kmesh_probes.md). A mesh
    without a gap ends it: the SCF that follows stops the metal. `keep_chosen`: the chosen probe's SCF save stays
    (the displacements run on it), the others' go."""
    s = run.ctx.settings
    probes: list[Probe] = []

    def finish(choice: Probe | None) -> tuple[Probe | None, list[Probe]]:
        """The probes' SCF saves removed, but for the chosen one's with keep_chosen."""
        for p in probes:
            if p is not choice or not keep_chosen:
                shutil.rmtree(probe_scratch(run, p.mesh), ignore_errors=True)
        return choice, probes

    for spacing in spacings:
        try:
            probes.append(probe(run, structure, spacing, keep_scratch=True))
        except TansakuError as exc:
            finish(None)
            raise TansakuError(f"automatic k-mesh: the probe at {spacing} Å⁻¹ failed ({exc}); a metal or a hard "
                               "SCF: run with a fixed kspacing (k_converge=none, small_gap_ev=0), whose relaxation "
                               "tells a metal apart") from exc
        if probes[-1].band_gap < s.metal_gap_ev:
            return finish(probes[-1])
        coarser = refined_from(probes)
        if coarser is not None and close_enough(coarser, probes[-1], tolerance, s.k_converge_gap_ev):
            return finish(coarser)
        if len(probes) > 3:  # a later mesh refines one of the last three in every direction first
            shutil.rmtree(probe_scratch(run, probes[-4].mesh), ignore_errors=True)
    last = probes[-1]
    finish(None)
    raise TansakuError(f"k-mesh not converged to {tolerance:.1%} in ε∞ down to {last.spacing} Å⁻¹ "
                       f"({mesh_label(last.mesh)}); set kspacing by hand")


def mesh_label(mesh: tuple[int, int, int]) -> str:
    """'8x8x6': how step names and reports write a mesh."""
    return "x".join(map(str, mesh))


def mesh_from_label(label: str) -> tuple[int, int, int]:
    """(8, 8, 6) from '8x8x6': the mesh a step's name was given."""
    a, b, c = (int(n) for n in label.split("x"))
    return a, b, c


def probe_name(mesh: tuple[int, int, int]) -> str:
    return f"kmesh-{mesh_label(mesh)}"


def displacements_name(mesh: tuple[int, int, int]) -> str:
    """The step of the force constants alone, after a small gap's probes gave ε∞ and Z*."""
    return f"{DISPLACEMENTS_STEP}{mesh_label(mesh)}"


def probe_scratch(run, mesh: tuple[int, int, int]):
    """A scratch per probe: a resumed run walks past the finished probes, and each removes only its own files,
    not the SCF save of the probe that was running when the run was killed."""
    return run.root / f"{probe_name(mesh)}-scratch"


def converge_kmesh(run) -> bool:
    """Workflow step: with `k_converge` set, measure the k-mesh this material needs and run the rest with it."""
    s = run.ctx.settings
    if s.k_converge is None:
        return True
    structure = standard_frame(run.structure)[0] if s.standardize else run.structure
    chosen, probes = settle(run, structure, probe_spacings(structure, s.k_coarsest, s.even_kmesh), s.k_converge)
    run.k_probes = [p.as_dict() for p in probes]
    run.ctx = replace(run.ctx, settings=replace(s, kspacing=chosen.spacing))
    run.report(f"k-mesh {mesh_label(chosen.mesh)} (spacing {chosen.spacing} Å⁻¹)")
    return True


def refine_for_small_gap(run) -> bool:
    """Workflow step after the SCF: a gap below `small_gap_ev` on the fixed mesh has its mesh measured from
    kspacing down (small gaps need denser meshes for ε∞). The finer of the two probes that agreed gives the gap,
    ε∞ and the Born charges (its SCF and field-only ph.x); the phonon step then runs only the displacements, on
    the coarser one's SCF (force constants converge faster than ε∞), or with small_gap_split on the fixed mesh's.
    The fixed-mesh steps stay as they were."""
    s = run.ctx.settings
    gap = run.steps[run.scf_step].outputs["gap"]
    if s.k_converge is not None or gap >= s.small_gap_ev:
        return True
    run.report(f"gap {gap:.2f} eV < {s.small_gap_ev} eV: measuring the k-mesh ε∞ needs")
    chosen, probes = settle(run, run.structure, probe_spacings(run.structure, s.kspacing, s.even_kmesh),
                            s.small_gap_k_converge, keep_chosen=True)
    run.k_probes = [p.as_dict() for p in probes]
    run.settled, run.measured = chosen, probes[-1]  # the finer of the two that agreed
    from tansaku.workflows.dielectric import take_gap  # the workflow imports this module

    if not take_gap(run, run.steps[run.measured.scf_step]):
        return False
    run.report(f"k-mesh {mesh_label(run.measured.mesh)} for ε∞, Z* and the gap (spacing {run.measured.spacing} "
               f"Å⁻¹), {mesh_label(chosen.mesh)} for the force constants")
    return True
