"""The dielectric workflow: vc-relax (twice if the cell moved a lot) → SCF gap → ph.x at Γ → ε_ion → database."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from pymatgen.core import Structure
from sqlalchemy import select

from tansaku import TansakuError, __version__
from tansaku.chemistry.oxidation import open_shell_cations
from tansaku.chemistry.structures import check_ordered
from tansaku.dft.ionic import asr_born_charges, ionic_dielectric, isotropic_born_charge
from tansaku.dft.magnetism import spin_setup
from tansaku.dft.qe.inputs import merge, number_of_electrons, ph_input, pw_input
from tansaku.dft.qe.parsers import (
    band_gap,
    irreducible_k_points,
    read_dyn_gamma,
    read_ph_dielectric,
    read_pw_xml,
    symmetry_operations,
)
from tansaku.dft.settings import standard_frame, to_input_frame
from tansaku.store.materials import set_property, tensor_average
from tansaku.store.tables import Material, utcnow
from tansaku.workflows.kmesh_convergence import converge_kmesh, probe_name, refine_for_small_gap
from tansaku.workflows.run import (
    DIELECTRIC,
    Run,
    RunContext,
    Workflow,
    WorkflowResult,
    calculation_row,
    run_workflow,
)
from tansaku.workflows.state import StepState
from tansaku.workflows.steps import StepSpec

DYN_FILE = "gamma.dyn"


def check_insulator_setup(run: Run) -> bool:
    """Before any calculation: an ordered cell, pseudopotentials for every element, and an electron count that
    can fill whole bands (else the cell is metallic and has no static dielectric constant)."""
    ctx, structure, result = run.ctx, run.structure, run.result
    formula = structure.composition.reduced_formula
    where = f"material {run.material_id} ({formula})"
    check_ordered(structure, where, "DFT needs an ordered cell")
    ctx.pseudos.check_covers({s.specie.symbol for s in structure}, where)
    nelec = number_of_electrons(structure, ctx.pseudos)
    spin = spin_setup(structure, ctx.settings.spin)
    if spin is None and round(nelec) % 2:
        result.status = "metal"
        result.reason = (f"odd number of valence electrons ({nelec:g}): a spin-unpolarized cell is metallic, "
                         "no static dielectric constant" + _magnetic_hint(formula, ctx.settings.spin))
        return False
    if spin is not None and round(nelec + spin.total_magnetization) % 2:
        result.status = "metal"
        result.reason = (f"{nelec:g} valence electrons cannot fill whole bands with a moment of "
                         f"{spin.total_magnetization} μB (high spin of {', '.join(open_shell_cations(formula))})"
                         ": no insulating ferromagnetic state to compute")
        return False
    return True


def relax(run: Run) -> bool:
    """vc-relax (again when the cell moved a lot); a metal in the relaxation stops the workflow."""
    s = run.ctx.settings
    current, run.rotation = standard_frame(run.structure) if s.standardize else (run.structure, np.eye(3))
    if s.relax:
        relaxed = run.step("relax", relax_spec(run.ctx, run.root, current, "relax"))
        volume_change = relaxed.outputs["volume"] / current.volume - 1
        current = Structure.from_dict(relaxed.outputs["structure"])
        if abs(volume_change) > s.rerelax_volume_change:
            relaxed = run.step("relax2", relax_spec(run.ctx, run.root, current, "relax2"))
            current = Structure.from_dict(relaxed.outputs["structure"])
        gap = relaxed.outputs.get("gap")
        if gap is not None and gap < s.metal_gap_ev:
            _mark_metal(run.result, gap, "relaxation", run.input_structure, s.spin)
            return False
    run.structure = current
    return True


def scf_gap(run: Run) -> bool:
    """SCF with empty bands: the band gap; a metal stops here."""
    return take_gap(run, run.step(run.scf_step, scf_spec(run.ctx, run.root, run.structure, run.scf_step)))


def take_gap(run: Run, scf: StepState) -> bool:
    """The result's gap and moment from a finished SCF; False (the material stops, a metal) below metal_gap_ev."""
    run.result.band_gap = scf.outputs["gap"]
    run.result.magnetization = scf.outputs.get("magnetization")
    if run.result.band_gap < run.ctx.settings.metal_gap_ev:
        _mark_metal(run.result, run.result.band_gap, "SCF", run.input_structure, run.ctx.settings.spin)
        return False
    return True


def phonon(run: Run) -> bool:
    """ph.x at Γ: ε∞, Born charges and force constants; after a small gap's k-mesh probes, the force constants
    alone (the finer probe gave ε∞ and Z*: the field needs no second run)."""
    if run.displacements_on:
        scf, spacing, scratch = run.displacements_on
        ctx = replace(run.ctx, settings=replace(run.ctx.settings, kspacing=spacing))
        run.needs_save(run.phonon_step, scf, scf_spec(ctx, run.root, run.structure, scf, scratch), scratch, ctx)
        run.step(run.phonon_step, phonon_spec(ctx, run.root, run.phonon_step, scf, scratch, electric_field=False),
                 ctx)
        return True
    run.needs_save(run.phonon_step, run.scf_step, scf_spec(run.ctx, run.root, run.structure, run.scf_step))
    run.step(run.phonon_step, phonon_spec(run.ctx, run.root, run.phonon_step, run.scf_step))
    return True


def dielectric_analysis(run: Run) -> bool:
    """ε_ion with the acoustic sum rule, then every property into the database."""
    run.report("analysis")
    measured = run.measured
    run.result.kspacing = measured.spacing if measured else run.ctx.settings.kspacing  # the mesh of ε∞ and the gap
    run.result.scf_step = run.scf_step
    field_run = run.steps[f"{probe_name(measured.mesh)}-eps"].outputs if measured else None
    _analyse(run.ctx, run.material_id, run.root / run.phonon_step, run.steps[run.scf_step], run.result,
             run.rotation, run.k_probes, field_run, run.displacements_on[1] if measured else None)
    return True


DIELECTRIC_WORKFLOW = Workflow(DIELECTRIC, (check_insulator_setup, converge_kmesh, relax, scf_gap,
                                            refine_for_small_gap, phonon, dielectric_analysis))


def run_dielectric(ctx: RunContext, material_id: int, report: Callable[[str], None] | None = None
                   ) -> WorkflowResult:
    """The dielectric workflow for one stored material (`run_workflow(DIELECTRIC_WORKFLOW, ...)`)."""
    return run_workflow(DIELECTRIC_WORKFLOW, ctx, material_id, report)


def store_gap(run: Run) -> bool:
    """The SCF's gap into the database, with the SCF as its calculation: all a search on the PBEsol gap needs."""
    scf = run.steps[run.scf_step]
    run.result.status, run.result.scf_step = "done", run.scf_step
    run.result.kspacing = run.ctx.settings.kspacing
    with run.ctx.db.session() as session:
        calc = calculation_row(session, run.ctx, run.material_id, run.scf_step)
        session.flush()
        _store_scf_gap(session, run.ctx, session.get(Material, run.material_id), scf.outputs, calc.id)
    return True


def _store_scf_gap(session, ctx, material: Material, scf_outputs: dict, calculation_id: int) -> None:
    """The SCF's gap as the material's band_gap, unless `run electronic` stored one from its band path (which
    saw more of the zone)."""
    if _gap_from_band_path(session, material.id, ctx.method):
        return
    magnetic = ({"magnetization_bohr_magneton": scf_outputs["magnetization"]}
                if scf_outputs.get("magnetization") else {})
    set_property(session, material, "band_gap", scf_outputs["gap"], ctx.method, unit="eV",
                 calculation_id=calculation_id,
                 extra={"preset": ctx.preset, "is_direct": scf_outputs["direct"], **magnetic})


# the PBEsol gap alone (relaxation and SCF, no ph.x): the cheap level of a search on gaps; its steps are the
# dielectric workflow's, so a later `run dielectric` or `run electronic` goes on from them
GAP_WORKFLOW = Workflow(DIELECTRIC, (check_insulator_setup, relax, scf_gap, store_gap))
GAP_STEPS = ("relax", "relax2", "scf")  # the calculations it runs


def run_gap(ctx: RunContext, material_id: int, report: Callable[[str], None] | None = None) -> WorkflowResult:
    """Relaxation and SCF for one stored material, its PBEsol gap stored (`run_workflow(GAP_WORKFLOW, ...)`)."""
    return run_workflow(GAP_WORKFLOW, ctx, material_id, report)


def _mark_metal(result: WorkflowResult, gap: float, where: str, structure: Structure, spin_mode: str) -> None:
    result.status = "metal"
    result.band_gap = gap
    result.reason = (f"band gap {gap:.3f} eV in the {where} is below the metal threshold: no static dielectric "
                     "constant" + _magnetic_hint(structure.composition.reduced_formula, spin_mode))


def _magnetic_hint(formula: str, spin_mode: str) -> str:
    """Why an oxide with open-shell cations may have come out metallic."""
    cations = open_shell_cations(formula)
    if not cations:
        return ""
    if spin_mode == "off":
        return (f" ({', '.join(cations)} carries a magnetic moment and this run was spin-unpolarized (spin=off), so "
                "this is likely not a real metal; spin=auto computes it ferromagnetically)")
    return (f" (computed ferromagnetic and high-spin for {', '.join(cations)}; if the real order is "
            "antiferromagnetic or low-spin the gap may differ, and those orders are not tried)")


def relax_spec(ctx: RunContext, root: Path, structure: Structure, name: str) -> StepSpec:
    scratch = root / "scratch"

    def parse(directory: Path, log: str) -> dict:
        data = read_pw_xml(scratch / f"{name}.xml")
        if data["relax_converged"] is False:
            raise TansakuError("relaxation did not converge")
        out: dict = {"structure": data["structure"].as_dict(), "volume": data["structure"].volume,
                     "energy_ev": data["energy_ev"]}
        if "eigenvalues_ev" in data:
            out["gap"] = band_gap(data["eigenvalues_ev"], data["nelec"], data["lsda"], data["magnetization"]).gap
        return out

    kind = "vc-relax" if ctx.settings.relax_cell else "relax"
    return StepSpec(name, "pw", lambda st, ov: pw_input(st, kind, ctx.settings, ctx.pseudos, name, scratch, ov),
                    parse, structure)


def scf_spec(ctx: RunContext, root: Path, structure: Structure, name: str = "scf",
             scratch: Path | None = None) -> StepSpec:
    """SCF with fixed occupations and empty bands; `name` is the step and the pw.x prefix ph.x reads."""
    scratch = scratch or root / "scratch"

    def parse(directory: Path, log: str) -> dict:
        data = read_pw_xml(scratch / f"{name}.xml")
        if not data["scf_converged"]:
            raise TansakuError("SCF did not converge")
        gap = band_gap(data["eigenvalues_ev"], data["nelec"], data["lsda"], data["magnetization"])
        return {"structure": data["structure"].as_dict(), "energy_ev": data["energy_ev"], "gap": gap.gap,
                "symmetry_operations": symmetry_operations(log), "k_points": irreducible_k_points(log),
                "direct": gap.direct, "vbm": gap.vbm, "cbm": gap.cbm, "nelec": gap.nelec,
                "magnetization": data["magnetization"] if data["lsda"] else None}

    return StepSpec(name, "pw", lambda st, ov: pw_input(st, "scf", ctx.settings, ctx.pseudos, name, scratch, ov),
                    parse, structure)


def with_scf_save(run: Run, consumer: str) -> None:
    """The SCF's save directory for `consumer` to read (the SCF again if a wiped scratch lost it): the steps of
    other workflows that start from this workflow's SCF (band paths, meshes, hybrids) call it first."""
    run.needs_save(consumer, run.scf_step, scf_spec(run.ctx, run.root, run.structure, run.scf_step))


def phonon_spec(ctx: RunContext, root: Path, name: str = "phonon", prefix: str = "scf",
                scratch: Path | None = None, phonons: bool = True, electric_field: bool = True) -> StepSpec:
    """ph.x at Γ on the SCF called `prefix`: with `electric_field` the field (ε∞, Born charges), with `phonons`
    the atomic displacements (force constants). Without phonons ph.x writes no dynamical matrix: ε∞ and Z* come
    from its log."""
    if not (phonons or electric_field):
        raise ValueError("phonon_spec: neither the electric field nor the displacements asked for")
    scratch = scratch or root / "scratch"

    def parse(directory: Path, log: str) -> dict:
        if "JOB DONE" not in log:
            raise TansakuError("ph.x did not finish")
        if not phonons:
            eps, born = read_ph_dielectric(log)
            return {"eps_electronic": eps.tolist(), "born_charges": born.tolist()}
        dyn = read_dyn_gamma(directory / DYN_FILE)
        if electric_field and (dyn.eps_electronic is None or dyn.born_charges is None):
            raise TansakuError(f"{directory / DYN_FILE}: no dielectric tensor or Born charges")
        return {"dyn_file": DYN_FILE}

    perturbations = {"inputph": {"epsil": electric_field, "trans": phonons}}

    def write(structure: Structure | None, overrides: dict) -> str:
        return ph_input(ctx.settings, prefix, scratch, DYN_FILE, merge(perturbations, overrides))

    return StepSpec(name, "ph", write, parse)


def _analyse(ctx, material_id, phonon_dir: Path, scf: StepState, result: WorkflowResult, rotation: np.ndarray,
             k_probes: list[dict], field_run: dict | None = None,
             force_constants_kspacing: float | None = None) -> None:
    """ε_ion from the dynamical matrix with the acoustic sum rule, then every property into the database, its
    tensors turned back from the computed (standard) frame into the input structure's Cartesian frame. With
    `field_run` (a field-only ph.x's outputs on the same cell) ε∞ and Z* come from it, only K from the matrix."""
    dyn = read_dyn_gamma(phonon_dir / DYN_FILE)
    if field_run is not None:
        dyn = replace(dyn, eps_electronic=np.asarray(field_run["eps_electronic"]),
                      born_charges=np.asarray(field_run["born_charges"]))
    ionic = ionic_dielectric(dyn.force_constants, dyn.born_charges, dyn.masses_amu, dyn.volume_bohr3)
    eps_e = to_input_frame(dyn.eps_electronic, rotation)
    eps_ion = to_input_frame(ionic.tensor, rotation)
    eps_total = eps_e + eps_ion
    result.eps_electronic = tensor_average(eps_e)
    result.eps_ionic = ionic.average
    result.eps_total = tensor_average(eps_total)
    result.imaginary_modes = len(ionic.imaginary_modes)
    result.status = "done"
    if ionic.imaginary_modes:
        freqs = ionic.frequencies_thz[ionic.imaginary_modes].round(2).tolist()
        result.reason = (f"{len(ionic.imaginary_modes)} imaginary optical mode(s) at Γ ({freqs} THz): the structure "
                         "is not a minimum; ε_ion leaves them out")
    outputs = {
        "eps_electronic": eps_e.tolist(), "eps_ionic": eps_ion.tolist(), "eps_total": eps_total.tolist(),
        "frame": "the input structure's Cartesian axes", "rotation_to_computed_frame": rotation.tolist(),
        "frequencies_thz": ionic.frequencies_thz.tolist(), "acoustic_modes": ionic.acoustic.tolist(),
        "imaginary_modes": ionic.imaginary_modes, "asr": "simple",
        "kspacing": result.kspacing, "k_points": scf.outputs.get("k_points"),
        "symmetry_operations": scf.outputs.get("symmetry_operations"),
    }
    if k_probes:
        outputs["k_convergence"] = k_probes
    if force_constants_kspacing is not None:  # ε∞, Z* and the gap from a probe, K from a displacement-only ph.x
        outputs["force_constants_kspacing"] = force_constants_kspacing
    with ctx.db.session() as session:
        calc = calculation_row(session, ctx, material_id, "analysis")
        calc.engine, calc.status, calc.outputs = "tansaku", "done", outputs
        calc.inputs = {"dyn_file": str(phonon_dir / DYN_FILE)}
        calc.work_dir, calc.code_version = str(phonon_dir.parent), f"tansaku {__version__}"
        calc.finished_at = utcnow()
        calc.attempts = 1
        session.flush()
        material = session.get(Material, material_id)
        extra = {"preset": ctx.preset}
        scf_out = scf.outputs

        def put(name, value, tensor=None, unit=None, more=None):
            set_property(session, material, name, value, ctx.method, unit=unit, tensor=tensor,
                         extra={**extra, **(more or {})}, calculation_id=calc.id)

        _store_scf_gap(session, ctx, material, scf_out, calc.id)
        put("eps_electronic", result.eps_electronic, eps_e.tolist())
        put("eps_ionic", result.eps_ionic, eps_ion.tolist(), more={"imaginary_modes": result.imaginary_modes})
        put("eps_total", result.eps_total, eps_total.tolist())
        born = to_input_frame(asr_born_charges(dyn.born_charges), rotation)  # atoms in the computed cell's order
        put("born_charges", isotropic_born_charge(born), born.tolist(), unit="e")
        put("gamma_frequencies", float(ionic.frequencies_thz.min()), ionic.frequencies_thz.tolist(), unit="THz",
            more={"imaginary_modes": result.imaginary_modes})


def _gap_from_band_path(session, material_id: int, method: str) -> bool:
    """Has `run electronic` stored this material's gap from its band path (and the SCF mesh) by this method?"""
    from tansaku.store.tables import Property

    stored = session.scalar(select(Property).where(Property.material_id == material_id,
                                                   Property.name == "band_gap", Property.method == method))
    return bool(stored and (stored.extra or {}).get("k_sampling", "").startswith("SCF mesh and band path"))
