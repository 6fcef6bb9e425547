"""Where a campaign's answers come from: the DFT workflow for real, or stored values in a simulation.

Both give one `Outcome` per material through a callback as soon as it is known, so a campaign records each
finished calculation at once and a killed campaign loses at most the calculations in flight.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
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
    values: dict[str, float] = field(default_factory=dict)  # every asked property's value (several goals)


class Oracle(Protocol):
    def evaluate(self, material_ids: list[int], on_outcome: Callable[[int, Outcome], None]) -> None: ...


class DatasetOracle:
    """Reveals values already stored with one method (e.g. the imported database): a campaign in simulation.
    With several `properties`, a material counts as done only when it has every one."""

    def __init__(self, db: Database, property_name: str, method: str, properties: list[str] | None = None):
        self.db, self.property_name, self.method = db, property_name, method
        self.properties = properties or [property_name]

    def evaluate(self, material_ids: list[int], on_outcome: Callable[[int, Outcome], None]) -> None:
        with self.db.session() as session:
            rows = session.execute(select(Property.material_id, Property.name, Property.value).where(
                Property.name.in_(self.properties), Property.method == self.method,
                Property.material_id.in_(material_ids))).all()
        values: dict[int, dict[str, float]] = {}
        for material_id, name, value in rows:
            values.setdefault(material_id, {})[name] = float(value)
        for material_id in material_ids:
            found = values.get(material_id, {})
            missing = [p for p in self.properties if p not in found]
            if missing:
                on_outcome(material_id, Outcome("failed", detail=f"no stored {', '.join(missing)} with method "
                                                                 f"{self.method!r}", values=found))
            else:
                on_outcome(material_id, Outcome("done", found[self.property_name], values=found))


class DFTOracle:
    """Runs (or resumes) the dielectric workflow on each material, `workers` at a time; `on_step(material, step)`
    follows progress. The workflow gives band_gap and every ε at once: `properties` are those the campaign wants."""

    def __init__(self, ctx, property_name: str, workers: int = 1,
                 on_step: Callable[[str, str], None] | None = None, properties: list[str] | None = None):
        self.ctx, self.property_name, self.workers, self.on_step = ctx, property_name, workers, on_step
        self.properties = properties or [property_name]

    def evaluate(self, material_ids: list[int], on_outcome: Callable[[int, Outcome], None]) -> None:
        from tansaku.active.cost import cpu_hours_by_material
        from tansaku.workflows.many import run_many

        def finished(key: str, result) -> None:
            material_id = int(key)
            values = {p: getattr(result, p) for p in self.properties if getattr(result, p, None) is not None}
            status = {"done": "done", "metal": "metal"}.get(result.status, "failed")
            if status == "done" and len(values) < len(self.properties):
                status = "failed"
            hours = cpu_hours_by_material(self.ctx.db, self.ctx.preset, self.ctx.commands.mpi_procs, [material_id])
            on_outcome(material_id, Outcome(status, values.get(self.property_name), result.reason or "",
                                            hours.get(material_id, 0.0), values))

        run_many(self.ctx, {str(m): m for m in material_ids}, self.workers, self.on_step, on_result=finished)
