"""The hybrid-functional gaps of `run electronic`: HSE06 and the dielectric-dependent hybrid (DDH, a PBE0 form
whose exact-exchange fraction is 1/ε∞), self-consistent or non-self-consistent on PBE orbitals, with the memory
check that refuses them before any calculation when they would not fit."""

from __future__ import annotations

import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
from pymatgen.core import Structure
from sqlalchemy import select

from tansaku import TansakuError
from tansaku.dft.memory import hybrid_memory, machine_memory_gb
from tansaku.dft.qe.inputs import ecutfock_for, merge, pw_input
from tansaku.dft.qe.parsers import band_gap, first_hybrid_eigenvalues, read_pw_xml
from tansaku.dft.settings import HYBRID_FUNCTIONALS, exchange_q_mesh, kmesh, standard_frame
from tansaku.store.materials import tensor_average
from tansaku.store.tables import Property
from tansaku.workflows.dielectric import phonon_spec, scf_spec, with_scf_save
from tansaku.workflows.executor import LocalExecutor
from tansaku.workflows.kmesh_convergence import mesh_label, probe_spacings, settle
from tansaku.workflows.run import ELECTRONIC, Run, RunContext
from tansaku.workflows.steps import StepCancelled, StepSpec

NO_FORCES = {"control": {"tprnfor": False, "tstress": False}}  # band energies need neither
PBE_SCF = "pbe-scf"  # the semilocal ground state the non-self-consistent hybrids start from
# The first hybrid diagonalization is printed (iprint); it is the answer. The density comes from the PBE SCF, the
# orbitals not: a save's orbitals and density agree so exactly that pw.x's first-iteration check lowers the
# eigenvalue threshold to ~1e-16, which Davidson cannot reach once exact exchange is on (MgO, standard preset).
# Two iterations per loop, and they must converge: the semilocal start does in one, the hybrid loop does not in
# two, so pw.x stops there ("Calculation (EXX) stopped during iteration #2", exit status 2). Without the
# must-converge pw.x calls two unconverged iterations converged and builds the exchange operator a second time,
# for nothing: 47 % of the run on MgO (standard preset, 105 against 56 CPU s). The threshold is NSC_LOOSER times
# the PBE SCF's, so that its converged density passes at once (NiO's sat at 2.3e-9 against the 2e-9 it was
# converged to), while the hybrid loop's first step moves the density far more (MgO: 4e-4 Ry); the first
# hybrid eigenvalues do not depend on it (MgO's gap the same to 1e-4 eV at 100 times looser).
NSC_RUN = {"control": {"iprint": 1},
           "electrons": {"electron_maxstep": 2, "scf_must_converge": True, "startingwfc": "atomic+random",
                         "startingpot": "file"}}
NSC_LOOSER = 100.0


def hybrid_spec(ctx: RunContext, root: Path, structure: Structure, name: str, functional: dict,
                orbitals_from: str | None = None) -> StepSpec:
    """A hybrid pw.x run on the SCF's Γ-centred mesh, the exact exchange on a q-mesh hybrid_q_divisor times
    coarser (`functional`: the &system keys that choose it). Self-consistent; or, with `orbitals_from` (a PBE SCF
    in the hybrid scratch), non-self-consistent: pw.x starts from that SCF's density, whose semilocal loop then
    converges at once, switches the exact exchange on and diagonalizes once; the
    eigenvalues printed then are the hybrid Hamiltonian's on the PBE orbitals (pw.x 6.7 refuses hybrids in
    nscf runs, so a second iteration, whose values are not used, ends the run unconverged on purpose; it writes
    no XML of its own, and the electron count comes from the PBE SCF's)."""
    nsc = orbitals_from is not None
    s = replace(ctx.settings, conv_thr_per_atom=ctx.settings.hybrid_conv_thr_per_atom * (NSC_LOOSER if nsc else 1))
    scratch = root / "hybrid-scratch"
    mesh = kmesh(structure, s.kspacing, s.even_kmesh)
    q = exchange_q_mesh(mesh, s.hybrid_q_divisor)
    exchange = {"nqx1": q[0], "nqx2": q[1], "nqx3": q[2], "exxdiv_treatment": "gygi-baldereschi",
                "x_gamma_extrapolation": True, "ecutfock": ecutfock_for(structure, s, ctx.pseudos), **functional}
    # forces and stress with exact exchange cost as much as an iteration, and a gap needs neither
    namelists = merge(merge(NO_FORCES, {"system": exchange}), NSC_RUN if nsc else {})

    def write(st: Structure | None, overrides: dict) -> str:
        return pw_input(structure, "scf", s, ctx.pseudos, name, scratch, merge(namelists, overrides))

    def orbitals() -> None:  # nsc: the PBE SCF's save, to start from
        shutil.rmtree(scratch / f"{name}.save", ignore_errors=True)
        shutil.copytree(scratch / f"{orbitals_from}.save", scratch / f"{name}.save")

    def parse(directory: Path, log: str) -> dict:
        data = read_pw_xml(scratch / f"{orbitals_from if nsc else name}.xml")
        if nsc:
            energies = first_hybrid_eigenvalues(log)
        elif not data["scf_converged"]:
            raise TansakuError(f"{name}: the hybrid SCF did not converge")
        else:
            energies = data["eigenvalues_ev"]
        gap = band_gap(energies, data["nelec"], data["lsda"], data["magnetization"])
        return {"gap": gap.gap, "direct": gap.direct, "vbm": gap.vbm, "cbm": gap.cbm, "q_mesh": q,
                "k_mesh": list(mesh), "self_consistent": not nsc, **({"orbitals": "PBE"} if nsc else {}),
                **functional}

    # the nsc run stops its exact-exchange loop after one step on purpose
    return StepSpec(name, "pw", write, parse, structure, expected=("scf_not_converged",) if nsc else (),
                    prepare=orbitals if nsc else None)


def pbe_scf(run: Run) -> StepSpec:
    """A PBE SCF in the hybrid scratch, started from the PBEsol SCF's density and orbitals (a few iterations):
    the orbitals the non-self-consistent hybrids use. PBE because pw.x's hybrids (HSE06, PBE0) start from their
    own semilocal functional: from PBEsol orbitals its first loop would move them anyway."""
    ctx = replace(run.ctx, settings=replace(run.ctx.settings, functional="pbe",
                                            conv_thr_per_atom=run.ctx.settings.hybrid_conv_thr_per_atom))
    scratch = run.root / "hybrid-scratch"
    spec = scf_spec(ctx, run.root, run.structure, PBE_SCF, scratch)

    start = {"electrons": {"startingwfc": "file", "startingpot": "file"}}

    def from_pbesol() -> None:
        shutil.rmtree(scratch / f"{PBE_SCF}.save", ignore_errors=True)
        shutil.copytree(run.root / "scratch" / f"{run.scf_step}.save", scratch / f"{PBE_SCF}.save")

    return replace(spec, write_input=lambda structure, overrides: spec.write_input(structure, merge(start, overrides)),
                   prepare=from_pbesol)


def electronic_dielectric_constant(run: Run) -> float:
    """ε∞ of the material for the dielectric-dependent hybrid: the stored DFPT value of this method, else an
    electric-field-only ph.x on the SCF (3 perturbations: a small part of the dielectric workflow's cost)."""
    with run.ctx.db.session() as session:
        stored = session.scalar(select(Property.value).where(
            Property.material_id == run.material_id, Property.name == "eps_electronic",
            Property.method == run.ctx.method))
    if stored is not None:
        return float(stored)
    s = run.ctx.settings
    if s.k_converge is None and run.steps[run.scf_step].outputs["gap"] < s.small_gap_ev:
        # a small gap needs a denser mesh for ε∞ than the SCF's (Si's ε∞ at 0.7 Å⁻¹: 25 against 12): the probes
        # of the dielectric workflow's small-gap rule (the same steps, shared with it), and the ε∞ it reports
        _, probes = settle(run, run.structure, probe_spacings(run.structure, s.kspacing, s.even_kmesh),
                           s.small_gap_k_converge)
        run.k_probes = [p.as_dict() for p in probes]
        if not math.isfinite(probes[-1].eps_electronic):  # the probes ended on a mesh without a gap
            raise TansakuError(f"the {mesh_label(probes[-1].mesh)} k-mesh has no gap "
                               f"({probes[-1].band_gap:.3f} eV): no ε∞")
        return probes[-1].eps_electronic  # the finer of the two meshes that agreed
    # ph.x writes its own files next to the SCF's: on a copy, so that the dielectric workflow's ph.x later finds
    # the SCF's scratch as the SCF left it
    scratch = run.root / "field-scratch"
    spec = phonon_spec(run.ctx, run.root, "epsilon-field", run.scf_step, scratch, phonons=False)

    def copy_save() -> None:
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.copytree(run.root / "scratch" / f"{run.scf_step}.save", scratch / f"{run.scf_step}.save")

    with_scf_save(run, "epsilon-field")
    field = run.step("epsilon-field", replace(spec, prepare=copy_save), workflow=ELECTRONIC)
    shutil.rmtree(scratch, ignore_errors=True)
    return tensor_average(np.asarray(field.outputs["eps_electronic"]))


def is_hybrid_step(step: str) -> bool:
    """A step the hybrid gaps add (what a two-level campaign's expensive level costs): the PBE SCF the nsc runs
    start from, the field-only ph.x giving the DDH its ε∞, and the hybrid runs themselves."""
    return step in (PBE_SCF, "epsilon-field") or step.startswith(("hse06-", "ddh-"))


def check_hybrid_memory(run: Run) -> bool:
    """Before any calculation: refuse hybrid runs that would not fit in memory, saying what they need and which
    setting brings them down (a swapping or killed pw.x an hour in is the alternative)."""
    s = run.ctx.settings
    if s.hybrid == "none":
        return True
    limit, whose = s.max_memory_gb, "max_memory_gb allows"
    if limit is None and isinstance(run.ctx.executor, LocalExecutor) and (machine := machine_memory_gb()):
        workers = run.ctx.workers
        limit = machine / workers
        whose = "this machine has" if workers == 1 else (f"each of the {workers} materials run at once "
                                                         f"(--workers) has of this machine's {machine:.1f} GB")
    if limit is None:
        return True
    structure = standard_frame(run.structure)[0] if s.standardize else run.structure
    procs = run.ctx.commands.mpi_procs
    need = hybrid_memory(structure, s, run.ctx.pseudos, procs)
    if need.total_gb <= limit:
        return True
    options = []
    for key, value in (("hybrid_q_divisor", 2 * s.hybrid_q_divisor), ("ecutfock_factor", s.ecutfock_factor / 2)):
        try:
            lowered = replace(s, **{key: value})
        except TansakuError:  # a value the settings refuse (ecutfock below ecutwfc) is no way out
            continue
        lower = hybrid_memory(structure, lowered, run.ctx.pseudos, procs)
        if lower.total_gb < need.total_gb:
            options.append(f"--set {key}={value:g} ({lower.total_gb:.1f} GB)")
    raise TansakuError(f"material {run.material_id} ({structure.composition.reduced_formula}): the hybrid runs "
                       f"would need {need.describe()}, more than the {limit:.1f} GB {whose}; "
                       + (f"lower it with {' or '.join(options)}, or " if options else "")
                       + "set max_memory_gb if the run has more memory than that")


def hybrid_kinds(mode: str) -> tuple[str, ...]:
    return {"none": (), "scf": ("scf",), "nsc": ("nsc",), "both": ("nsc", "scf")}[mode]


def hybrid_gaps(run: Run) -> bool:
    """HSE06 and the dielectric-dependent hybrid (a PBE0 form whose exact-exchange fraction is 1/ε∞), each
    self-consistent, non-self-consistent on PBE orbitals, or both, as `hybrid` asks: steps hse06-scf, ddh-nsc...
    HSE06 first: it does not need ε∞, so a material whose ε∞ cannot be had (a tiny PBEsol gap whose k-mesh
    probes never agree) still gets its HSE06 gap, and the DDH is recorded as skipped with the reason."""
    kinds = hybrid_kinds(run.ctx.settings.hybrid)
    if not kinds:
        return True
    names = run.ctx.settings.hybrids()
    scratch = run.root / "hybrid-scratch"
    pbe = pbe_scf(run)
    if "nsc" in kinds:
        with_scf_save(run, PBE_SCF)
        run.step(PBE_SCF, pbe, workflow=ELECTRONIC)
    for name in (n for n in HYBRID_FUNCTIONALS if n in names):
        functional = {"input_dft": "hse"}  # HSE06
        if name == "ddh":  # the DDH's exact-exchange fraction is the one setting that needs ε∞
            try:
                eps = electronic_dielectric_constant(run)
            except StepCancelled:  # cancelled by hand: the material is marked so, not quietly finished
                raise
            except TansakuError as exc:
                run.skipped["ddh"] = f"no DDH gap: its ε∞ could not be had ({exc})"
                run.report(run.skipped["ddh"])
                continue
            functional = {"input_dft": "pbe0", "exx_fraction": round(1.0 / eps, 6)}
        for kind in kinds:
            step = f"{name}-{kind}"
            if kind == "nsc":
                run.needs_save(step, PBE_SCF, pbe, scratch)
            spec = hybrid_spec(run.ctx, run.root, run.structure, step, functional,
                               PBE_SCF if kind == "nsc" else None)
            run.step(step, spec, workflow=ELECTRONIC)
            remove_run_files(scratch, step)  # its wavefunctions (and an nsc run's exchange restart) are not needed
    shutil.rmtree(scratch, ignore_errors=True)
    return True


def remove_run_files(scratch: Path, prefix: str) -> None:
    """A finished pw.x run's files in a shared scratch: its save and everything named prefix.* (an nsc run that
    stopped on purpose leaves a restart of its exchange buffer, as large as the buffer in memory)."""
    shutil.rmtree(scratch / f"{prefix}.save", ignore_errors=True)
    for path in scratch.glob(f"{prefix}.*"):
        if path.is_file():
            path.unlink()
