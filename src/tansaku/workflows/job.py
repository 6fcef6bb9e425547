"""A job description: which workflow, with which settings, run by which executor and launcher.

`tansaku run` builds one from its options and a campaign from its [dft] table, by the same rules, and both get
their run context from `Job.context`: there is one place that turns a description into executors and commands.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from tansaku import TansakuError
from tansaku.numbers import is_finite_number
from tansaku.store.database import Database

DEFAULT_LAUNCHER = "mpirun --allow-run-as-root --oversubscribe -np {n}"
WORKFLOWS = ("dielectric",)
EXECUTORS = ("local", "slurm")
TABLE_KEYS = {"set": "overrides"}  # a campaign file's [dft] key → the field it sets


@dataclass(frozen=True)
class Job:
    """What `tansaku run WORKFLOW` options say, as data. `overrides` are `--set key=value` (`set` in a file)."""

    workflow: str = "dielectric"
    preset: str = "standard"
    overrides: dict = field(default_factory=dict)
    pseudo_dir: str | None = None  # default: $TANSAKU_PSEUDO_DIR
    executor: str = "local"
    slurm_profile: str | None = None
    launcher: str = DEFAULT_LAUNCHER
    pw_command: str = "pw.x"
    ph_command: str = "ph.x"
    mpi_procs: int = 1
    workers: int = 1
    run_dir: str = "runs"

    def __post_init__(self) -> None:
        if self.workflow not in WORKFLOWS:
            raise TansakuError(f"unknown workflow {self.workflow!r} ({', '.join(WORKFLOWS)})")
        if self.executor not in EXECUTORS:
            raise TansakuError(f"unknown executor {self.executor!r} (local or slurm)")
        if self.mpi_procs < 1 or self.workers < 1:
            raise TansakuError("mpi_procs and workers must be at least 1")

    @classmethod
    def from_table(cls, table: dict, where: str = "[dft]") -> Job:
        """From a campaign file's [dft] table (or a stored campaign's copy of it)."""
        names = {f.name for f in fields(cls)} - {"workflow", "overrides"}
        known = names | set(TABLE_KEYS)
        unknown = sorted(set(table) - known)
        if unknown:
            raise TansakuError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        values = {TABLE_KEYS.get(key, key): value for key, value in table.items()}
        for key in ("mpi_procs", "workers"):
            if key in values:
                value = values[key]
                if not is_finite_number(value) or value != int(value):  # TOML has inf and nan
                    raise TansakuError(f"{where}: {key} = {value!r} is not a whole number")
                values[key] = int(value)
        if not isinstance(values.get("overrides") or {}, dict):
            raise TansakuError(f"{where}: set must be a table, e.g. set = {{ ecutwfc = 60 }}")
        for key in ("pseudo_dir", "slurm_profile", "run_dir"):
            if values.get(key) is not None:
                values[key] = str(values[key])
        values["overrides"] = dict(values.get("overrides") or {})
        try:
            return cls(**values)
        except TansakuError as exc:
            raise TansakuError(f"{where}: {exc}") from None

    def as_table(self) -> dict:
        """The [dft] table that gives this job back (`from_table`)."""
        inverse = {v: k for k, v in TABLE_KEYS.items()}
        return {inverse.get(f.name, f.name): getattr(self, f.name) for f in fields(self) if f.name != "workflow"}

    def context(self, db: Database):
        """The run context of this job: settings, pseudopotentials, executor and QE commands."""
        from tansaku.dft.pseudos import load_family
        from tansaku.dft.settings import preset
        from tansaku.workflows.executor import LocalExecutor, QECommands
        from tansaku.workflows.run import RunContext
        from tansaku.workflows.slurm import SlurmExecutor, SlurmProfile

        settings = preset(self.preset, self.overrides)
        pseudos = load_family(self.pseudo_dir)  # None: $TANSAKU_PSEUDO_DIR
        launcher = self.launcher
        if self.executor == "slurm":
            profile = SlurmProfile.load(Path(self.slurm_profile) if self.slurm_profile else None)
            executor, launcher = SlurmExecutor(profile), profile.launcher
        else:
            executor = LocalExecutor()
        commands = QECommands(self.pw_command, self.ph_command, launcher, self.mpi_procs)
        return RunContext(db, settings, self.preset, pseudos, executor, commands, Path(self.run_dir).resolve())
