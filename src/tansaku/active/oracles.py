"""Where a campaign's answers come from: the DFT workflow for real, or stored values in a simulation.

Both give one `Outcome` per material through a callback as soon as it is known, so a campaign records each
finished calculation at once and a killed campaign loses at most the calculations in flight.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import select

from tansaku.store.database import Database
from tansaku.store.tables import Property


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
        from tansaku.workflows.many import run_many

        def finished(key: str, result) -> None:
            material_id = int(key)
            value = getattr(result, self.property_name, None)
            status = {"done": "done", "metal": "metal"}.get(result.status, "failed")
            if status == "done" and value is None:
                status = "failed"
            hours = cpu_hours_by_material(self.ctx.db, self.ctx.preset, self.ctx.commands.mpi_procs, [material_id])
            on_outcome(material_id, Outcome(status, value, result.reason or "", hours.get(material_id, 0.0)))

        run_many(self.ctx, {str(m): m for m in material_ids}, self.workers, self.on_step, on_result=finished)
