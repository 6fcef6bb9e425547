"""Running a workflow for one material: what a run of many materials shares (`RunContext`), one material going
through the steps (`Run`), a workflow as a sequence of steps, and the calculation row that mirrors each step's
state in the database. The dielectric and the electronic workflow are both built from these."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pymatgen.core import Structure

from tansaku import TansakuError, __version__
from tansaku.dft.pseudos import PseudoFamily
from tansaku.dft.qe.inputs import ecutwfc_for
from tansaku.dft.settings import DielectricSettings, kmesh
from tansaku.store.database import Database
from tansaku.store.rows import get_or_create
from tansaku.store.tables import Calculation, Material, utcnow
from tansaku.workflows.executor import Executor, QECommands
from tansaku.workflows.kmesh_convergence import Probe, displacements_name, probe_scratch
from tansaku.workflows.state import StepState
from tansaku.workflows.steps import OUTPUT, StepCancelled, StepSpec, run_step

# Workflow names, as calculation rows record them. The steps several workflows share (relax, scf) keep the
# dielectric workflow's rows, so that one calculation has one row.
DIELECTRIC = "dielectric"
ELECTRONIC = "electronic"

@dataclass
class RunContext:
    """Everything a run of many materials shares."""

    db: Database
    settings: DielectricSettings
    preset: str
    pseudos: PseudoFamily
    executor: Executor
    commands: QECommands
    run_root: Path
    poll_seconds: float = 0.5
    retry_failed: bool = False  # give steps that failed (or were cancelled) in an earlier run new attempts
    workers: int = 1  # materials in flight at once (`run_many` sets it): they share this machine's memory

    def __post_init__(self) -> None:
        # pw.x runs inside each step directory: a relative outdir would point somewhere else.
        self.run_root = Path(self.run_root).resolve()

    @property
    def method(self) -> str:
        return "dft:qe" if self.preset == "standard" else f"dft:qe:{self.preset}"


@dataclass
class WorkflowResult:
    """What a workflow gives back for one material (the dielectric and the electronic workflow alike)."""

    status: str  # done, metal, failed, cancelled
    reason: str = ""
    band_gap: float | None = None
    eps_electronic: float | None = None
    eps_ionic: float | None = None
    eps_total: float | None = None
    imaginary_modes: int | None = None
    material_id: int | None = None
    formula: str | None = None
    magnetization: float | None = None  # total moment per cell (μB) of a spin-polarized run
    kspacing: float | None = None  # Å⁻¹, the k-point spacing the material ran with (measured when k_converge)
    scf_step: str = "scf"  # the SCF the results come from ("kmesh-8x8x6-scf" after a small gap's probes)
    edges: dict | None = None  # run electronic: band edges, where they are, direct and indirect gap
    # the steps the results came from, by name (a run directory may hold others: steps of an earlier setting)
    steps: dict[str, StepState] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "steps"}


def material_dir(ctx: RunContext, material: Material) -> Path:
    return ctx.run_root / f"{material.id}-{material.reduced_formula}"


@dataclass
class Run:
    """One material going through a workflow: where it runs, the structure as it now stands, its result."""

    ctx: RunContext
    material_id: int
    structure: Structure  # the input structure, then the relaxed one
    root: Path
    result: WorkflowResult
    report: Callable[[str], None]
    input_structure: Structure | None = None
    steps: dict[str, StepState] = field(default_factory=dict)
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))  # input frame → computed (standard) frame
    k_probes: list[dict] = field(default_factory=list)  # the automatic k-mesh's measurements, when it ran
    skipped: dict[str, str] = field(default_factory=dict)  # parts that could not run, and why (the rest stands)
    # after a small gap's k-mesh probes, the coarser of the two that agreed (the displacements run on its SCF)
    # and the finer, whose SCF gives the gap and whose field-only ph.x gives ε∞ and Z*
    settled: Probe | None = None
    measured: Probe | None = None

    @property
    def scf_step(self) -> str:
        """The SCF whose gap, k-points and symmetry the results report."""
        return self.measured.scf_step if self.measured else "scf"

    @property
    def displacements_on(self) -> tuple[str, float, Path] | None:
        """After the probes: the SCF step the displacements read, its k-spacing and scratch (the fixed mesh's
        with small_gap_split or when that mesh settled, else the settled probe's)."""
        if self.settled is None:
            return None
        s = self.ctx.settings
        if s.small_gap_split or self.settled.mesh == kmesh(self.structure, s.kspacing, s.even_kmesh):
            return "scf", s.kspacing, self.root / "scratch"
        return self.settled.scf_step, self.settled.spacing, probe_scratch(self, self.settled.mesh)

    @property
    def phonon_step(self) -> str:
        """The ph.x whose dynamical matrix gives the force constants (and, without probes, ε∞ and Z*)."""
        if not (on := self.displacements_on):
            return "phonon"
        return displacements_name(kmesh(self.structure, on[1], self.ctx.settings.even_kmesh))

    def step(self, name: str, spec: StepSpec, ctx: RunContext | None = None, workflow: str = DIELECTRIC
             ) -> StepState:
        """Run (or resume, or skip when done) one program step in root/name; `ctx` when its settings differ from
        the run's (a k-mesh probe), so that its database row records what it ran with. `workflow` names the
        workflow its row belongs to: the steps several workflows share (relax, scf) keep the dielectric
        workflow's rows, so one calculation has one row."""
        self.report(name)
        ctx = ctx or self.ctx
        if self.ctx.retry_failed:
            reopen(self.root / name, name, "--retry-failed", ("failed", "cancelled"))
        self.steps[name] = run_step(spec, self.root / name, ctx.executor, ctx.commands, ctx.settings.max_attempts,
                                    ctx.poll_seconds,
                                    on_change=lambda st: record_step(ctx, self.material_id, st, self.root / name, spec,
                                                                 workflow))
        return self.steps[name]

    def needs_save(self, consumer: str, scf: str, scf_spec: StepSpec, scratch: Path | None = None,
                   ctx: RunContext | None = None, prefix: str | None = None) -> None:
        """Before `consumer` reads the save directory of the pw.x step `scf` (its prefix: the step's name unless
        given): when the save is gone (a scratch wiped on a cluster, a run killed between a probe's SCF and its
        ph.x) and `consumer` has yet to finish, that step runs again, its earlier time kept in its state."""
        scratch = scratch or self.root / "scratch"
        if ((scratch / f"{prefix or scf}.save" / "data-file-schema.xml").exists()
                or StepState.load(self.root / consumer, consumer).status == "done"):
            return
        if reopen(self.root / scf, scf, "its save directory is gone"):
            self.step(scf, scf_spec, ctx)


def reopen(directory: Path, name: str, why: str, statuses: tuple[str, ...] = ("done",)) -> bool:
    """Mark a step that ended (done, or failed when asked) to run again: its attempts start over, its last log is
    kept beside it, its time and handlers stay. False when its status is not one of `statuses`."""
    state = StepState.load(directory, name)
    if state.status not in statuses:
        return False
    if (directory / OUTPUT).exists():
        (directory / OUTPUT).rename(directory / f"before-rerun{state.attempt}.out")
    state.status, state.attempt, state.outputs, state.error = "new", 0, None, f"run again: {why}"
    state.save(directory)
    return True


# A workflow step takes the run and returns False when the material stops there (a metal: the reason is in
# run.result); it raises StepFailed or TansakuError when it fails. Steps are shared between workflows by
# reference: a later workflow that starts with `relax` finds its directory and state and skips it.
Step = Callable[[Run], bool]


@dataclass(frozen=True)
class Workflow:
    name: str
    steps: tuple[Step, ...]


def run_workflow(workflow: Workflow, ctx: RunContext, material_id: int,
                 report: Callable[[str], None] | None = None) -> WorkflowResult:
    """Run (or resume) a workflow for one stored material; never raises for a material's failure."""
    with ctx.db.session() as session:
        material = session.get(Material, material_id)
        if material is None:
            raise TansakuError(f"no material with id {material_id}")
        structure = material.structure()
        formula = material.reduced_formula
        root = material_dir(ctx, material)
    result = WorkflowResult(status="failed", material_id=material_id, formula=formula)
    try:
        if structure is None:
            raise TansakuError(f"material {material_id} ({formula}): has no structure (composition-only materials "
                               "cannot be computed)")
        run = Run(ctx, material_id, structure, root, result, report or (lambda s: None), structure)
        for step in workflow.steps:
            if not step(run):
                break
    except StepCancelled as exc:
        result.status, result.reason = "cancelled", str(exc)
    except TansakuError as exc:  # StepFailed included
        result.status, result.reason = "failed", str(exc)
    if structure is not None:
        result.steps = dict(run.steps)
    return result


def calculation_row(session, ctx: RunContext, material_id: int, step: str, workflow: str = DIELECTRIC) -> Calculation:
    return get_or_create(session, Calculation, {"engine": "qe", "status": "created", "attempts": 0,
                                                "created_at": utcnow()},
                         material_id=material_id, workflow=workflow, step=step, preset=ctx.preset)


def record_step(ctx: RunContext, material_id: int, state: StepState, directory: Path, spec: StepSpec,
            workflow: str = DIELECTRIC) -> None:
    """Mirror a step's state file into its calculation row (one row per material, workflow, step, preset)."""
    with ctx.db.session() as session:
        calc = calculation_row(session, ctx, material_id, state.step, workflow)
        calc.engine = f"qe:{spec.program}.x"
        calc.status = state.status
        calc.attempts = state.attempt
        calc.error = state.error
        calc.job_id = state.job_id
        calc.work_dir = str(directory)
        calc.code_version = state.code_version
        calc.cpu_seconds = state.cpu_seconds or None
        calc.outputs = state.outputs
        structure = Structure.from_dict(state.structure) if state.structure else None
        calc.inputs = {
            "settings": ctx.settings.as_dict(), "preset": ctx.preset, "overrides": state.overrides,
            "handlers": state.handlers, "pseudo_family": str(ctx.pseudos.directory), "executor": state.executor,
            "tansaku_version": __version__,
        }
        if structure is not None:
            elements = {s.specie.symbol for s in structure}
            calc.inputs.update(
                pseudos={el: ctx.pseudos.file_for(el) for el in sorted(elements)},
                pseudo_sha256=ctx.pseudos.checksums(elements),
                ecutwfc=ecutwfc_for(structure, ctx.settings, ctx.pseudos),
                kmesh=list(kmesh(structure, ctx.settings.kspacing, ctx.settings.even_kmesh)),
            )
        if state.started and calc.started_at is None:
            calc.started_at = utcnow()
        if state.status in ("done", "failed", "cancelled"):
            calc.finished_at = utcnow()
