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
    def evaluate(self, material_ids: list[int], on_outcome: Callable[[int, Outcome], None],
                 level: str = "") -> None: ...


class DatasetOracle:
    """Reveals values already stored with one method (e.g. the imported database): a campaign in simulation.
    With several `properties`, a material counts as done only when it has every one. With two levels of theory,
    `levels` names the properties each level reveals and `prices` what each costs (CPU hours, as declared)."""

    def __init__(self, db: Database, property_name: str, method: str, properties: list[str] | None = None,
                 levels: dict[str, list[str]] | None = None, prices: dict[str, float] | None = None):
        self.db, self.property_name, self.method = db, property_name, method
        self.properties = properties or [property_name]
        self.levels = levels or {"": self.properties}
        self.prices = prices or {}

    def evaluate(self, material_ids: list[int], on_outcome: Callable[[int, Outcome], None], level: str = "") -> None:
        wanted = self.levels[level]
        with self.db.session() as session:
            rows = session.execute(select(Property.material_id, Property.name, Property.value).where(
                Property.name.in_(wanted), Property.method == self.method,
                Property.material_id.in_(material_ids))).all()
        values: dict[int, dict[str, float]] = {}
        for material_id, name, value in rows:
            values.setdefault(material_id, {})[name] = float(value)
        price = self.prices.get(level, 0.0)
        for material_id in material_ids:
            found = values.get(material_id, {})
            missing = [p for p in wanted if p not in found]
            if missing:
                on_outcome(material_id, Outcome("failed", detail=f"no stored {', '.join(missing)} with method "
                                                                 f"{self.method!r}", values=found))
            else:
                on_outcome(material_id, Outcome("done", found.get(self.property_name), cpu_hours=price,
                                                values=found))


class DFTOracle:
    """Runs (or resumes) the workflows that compute the wanted properties, `workers` materials at a time:
    `run dielectric` for ε (and the gap), its relaxation and SCF alone for the gap alone, `run electronic` for
    masses and band edges, its hybrid steps for hybrid gaps. With two levels (`levels`: the properties of each),
    the cheap level runs the PBEsol steps (the electronic workflow without hybrids when it needs masses or band
    edges) and the expensive one adds the hybrids, reusing every finished step. `on_step(material, step)`
    follows progress; each outcome's CPU hours are those of its level's steps."""

    def __init__(self, ctx, property_name: str, workers: int = 1,
                 on_step: Callable[[str, str], None] | None = None, properties: list[str] | None = None,
                 levels: dict[str, list[str]] | None = None):
        self.ctx, self.property_name, self.workers, self.on_step = ctx, property_name, workers, on_step
        self.properties = properties or [property_name]
        self.levels = levels or {"": self.properties}

    def plan(self, wanted: list[str], level: str) -> list[tuple[Callable, object]]:
        """The workflows (with their contexts) that give `wanted`: dielectric first, whose ε∞ the DDH reuses."""
        from dataclasses import replace

        from tansaku.active.campaign_config import DIELECTRIC_PROPERTIES, HYBRID_PROPERTIES, MASS_PROPERTIES
        from tansaku.workflows.dielectric import run_dielectric, run_gap
        from tansaku.workflows.electronic import run_electronic

        steps = []
        if any(p in DIELECTRIC_PROPERTIES and p != "band_gap" for p in wanted):
            steps.append((run_dielectric, self.ctx))
        elif set(wanted) == {"band_gap"}:  # relaxation and SCF: no ph.x for a gap
            steps.append((run_gap, self.ctx))
        electronic = [p for p in wanted if p not in DIELECTRIC_PROPERTIES]
        if electronic:
            s = self.ctx.settings
            functionals = [HYBRID_PROPERTIES[p] for p in wanted if p in HYBRID_PROPERTIES]
            if not set(wanted) & set(MASS_PROPERTIES):  # a gap needs neither the mass grid nor the dense mesh
                s = replace(s, masses=False)
            if level == "cheap" or not functionals:
                s = replace(s, hybrid="none")
            else:
                s = replace(s, hybrid=s.hybrid if s.hybrid != "none" else "nsc",
                            hybrid_functionals=",".join(functionals))
            steps.append((run_electronic, replace(self.ctx, settings=s)))
        return steps

    def method_of(self, prop: str, settings) -> str:
        """The method a property is stored with by this oracle's runs (hybrids: ...:scf, else ...:nsc)."""
        from tansaku.active.campaign_config import HYBRID_PROPERTIES

        if prop not in HYBRID_PROPERTIES:
            return self.ctx.method
        return f"{self.ctx.method}:{'scf' if settings.hybrid in ('scf', 'both') else 'nsc'}"

    def evaluate(self, material_ids: list[int], on_outcome: Callable[[int, Outcome], None], level: str = "") -> None:
        from tansaku.active.cost import cpu_hours_by_level
        from tansaku.workflows.many import run_many

        wanted = self.levels[level]
        plan = self.plan(wanted, level)
        expensive = expensive_steps(self.levels["cheap"]) if level else None

        def run(_ctx, material_id: int, report):
            for workflow, ctx in plan:
                result = workflow(ctx, material_id, report)
                if result.status != "done":
                    break
            return result

        def finished(key: str, result) -> None:
            material_id = int(key)
            methods = {p: self.method_of(p, plan[-1][1].settings) for p in wanted}
            with self.ctx.db.session() as session:
                stored = {name: float(value) for name, method, value in session.execute(
                    select(Property.name, Property.method, Property.value).where(
                        Property.material_id == material_id, Property.name.in_(wanted),
                        Property.value.is_not(None))) if methods[name] == method}
            values = {p: stored[p] if p in stored else getattr(result, p, None) for p in wanted}
            values = {p: v for p, v in values.items() if v is not None}
            status = {"done": "done", "metal": "metal"}.get(result.status, "failed")
            if status == "done" and len(values) < len(wanted):
                status = "failed"
                result.reason = result.reason or f"no {', '.join(p for p in wanted if p not in values)} computed"
            hours = cpu_hours_by_level(self.ctx.db, self.ctx.preset, self.ctx.commands.mpi_procs, [material_id],
                                       expensive=expensive).get(material_id, {})
            spent = sum(hours.values()) if not level else hours.get(level, 0.0)
            on_outcome(material_id, Outcome(status, values.get(self.property_name), result.reason or "", spent,
                                            values))

        run_many(self.ctx, {str(m): m for m in material_ids}, self.workers, self.on_step, on_result=finished,
                 runner=run)


def expensive_steps(cheap: list[str]) -> Callable[[str], bool]:
    """Which of a material's steps a two-level campaign charges to its expensive level, given what the cheap level
    answers (`DFTOracle.plan` runs it): a cheap level on the gap alone runs relaxation and SCF, and everything
    else is the expensive level's. Otherwise the hybrid steps are (`is_hybrid_step`), and so are the small-gap
    k-mesh probes, unless the cheap level runs the dielectric workflow, whose small-gap rule makes them there
    (the DDH then reuses them)."""
    from tansaku.active.campaign_config import DIELECTRIC_PROPERTIES
    from tansaku.workflows.dielectric import GAP_STEPS
    from tansaku.workflows.hybrid import is_hybrid_step

    if set(cheap) == {"band_gap"}:
        return lambda step: step not in GAP_STEPS
    cheap_runs_dielectric = any(p in DIELECTRIC_PROPERTIES and p != "band_gap" for p in cheap)
    return lambda step: is_hybrid_step(step) or (step.startswith("kmesh-") and not cheap_runs_dielectric)
