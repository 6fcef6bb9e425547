"""What a dielectric workflow will cost, before it runs: a size from the cell and k-mesh, calibrated on finished runs.

The size counts the workflow's steps in one unit, k-points × plane waves × bands² of the cell pw.x computes
(plane-wave DFT scales with k-points × plane waves × bands²; plane waves ∝ volume × ecutwfc^1.5, bands ∝
electrons). The k-points are the irreducible ones of the Γ-centred mesh (spglib, time reversal included), so a
symmetric cell is charged for the points pw.x really computes. Per step (`StepWeights`):
- the SCF is one unit and the relaxation `relax` of them;
- ph.x works on the occupied bands only, so its unit has occupied bands², and it costs `dfpt_triple` per three
  perturbations: one per atom (its displacements) and one for the electric field.
Both are the medians over finished runs (`step_ratios`) once there are WEIGHTS_MIN_RUNS of them; before that,
those of the DFT benchmark's seven oxides (dft_reproduction.md, QE CPU time): relaxation 5.2 SCFs (2.5-8.2),
ph.x 14 (10.8-14.8). Left out, NaScO2 (4 atoms, 24 bands) is estimated 11 % low; sized as atoms × bands² of all
bands it was 34 % low (76 % with a fitted b).
A material whose gap is known to be below `small_gap_ev` (any stored band gap: imported, computed or predicted) is
charged for the mesh probes too: an SCF (but on the fixed mesh, whose SCF the workflow has) and a field-only ph.x
from kspacing down, then the atomic displacements on the mesh that settled (with small_gap_split on the fixed
mesh). Which one settles is known only after the probes; the size is the mean of the two courses seen: BaO settled
on the first mesh (two probes), SnO2 on the second (three). With `k_converge` every material probes first, from
k_coarsest, and runs everything on the mesh chosen.
CPU hours = c × size^b. b = 1, the scaling the size is built on, unless the finished runs can tell otherwise: at
least eight, with sizes a factor of ten apart or more; then b comes from a least-squares fit in log space (kept in
[0.5, 2]). On the benchmark's seven oxides (sizes 0.9-22 × 10⁹) a fitted b of 0.7 put NaScO2 60 % low, b = 1
15 % (with the prior weights). c is the median ratio of CPU hours to size^b. Before any run finishes, c is a
prior measured on this project's CI-like machine (rock-salt SrS and BaS, 'test' preset).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Structure
from sqlalchemy import select

from tansaku import TansakuError
from tansaku.dft.pseudos import PseudoFamily
from tansaku.dft.qe.inputs import ecutwfc_for, number_of_electrons
from tansaku.dft.settings import DielectricSettings, irreducible_points, kmesh, standard_cell
from tansaku.store.database import Database
from tansaku.store.tables import Calculation, Material, Property
from tansaku.workflows.kmesh_convergence import probe_spacings

PRIOR_HOURS_PER_SIZE = 2.9e-11  # SrS and BaS, test preset, 2 MPI processes, CI machine
RELAX_IN_SCFS = 5.2
DFPT_TRIPLE_IN_SCFS = 14.0
EXPONENT_MIN_RUNS, EXPONENT_MIN_SPAN = 8, 10.0
WEIGHTS_MIN_RUNS = 3


@dataclass(frozen=True)
class StepWeights:
    """The relaxation, and ph.x per three perturbations on the occupied bands, in SCFs of the same cell and mesh:
    the benchmark's medians until finished runs say otherwise (another machine, preset or chemistry)."""

    relax: float = RELAX_IN_SCFS
    dfpt_triple: float = DFPT_TRIPLE_IN_SCFS
    relax_runs: int = 0  # how many finished runs each weight was learned from (0: the prior)
    dfpt_runs: int = 0

    @classmethod
    def learn(cls, relax_ratios: list[float], dfpt_ratios: list[float],
              min_runs: int = WEIGHTS_MIN_RUNS) -> StepWeights:
        """The median of each ratio over finished runs, where at least `min_runs` runs have it."""
        relax, dfpt = ([r for r in ratios if np.isfinite(r) and r > 0] for ratios in (relax_ratios, dfpt_ratios))
        prior = cls()
        return cls(float(np.median(relax)) if len(relax) >= min_runs else prior.relax,
                   float(np.median(dfpt)) if len(dfpt) >= min_runs else prior.dfpt_triple,
                   len(relax) if len(relax) >= min_runs else 0, len(dfpt) if len(dfpt) >= min_runs else 0)


def computed_cell(structure: Structure, settings: DielectricSettings, pseudos: PseudoFamily
                  ) -> tuple[Structure, float, float]:
    """The cell the workflow computes (its standard primitive cell by default), its occupied bands and the bands
    pw.x computes."""
    if settings.standardize:
        structure = standard_cell(structure)
    occupied = number_of_electrons(structure, pseudos) / 2
    return structure, occupied, occupied + settings.extra_bands


def step_ratios(seconds: dict[str, float], structure: Structure, settings: DielectricSettings,
                pseudos: PseudoFamily) -> tuple[float, float]:
    """A finished run's relaxation, and its ph.x per three perturbations scaled from occupied to all bands², in
    its own SCFs (`seconds`: CPU seconds by step name); NaN where the run lacks the step, and for runs on a
    small gap's refined meshes (their steps are not all on the cell size the SCF's is)."""
    scf = seconds.get("scf")
    if not scf or any(step.startswith("kmesh-") for step in seconds):
        return np.nan, np.nan
    relax = sum(cpu for step, cpu in seconds.items() if step.startswith("relax")) or np.nan
    if not seconds.get("phonon"):
        return relax / scf, np.nan
    cell, occupied, bands = computed_cell(structure, settings, pseudos)
    return relax / scf, seconds["phonon"] / scf / (len(cell) + 1) * (bands / occupied) ** 2


def cost_size(structure: Structure, settings: DielectricSettings, pseudos: PseudoFamily,
              gap: float | None = None, gap_only: bool = False, weights: StepWeights | None = None) -> float:
    """The size of the workflow's steps on the cell it will actually compute (its standard primitive cell by
    default); with `gap` (eV) below small_gap_ev, or k_converge set, the k-mesh probes included. `gap_only`:
    the gap workflow's steps, relaxation and SCF (what a campaign on the PBEsol gap alone runs)."""
    w = weights or StepWeights()
    structure, occupied, bands = computed_cell(structure, settings, pseudos)
    plane_waves = structure.volume * ecutwfc_for(structure, settings, pseudos) ** 1.5

    def points(spacing: float) -> float:
        return float(irreducible_k_points(structure, kmesh(structure, spacing, settings.even_kmesh)))

    def scf(spacing: float) -> float:
        return points(spacing) * plane_waves * bands**2

    def dfpt(spacing: float, triples: int) -> float:
        return points(spacing) * plane_waves * occupied**2 * w.dfpt_triple * triples

    triples = len(structure) + 1

    def mean_course(spacings: list[float], then: Callable[[int, float], float], first_scf: bool = True) -> float:
        """Probes (an SCF and a field-only ph.x each; the first without its SCF unless `first_scf`) until two
        meshes agree, then `then` on the coarser: the mean of settling on the first mesh (two probes) and on the
        second (three)."""
        probes = [(scf(s) if i or first_scf else 0.0) + dfpt(s, 1) for i, s in enumerate(spacings[:3])]
        courses = [sum(probes[: i + 2]) + then(i, spacings[i]) for i in range(min(2, len(probes) - 1))]
        return float(np.mean(courses)) if courses else probes[0] + then(0, spacings[0])

    if settings.k_converge is not None and not gap_only:  # probes first, from k_coarsest; then everything there
        return mean_course(probe_spacings(structure, settings.k_coarsest, settings.even_kmesh),
                           lambda i, s: scf(s) * (w.relax + 1) + dfpt(s, triples))
    fixed = scf(settings.kspacing) * (w.relax + 1)
    if gap_only:
        return fixed
    if gap is None or gap >= settings.small_gap_ev:
        return fixed + dfpt(settings.kspacing, triples)
    # probes from kspacing (the first is the fixed mesh: its SCF is the workflow's), then the displacements on the
    # mesh that settled (the probe's field-only ph.x gave ε∞ and Z*), or with small_gap_split on the fixed mesh
    displacements = triples - 1
    return fixed + mean_course(probe_spacings(structure, settings.kspacing, settings.even_kmesh),
                               lambda i, s: dfpt(settings.kspacing if settings.small_gap_split else s, displacements),
                               first_scf=False)


def irreducible_k_points(structure: Structure, mesh: tuple[int, int, int]) -> int:
    """Irreducible points of a Γ-centred mesh (the full mesh when spglib finds no symmetry)."""
    return len(irreducible_points(structure, mesh))


@dataclass
class CostModel:
    scale: float = PRIOR_HOURS_PER_SIZE
    exponent: float = 1.0
    n_runs: int = 0

    def hours(self, size: np.ndarray | float) -> np.ndarray:
        return self.scale * np.asarray(size, dtype=float) ** self.exponent

    @classmethod
    def calibrate(cls, sizes: list[float], hours: list[float]) -> CostModel:
        pairs = [(s, h) for s, h in zip(sizes, hours, strict=True) if s > 0 and h > 0]
        if not pairs:
            return cls()
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
    from tansaku.workflows.electronic import is_hybrid_step

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
        self.model = CostModel.calibrate([sizes[i] for i in recent], [hours[i] for i in recent])
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
        return StepWeights.learn([r for r, _ in ratios], [d for _, d in ratios], self.weights_min_runs)

    def _measure(self, material_ids: list[int]) -> dict[int, float]:
        """Cell sizes; NaN where the workflow cannot run the material (no structure or usable pseudopotential).
        A stored band gap (the smallest, whatever its method) tells whether the small-gap rule will run."""
        structures = self._structures(material_ids)
        with self.db.session() as session:
            gaps: dict[int, float] = {}
            for material_id, value in session.execute(select(Property.material_id, Property.value).where(
                    Property.name == "band_gap", Property.material_id.in_(material_ids))):
                if value is not None:
                    gaps[material_id] = min(value, gaps.get(material_id, np.inf))
        sizes = {}
        for material_id in material_ids:
            structure = structures.get(material_id)
            try:
                sizes[material_id] = np.nan if structure is None else cost_size(
                    structure, self.ctx.settings, self.ctx.pseudos, gaps.get(material_id), self.gap_only, self.weights)
            except TansakuError:
                sizes[material_id] = np.nan
        return sizes

    def estimate(self, material_ids: list[int]) -> np.ndarray:
        """CPU hours per material; NaN where the workflow cannot run it."""
        self._sizes.update(self._measure([i for i in material_ids if i not in self._sizes]))
        return self.model.hours(np.array([self._sizes[i] for i in material_ids]))
