"""What a dielectric workflow will cost, before it runs: a size from the cell and k-mesh, calibrated on finished runs.

The size counts the workflow's steps in one unit, the work pw.x does per SCF iteration summed over the irreducible
k-points of the Γ-centred mesh (spglib, time reversal included; a symmetric cell is charged for the points pw.x
really computes). Per k-point that work is bands × FFT points (applying the Hamiltonian, an FFT pair per band)
plus ORTHO_PER_FFT × plane waves × bands² (orthogonalisation and the subspace problem); the FFT grid is pw.x's
own (`fft_grid`), so a long, thin cell whose grid is mostly outside the cut-off sphere is charged for it. On the
DFT benchmark's nine oxides (dft_reproduction.md, QE CPU time) the SCF's CPU time per unit spreads 1.5-fold
with ORTHO_PER_FFT = 2 and the whole ph.x's 1.24-fold; plane waves × bands² alone, the unit this model used
before, spread them 2.2- and 1.5-fold (BaTiO3's SCF half MgO's per unit, the rhombohedral NaScO2 and AlCuO2
on 64³ grids for 40 Å³ cells).
Per step (`StepWeights`):
- the SCF is one unit and the relaxation `relax` of them;
- ph.x works on the occupied bands only, so its unit has the occupied bands in place of all; it costs
  `dfpt_triple` per three atomic displacements and `field` of those for the electric field's three
  perturbations (a field-only ph.x of a k-mesh probe, and the field part of the whole ph.x).
All three are medians over finished runs (`step_ratios`) once there are WEIGHTS_MIN_RUNS of them; before that,
the benchmark's (see the constants).
A material whose gap is known to be below `small_gap_ev` (any stored band gap: imported, computed or predicted) is
charged for the mesh probes too: an SCF (but on the fixed mesh, whose SCF the workflow has) and a field-only ph.x
from kspacing down, then the atomic displacements on the mesh that settled (with small_gap_split on the fixed
mesh). Which one settles is known only after the probes; the size is the mean of settling on the mesh the gap
points to (SETTLED_SPACING_PER_SQRT_GAP: the smaller the gap, the finer) and on the one before: from 1.64 eV up
the first two meshes (BaO settled on the first, BaTiO3 on the second). Below, the gap orders the benchmark's two
small gaps the wrong way round (SnO2, 0.72 eV, settled on its second mesh; ZnO with U, 1.23 eV, on its fourth), so
the constant leaves one over and one under (dft_reproduction.md's cost check). With `k_converge` every material
probes first, from k_coarsest, and runs everything on the mesh chosen.
CPU hours = c × size^b. b = 1, the scaling the size is built on, unless the finished runs can tell otherwise: at
least twenty, with sizes a factor of ten apart or more; then b comes from a least-squares fit in log space (kept in
[0.5, 2]). Fitted on eight of the benchmark's nine oxides, b came out 1.03-1.13 and put the ninth further off than
b = 1 did (NaScO2 +45 % against +3 %, 6 against 7 of 9 within 30 %). c is the median ratio of CPU hours to
size^b. Before any run with the preset finishes, c is a prior per preset (PRIOR_HOURS_PER_SIZE; for the gap
workflow alone PRIOR_GAP_HOURS_PER_SIZE): the standard preset's is 1.8 times the test preset's, whose small cut-off
leaves more of the time to work the size leaves out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from pymatgen.core import Structure
from sqlalchemy import select

from tansaku import TansakuError
from tansaku.dft.memory import BOHR, fft_grid
from tansaku.dft.pseudos import PseudoFamily
from tansaku.dft.qe.inputs import ecutwfc_for, number_of_electrons
from tansaku.dft.settings import DielectricSettings, irreducible_points, kmesh, standard_cell
from tansaku.store.database import Database
from tansaku.store.tables import Calculation, Material, Property
from tansaku.workflows.kmesh_convergence import DISPLACEMENTS_STEP, mesh_from_label, probe_spacings

# CPU hours per unit of size before any run with the preset has finished, 2 MPI processes on this project's machine:
# test: SrS and BaS (benchmarks/results/cost_prior.md); standard (and presets without their own): the DFT
# benchmark's nine oxides (dft_reproduction.md, the cost check's in-sample scale)
PRIOR_HOURS_PER_SIZE = {"test": 3.9e-11, "standard": 7.2e-11}
# the gap workflow alone (relaxation and SCF), the same runs' relax and SCF steps (cost_prior.md's gap column; the
# DFT benchmark's cost check): at the test preset's tiny cut-off they cost less per unit than ph.x does, so the
# whole workflow's prior put the demo's gap runs 2.4 times high; at the standard preset the two agree
PRIOR_GAP_HOURS_PER_SIZE = {"test": 1.6e-11, "standard": 7.5e-11}
ORTHO_PER_FFT = 2.0  # plane waves × bands² against bands × FFT points: the benchmark's SCF and ph.x spread least
RELAX_IN_SCFS = 5.6  # the DFT benchmark's medians (dft_reproduction.md, QE CPU time)
DFPT_TRIPLE_IN_SCFS = 8.6
FIELD_IN_TRIPLES = 1.5
EXPONENT_MIN_RUNS, EXPONENT_MIN_SPAN = 20, 10.0
# The k-spacing (Å⁻¹) at which a small gap's ε∞ settles to 1 %, per √(gap/eV): the occupied states' decay length
# grows as the gap shrinks. The benchmark's runs (kmesh_probes.md, gaps ours): ZnO with U (1.23 eV) settled at
# 0.205, SnO2 (0.72) and BaTiO3 (1.81) at 0.32, BaO (1.82) and AlCuO2 (1.90) at 0.4; plain ZnO (0.66) had not by
# 0.16. No power of the gap puts both SnO2 and ZnO on their meshes. Asked of each of the eleven in turn (leave one
# out, the estimate sized by the database's gap; cost_settling_sweep.md), 0.25 gave the smallest total error (-8 %;
# 0.2 +36 %, 0.3 -12 %, 0.35 -34 %) with 7 of 11 within 30 %: ZnO 63 % low, SnO2 71 % high. Down to 1.64 eV it
# charges the first two meshes; below, the two meshes around the spacing.
SETTLED_SPACING_PER_SQRT_GAP = 0.25
WEIGHTS_MIN_RUNS = 3


class StepRatios(NamedTuple):
    """One finished run's steps in its own SCF's units (`step_ratios`); NaN where the run lacks the step."""

    relax: float = np.nan
    dfpt_triple: float = np.nan
    field: float = np.nan


@dataclass(frozen=True)
class StepWeights:
    """The relaxation, ph.x per three atomic displacements and the electric field in displacement triples, in SCFs
    of the same cell and mesh: the benchmark's medians until finished runs say otherwise (another machine, preset
    or chemistry)."""

    relax: float = RELAX_IN_SCFS
    dfpt_triple: float = DFPT_TRIPLE_IN_SCFS
    field: float = FIELD_IN_TRIPLES
    relax_runs: int = 0  # how many finished runs each weight was learned from (0: the prior)
    dfpt_runs: int = 0
    field_runs: int = 0

    @classmethod
    def learn(cls, runs: list[StepRatios], min_runs: int = WEIGHTS_MIN_RUNS) -> StepWeights:
        """The median of each ratio over finished runs, where at least `min_runs` runs have it."""
        prior, learned = cls(), {}
        for name in ("relax", "dfpt_triple", "field"):
            values = [v for v in (getattr(run, name) for run in runs) if np.isfinite(v) and v > 0]
            enough = len(values) >= min_runs
            learned[name] = float(np.median(values)) if enough else getattr(prior, name)
            learned[f"{name.split('_')[0]}_runs"] = len(values) if enough else 0
        return cls(**learned)


@dataclass(frozen=True)
class ComputedCell:
    """The cell the workflow computes (its standard primitive cell by default) and its work per k-point: pw.x's
    on all the bands it computes, ph.x's per perturbation on the occupied ones."""

    structure: Structure
    scf_work: float
    dfpt_work: float

    @classmethod
    def of(cls, structure: Structure, settings: DielectricSettings, pseudos: PseudoFamily) -> ComputedCell:
        if settings.standardize:
            structure = standard_cell(structure)
        occupied = number_of_electrons(structure, pseudos) / 2
        ecutwfc = ecutwfc_for(structure, settings, pseudos)
        fft_points = float(np.prod(fft_grid(structure, ecutwfc * settings.ecutrho_factor)))
        plane_waves = structure.volume / BOHR**3 * ecutwfc**1.5 / (6 * np.pi**2)

        def work(bands: float) -> float:
            return bands * fft_points + ORTHO_PER_FFT * plane_waves * bands**2

        return cls(structure, work(occupied + settings.extra_bands), work(occupied))

    def points(self, mesh: tuple[int, int, int]) -> int:
        return irreducible_k_points(self.structure, mesh)


@dataclass
class Sizing:
    """What a material's estimate rests on: its stored gap, the cell the workflow computes and the size of each
    step (`cost_parts`), or why the workflow cannot run it."""

    gap: float | None
    cell: ComputedCell | None = None
    parts: dict[str, float] = field(default_factory=dict)
    reason: str = ""


def step_ratios(seconds: dict[str, float], structure: Structure, settings: DielectricSettings,
                pseudos: PseudoFamily, field: float = FIELD_IN_TRIPLES) -> StepRatios:
    """A finished run's relaxation, ph.x per displacement triple and electric field per displacement triple, in
    units of its own SCF (`seconds`: CPU seconds by step name). The whole ph.x is split with `field`; a small gap's
    run gives the displacements alone (`phonon-displacements-<mesh>`) and its probes' field-only ph.x, each scaled
    by its own mesh's k-points. Runs of the convergence mode give none: their SCF's mesh is not in its name."""
    scf = seconds.get("scf")
    if not scf or settings.k_converge is not None:
        return StepRatios()
    cell = ComputedCell.of(structure, settings, pseudos)
    atoms = len(cell.structure)
    per_unit = scf / cell.points(kmesh(cell.structure, settings.kspacing, settings.even_kmesh)) / cell.scf_work
    relax = sum(cpu for step, cpu in seconds.items() if step.startswith("relax")) / scf or np.nan

    def dfpt(step: str, mesh: tuple[int, int, int] | None = None) -> float:
        """A ph.x step's CPU time per perturbation triple's unit, in SCF units."""
        mesh = mesh or kmesh(cell.structure, settings.kspacing, settings.even_kmesh)
        return seconds[step] / cell.points(mesh) / cell.dfpt_work / per_unit

    if seconds.get("phonon"):
        return StepRatios(relax, dfpt("phonon") / (atoms + field))
    displacements = [s for s in seconds if s.startswith(DISPLACEMENTS_STEP) and seconds[s]]
    if not displacements:
        return StepRatios(relax)
    triple = dfpt(displacements[0], mesh_from_label(displacements[0].removeprefix(DISPLACEMENTS_STEP))) / atoms
    fields = [dfpt(s, mesh_from_label(s.removeprefix("kmesh-").removesuffix("-eps"))) / triple
              for s in seconds if s.startswith("kmesh-") and s.endswith("-eps") and seconds[s]]
    return StepRatios(relax, triple, float(np.median(fields)) if fields else np.nan)


def cost_parts(structure: Structure, settings: DielectricSettings, pseudos: PseudoFamily,
               gap: float | None = None, gap_only: bool = False, weights: StepWeights | None = None,
               cell: ComputedCell | None = None) -> dict[str, float]:
    """The size of each of the workflow's steps on the cell it will actually compute (its standard primitive cell
    by default), by workflow step: "relax", "scf", "phonon" (ph.x on the fixed mesh) and "probes" (the k-mesh
    probes with the displacements after them, with `gap` (eV) below small_gap_ev; with k_converge set, everything
    runs on the probed mesh and is charged there, under "probes"). `gap_only`: the gap workflow's steps,
    relaxation and SCF (what a campaign on the PBEsol gap alone runs). `cell`: the structure's ComputedCell, when
    the caller has it already."""
    w = weights or StepWeights()
    cell = cell or ComputedCell.of(structure, settings, pseudos)

    def points(spacing: float) -> float:
        return float(cell.points(kmesh(cell.structure, spacing, settings.even_kmesh)))

    def scf(spacing: float) -> float:
        return points(spacing) * cell.scf_work

    def dfpt(spacing: float, triples: float) -> float:
        return points(spacing) * cell.dfpt_work * w.dfpt_triple * triples

    atoms = len(cell.structure)

    def mean_course(spacings: list[float], then: Callable[[int, float], float], first_scf: bool = True,
                    settles_by: int = 1) -> float:
        """Probes (an SCF and a field-only ph.x each; the first without its SCF unless `first_scf`) until two
        meshes agree, then `then` on the coarser: the mean of settling on mesh `settles_by` (probes up to the one
        after it) and on the mesh before it; by default the first two meshes (two probes or three)."""
        last = min(settles_by, len(spacings) - 2)
        probes = [(scf(s) if i or first_scf else 0.0) + dfpt(s, w.field) for i, s in enumerate(spacings[:last + 2])]
        courses = [sum(probes[: i + 2]) + then(i, spacings[i]) for i in range(max(last - 1, 0), last + 1)]
        return float(np.mean(courses)) if courses else probes[0] + then(0, spacings[0])

    if settings.k_converge is not None and not gap_only:  # probes first, from k_coarsest; then everything there
        return {"probes": mean_course(probe_spacings(cell.structure, settings.k_coarsest, settings.even_kmesh),
                                      lambda i, s: scf(s) * (w.relax + 1) + dfpt(s, atoms + w.field))}
    parts = {"relax": scf(settings.kspacing) * w.relax, "scf": scf(settings.kspacing)}
    if gap_only:
        return parts
    if gap is None or gap >= settings.small_gap_ev:
        return {**parts, "phonon": dfpt(settings.kspacing, atoms + w.field)}
    # probes from kspacing (the first is the fixed mesh: its SCF is the workflow's), then the displacements on the
    # mesh that settled (the finer probe's field-only ph.x gave ε∞ and Z*), or with small_gap_split on the fixed
    # mesh; the smaller the gap, the finer the mesh that settles
    spacings = probe_spacings(cell.structure, settings.kspacing, settings.even_kmesh)
    return {**parts, "probes": mean_course(spacings, lambda i, s: dfpt(settings.kspacing if settings.small_gap_split
                                                                       else s, atoms),
                                           first_scf=False, settles_by=settling_mesh(spacings, gap))}


def settling_mesh(spacings: list[float], gap: float) -> int:
    """Which of the probes' spacings (coarsest first) a gap's ε∞ settles by: the first at or below
    SETTLED_SPACING_PER_SQRT_GAP × √gap, at least the second (the first mesh settles only when the next agrees)."""
    target = SETTLED_SPACING_PER_SQRT_GAP * np.sqrt(max(gap, 0.0))
    return max(1, next((i for i, s in enumerate(spacings) if s <= target + 1e-9), len(spacings) - 1))


def cost_size(structure: Structure, settings: DielectricSettings, pseudos: PseudoFamily,
              gap: float | None = None, gap_only: bool = False, weights: StepWeights | None = None) -> float:
    """The size of the whole workflow: the sum of `cost_parts`."""
    return sum(cost_parts(structure, settings, pseudos, gap, gap_only, weights).values())


def remaining_fraction(parts: dict[str, float], done_steps: set[str]) -> float:
    """The share of a material's size still to run when `done_steps` (workflow step names) have finished: the
    relaxation and SCF are done with their steps, the fixed-mesh ph.x with "phonon", the probes' course with the
    ph.x that ends it (the displacements; with k_converge, "phonon"): a run killed among its probes is charged
    them all again."""
    total = sum(parts.values())
    if not total:
        return 0.0
    phonons = "phonon" in done_steps or any(step.startswith(DISPLACEMENTS_STEP) for step in done_steps)
    finished = {"relax": "relax" in done_steps, "scf": "scf" in done_steps, "phonon": phonons, "probes": phonons}
    return sum(size for part, size in parts.items() if not finished[part]) / total


def irreducible_k_points(structure: Structure, mesh: tuple[int, int, int]) -> int:
    """Irreducible points of a Γ-centred mesh (the full mesh when spglib finds no symmetry)."""
    return len(irreducible_points(structure, mesh))


def prior_scale(preset: str, gap_only: bool = False) -> float:
    """CPU hours per unit of size before any run with `preset` has finished: of the whole workflow
    (PRIOR_HOURS_PER_SIZE) or, `gap_only`, of its relaxation and SCF (PRIOR_GAP_HOURS_PER_SIZE)."""
    table = PRIOR_GAP_HOURS_PER_SIZE if gap_only else PRIOR_HOURS_PER_SIZE
    return table.get(preset, table["standard"])


@dataclass
class CostModel:
    scale: float = PRIOR_HOURS_PER_SIZE["standard"]
    exponent: float = 1.0
    n_runs: int = 0

    def hours(self, size: np.ndarray | float) -> np.ndarray:
        return self.scale * np.asarray(size, dtype=float) ** self.exponent

    @classmethod
    def calibrate(cls, sizes: list[float], hours: list[float], prior: float = PRIOR_HOURS_PER_SIZE["standard"]
                  ) -> CostModel:
        """c (and b, from enough runs) from finished runs' sizes and CPU hours; `prior` as c without any."""
        pairs = [(s, h) for s, h in zip(sizes, hours, strict=True) if s > 0 and h > 0]
        if not pairs:
            return cls(prior)
        s, h = np.log(np.array(pairs)).T
        b = 1.0
        if len(pairs) >= EXPONENT_MIN_RUNS and np.ptp(s) >= np.log(EXPONENT_MIN_SPAN):
            b = float(np.clip(np.polyfit(s, h, 1)[0], 0.5, 2.0))
        return cls(float(np.exp(np.median(h - b * s))), b, len(pairs))


def cpu_hours_by_material(db: Database, preset: str, mpi_procs: int, material_ids: list[int] | None = None,
                          finished_only: bool = False, steps: tuple[str, ...] | None = None) -> dict[int, float]:
    """CPU hours of each material's dielectric-workflow steps (only `steps` when given) with this preset: QE's own
    CPU time of every attempt and process where recorded (schema 4 on), else wall time × MPI processes per run."""
    left_out = (lambda step: step not in steps) if steps is not None else (lambda step: False)
    return {material_id: levels["cheap"] for material_id, levels in cpu_hours_by_level(
        db, preset, mpi_procs, material_ids, finished_only, ("dielectric",), left_out).items() if levels["cheap"]}


def cpu_hours_by_level(db: Database, preset: str, mpi_procs: int, material_ids: list[int] | None = None,
                       finished_only: bool = False, workflows: tuple[str, ...] = ("dielectric", "electronic"),
                       expensive: Callable[[str], bool] | None = None) -> dict[int, dict[str, float]]:
    """CPU hours of each material's steps with this preset, split into the two levels of theory a campaign
    pays for: "expensive" the steps `expensive` names (by default the hybrid-functional steps and the PBE SCF and
    ε∞ they need: `is_hybrid_step`), "cheap" the rest."""
    from tansaku.workflows.hybrid import is_hybrid_step

    expensive = expensive or is_hybrid_step
    query = select(Calculation.material_id, Calculation.step, Calculation.cpu_seconds, Calculation.started_at,
                   Calculation.finished_at).where(Calculation.workflow.in_(workflows), Calculation.preset == preset)
    if material_ids is not None:
        query = query.where(Calculation.material_id.in_(material_ids))
    if finished_only:
        query = query.where(Calculation.status == "done")
    hours: dict[int, dict[str, float]] = {}
    with db.session() as session:
        for material_id, step, cpu, start, end in session.execute(query):
            seconds = cpu or ((end - start).total_seconds() * mpi_procs if start and end else 0.0)
            levels = hours.setdefault(material_id, {"cheap": 0.0, "expensive": 0.0})
            levels["expensive" if expensive(step) else "cheap"] += seconds / 3600.0
    return hours


class CostEstimator:
    """CPU-hour estimates for candidates, calibrated on the dielectric runs finished with this preset; with
    `gap_only`, of the gap workflow (relaxation and SCF), calibrated on those steps of any run. The step weights
    are learned too, from `weights_min_runs` finished runs on."""

    def __init__(self, db: Database, ctx, gap_only: bool = False, weights_min_runs: int = WEIGHTS_MIN_RUNS):
        from tansaku.workflows.dielectric import GAP_STEPS

        self.db, self.ctx, self.gap_only, self.weights_min_runs = db, ctx, gap_only, weights_min_runs
        self._cells: dict[int, Structure] = {}
        self._sized: dict[int, Sizing] = {}  # what `_measure` found per material, for `explain`
        hours = cpu_hours_by_material(db, ctx.preset, ctx.commands.mpi_procs, finished_only=True,
                                      steps=GAP_STEPS if gap_only else None)
        if not gap_only:  # a whole workflow's cost is learned from whole workflows, not from a gap run's steps
            with db.session() as session:
                whole = set(session.scalars(select(Calculation.material_id).where(
                    Calculation.workflow == "dielectric", Calculation.step == "analysis",
                    Calculation.status == "done", Calculation.preset == ctx.preset)))
            hours = {material_id: h for material_id, h in hours.items() if material_id in whole}
        recent = list(hours)[-200:]
        self.weights = self._learn_weights(recent)
        sizes = self._measure(recent)
        self.model = CostModel.calibrate([sizes[i] for i in recent], [hours[i] for i in recent],
                                         prior_scale(ctx.preset, gap_only))
        self._sizes: dict[int, float] = sizes  # structures do not change: size each material once

    def _structures(self, material_ids: list[int]) -> dict[int, Structure]:
        """Stored structures, each read from the database once (weights and sizes both need them)."""
        missing = [i for i in material_ids if i not in self._cells]
        if missing:
            with self.db.session() as session:
                self._cells.update({m.id: m.structure() for m in session.scalars(
                    select(Material).where(Material.id.in_(missing)))})
        return {i: self._cells[i] for i in material_ids if i in self._cells}

    def _learn_weights(self, material_ids: list[int]) -> StepWeights:
        """The step weights of these materials' finished dielectric runs (`step_ratios`)."""
        seconds: dict[int, dict[str, float]] = {}
        with self.db.session() as session:
            for material_id, step, cpu in session.execute(select(
                    Calculation.material_id, Calculation.step, Calculation.cpu_seconds).where(
                    Calculation.workflow == "dielectric", Calculation.preset == self.ctx.preset,
                    Calculation.status == "done", Calculation.material_id.in_(material_ids))):
                seconds.setdefault(material_id, {})[step] = cpu or 0.0
        structures = self._structures(list(seconds))
        ratios = []
        for material_id, steps in seconds.items():
            try:
                ratios.append(step_ratios(steps, structures[material_id], self.ctx.settings, self.ctx.pseudos))
            except (KeyError, TansakuError):  # no structure, or no usable pseudopotential
                continue
        return StepWeights.learn(ratios, self.weights_min_runs)

    def _gaps(self, material_ids: list[int]) -> dict[int, float]:
        """The smallest stored band gap of each material, whatever its method: whether the small-gap rule runs."""
        gaps: dict[int, float] = {}
        with self.db.session() as session:
            for material_id, value in session.execute(select(Property.material_id, Property.value).where(
                    Property.name == "band_gap", Property.material_id.in_(material_ids))):
                if value is not None:
                    gaps[material_id] = min(value, gaps.get(material_id, np.inf))
        return gaps

    def _measure(self, material_ids: list[int]) -> dict[int, float]:
        """Cell sizes (what they rest on kept for `explain`); NaN where the workflow cannot run the material (no
        structure or usable pseudopotential)."""
        structures, gaps = self._structures(material_ids), self._gaps(material_ids)
        sizes = {}
        for material_id in material_ids:
            structure, gap = structures.get(material_id), gaps.get(material_id)
            sized = Sizing(gap, reason=f"no material with id {material_id}")
            if structure is not None:
                try:
                    cell = ComputedCell.of(structure, self.ctx.settings, self.ctx.pseudos)
                    sized = Sizing(gap, cell, cost_parts(structure, self.ctx.settings, self.ctx.pseudos, gap,
                                                         self.gap_only, self.weights, cell))
                except TansakuError as exc:
                    sized = Sizing(gap, reason=str(exc))
            self._sized[material_id] = sized
            sizes[material_id] = sum(sized.parts.values()) if sized.parts else np.nan
        return sizes

    def estimate(self, material_ids: list[int]) -> np.ndarray:
        """CPU hours per material; NaN where the workflow cannot run it."""
        self._sizes.update(self._measure([i for i in material_ids if i not in self._sizes]))
        return self.model.hours(np.array([self._sizes[i] for i in material_ids]))

    def basis(self) -> str:
        """What the estimates are calibrated on, in a sentence."""
        if self.model.n_runs:
            scale = f"the CPU times of {self.model.n_runs} finished run(s) with the {self.ctx.preset} preset"
        else:
            scale = (f"the {self.ctx.preset} preset's prior (no run with it has finished in this database; "
                     f"active/cost.py {'PRIOR_GAP_HOURS_PER_SIZE' if self.gap_only else 'PRIOR_HOURS_PER_SIZE'})")
        learned = "learned from finished runs" if self.weights.relax_runs else "the DFT benchmark's"
        return f"scale from {scale}; step weights {learned}"

    def explain(self, material_ids: list[int]) -> list[dict]:
        """Per material, its estimate and what it rests on: the cell pw.x will compute (atoms, k-mesh, irreducible
        k-points) and the stored gap that decides whether the small-gap probes are charged; `reason` where the
        workflow cannot run it (no usable pseudopotential, say). A material whose workflow has finished with this
        preset costs nothing more ("finished"); one half done is charged for the steps it has left
        (`remaining_fraction`), as the workflow would skip the rest."""
        settings, structures = self.ctx.settings, self._structures(material_ids)
        done: dict[int, set[str]] = {}
        with self.db.session() as session:
            for material_id, step in session.execute(select(Calculation.material_id, Calculation.step).where(
                    Calculation.workflow == "dielectric", Calculation.status == "done",
                    Calculation.preset == self.ctx.preset, Calculation.material_id.in_(material_ids))):
                done.setdefault(material_id, set()).add(step)
        rows = []
        for material_id, hours in zip(material_ids, self.estimate(material_ids), strict=True):
            sized, steps = self._sized[material_id], done.get(material_id, set())
            row: dict = {"material_id": material_id, "stored_gap": sized.gap, "finished": "analysis" in steps,
                         "cpu_hours": None}
            if material_id in structures:
                row["formula"] = structures[material_id].composition.reduced_formula
            if sized.cell is None:
                rows.append({**row, "reason": sized.reason})
                continue
            left = 0.0 if row["finished"] else remaining_fraction(sized.parts, steps)
            cell, gap = sized.cell, sized.gap
            mesh = kmesh(cell.structure, settings.kspacing, settings.even_kmesh)
            probes = not self.gap_only and (settings.k_converge is not None or (
                gap is not None and gap < settings.small_gap_ev))
            rows.append({**row, "cpu_hours": float(hours) * left, "steps_done": sorted(steps), "atoms":
                         len(cell.structure), "kmesh": list(mesh), "k_points": cell.points(mesh), "probes": probes})
        return rows
