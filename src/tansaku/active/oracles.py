"""Where a campaign's answers come from: the DFT workflow for real, or stored values in a simulation.

Both give one `Outcome` per material through a callback as soon as it is known, so a campaign records each
finished calculation at once and a killed campaign loses at most the calculations in flight.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from sqlalchemy import select

from tansaku import TansakuError
from tansaku.store.database import Database
from tansaku.store.models import Property


@dataclass
class Outcome:
    status: str  # done, metal, failed
    value: float | None = None
    detail: str = ""
    cpu_hours: float = 0.0


class Oracle(Protocol):
    def evaluate(self, material_ids: list[int], on_outcome: Callable[[int, Outcome], None]) -> None: ...


class DatasetOracle:
    """Reveals values already stored with one method (e.g. the imported database): a campaign in simulation."""

    def __init__(self, db: Database, property_name: str, method: str):
        self.db, self.property_name, self.method = db, property_name, method

    def evaluate(self, material_ids: list[int], on_outcome: Callable[[int, Outcome], None]) -> None:
        with self.db.session() as session:
            values = dict(session.execute(select(Property.material_id, Property.value).where(
                Property.name == self.property_name, Property.method == self.method,
                Property.material_id.in_(material_ids))).all())
        for material_id in material_ids:
            value = values.get(material_id)
            if value is None:
                on_outcome(material_id, Outcome("failed", detail=f"no stored {self.property_name} with method "
                                                                 f"{self.method!r}"))
            else:
                on_outcome(material_id, Outcome("done", float(value)))


class DFTOracle:
    """Runs (or resumes) the dielectric workflow on each material, `workers` at a time; `on_step(material, step)`
    follows progress."""

    def __init__(self, ctx, property_name: str, workers: int = 1,
                 on_step: Callable[[str, str], None] | None = None):
        self.ctx, self.property_name, self.workers, self.on_step = ctx, property_name, workers, on_step

    def evaluate(self, material_ids: list[int], on_outcome: Callable[[int, Outcome], None]) -> None:
        from tansaku.active.cost import cpu_hours_by_material
        from tansaku.workflows.batch import run_many

        def finished(key: str, result) -> None:
            material_id = int(key)
            value = getattr(result, self.property_name, None)
            status = {"done": "done", "metal": "metal"}.get(result.status, "failed")
            if status == "done" and value is None:
                status = "failed"
            hours = cpu_hours_by_material(self.ctx.db, self.ctx.preset, self.ctx.commands.mpi_procs, [material_id])
            on_outcome(material_id, Outcome(status, value, result.reason or "", hours.get(material_id, 0.0)))

        run_many(self.ctx, {str(m): m for m in material_ids}, self.workers, self.on_step, on_result=finished)


def dft_context(db: Database, dft: dict):
    """The RunContext a campaign's [dft] table describes (same meaning as `tansaku run dielectric` options)."""
    from tansaku.dft.pseudos import load_family
    from tansaku.dft.settings import preset
    from tansaku.workflows.dielectric import RunContext
    from tansaku.workflows.executor import LocalExecutor, QECommands
    from tansaku.workflows.slurm import SlurmExecutor, SlurmProfile

    name = dft.get("preset", "standard")
    settings = preset(name, dft.get("set"))
    pseudos = load_family(dft.get("pseudo_dir") or os.environ.get("TANSAKU_PSEUDO_DIR"))
    launcher = dft.get("launcher", "mpirun --allow-run-as-root --oversubscribe -np {n}")
    executor_name = dft.get("executor", "local")
    if executor_name == "slurm":
        profile = SlurmProfile.load(Path(dft["slurm_profile"]) if dft.get("slurm_profile") else None)
        executor, launcher = SlurmExecutor(profile), profile.launcher
    elif executor_name == "local":
        executor = LocalExecutor()
    else:
        raise TansakuError(f"[dft] executor {executor_name!r}: use local or slurm")
    commands = QECommands(dft.get("pw_command", "pw.x"), dft.get("ph_command", "ph.x"), launcher,
                          int(dft.get("mpi_procs", 1)))
    return RunContext(db, settings, name, pseudos, executor, commands, Path(dft.get("run_dir", "runs")).resolve())
