"""Removing what should not be in the database: materials, one method's property values, a subset.

Deleting is planned first (what would go, and what of it other records depend on) and carried out in one
transaction. Measured data that calculations or campaigns refer to is kept unless the caller forces it: a
campaign's picks and a calculation's provenance would otherwise point at nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from tansaku import TansakuError
from tansaku.store.filters import ML_PREFIX, build_query
from tansaku.store.tables import Calculation, CampaignPick, FeatureCache, Material, Property, Subset


@dataclass
class DeletionPlan:
    """What a deletion would remove, and which of it other records refer to."""

    materials: list[int] = field(default_factory=list)
    properties: list[int] = field(default_factory=list)
    subset: str | None = None
    subset_members: int = 0
    referenced: list[str] = field(default_factory=list)  # one line per record others depend on

    def counts(self) -> dict:
        return {"materials": len(self.materials), "properties": len(self.properties),
                "subset": self.subset, "subset_members": self.subset_members, "referenced": len(self.referenced)}


def plan_deletion(session: Session, ids: list[int] | None = None, query: str | None = None,
                  subset: str | None = None, method: str | None = None, property_name: str | None = None
                  ) -> DeletionPlan:
    """Materials by id or query (with everything stored about them), or property values by method (and name;
    only of the selected materials when some are selected), or a subset's membership (its materials stay)."""
    if not (ids or query or subset or method):
        raise TansakuError("nothing selected: give material ids, --query, --subset or --method")
    if property_name and not method:
        raise TansakuError("--property narrows --method (e.g. --method ml:<model id> --property eps_electronic)")
    plan = DeletionPlan()
    selected: list[int] = []
    if ids:
        found = set(session.scalars(select(Material.id).where(Material.id.in_(ids))))
        if missing := sorted(set(ids) - found):
            raise TansakuError(f"no material with id {', '.join(map(str, missing))}")
        selected += sorted(found)
    if query:
        matched = list(session.scalars(build_query(query, structures_only=False)))
        if not matched:
            raise TansakuError(f"--query {query!r} selects no material")
        selected += matched
    selected = sorted(set(selected))
    if subset:
        plan.subset = subset
        plan.subset_members = session.scalar(select(func.count()).select_from(Subset).where(Subset.name == subset))
        if not plan.subset_members:
            raise TansakuError(f"no subset named {subset!r}")
    if method:
        props = select(Property.id, Property.material_id, Property.name, Property.calculation_id).where(
            Property.method == method)
        if property_name:
            props = props.where(Property.name == property_name)
        if selected:
            props = props.where(Property.material_id.in_(selected))
        rows = session.execute(props.order_by(Property.id)).all()
        if not rows:
            raise TansakuError(f"no property values with method {method!r}"
                               + (f" and name {property_name!r}" if property_name else ""))
        plan.properties = [row.id for row in rows]
        if not method.startswith(ML_PREFIX):
            picked = set(session.scalars(select(CampaignPick.material_id).where(
                CampaignPick.material_id.in_({row.material_id for row in rows}))))
            plan.referenced += [f"{row.name} of material {row.material_id}: "
                                + ("made by calculation " + str(row.calculation_id) if row.calculation_id
                                   else "its material was picked by a campaign")
                                for row in rows if row.calculation_id or row.material_id in picked]
    elif selected:
        plan.materials = selected
        calculations = dict(session.execute(select(Calculation.material_id, func.count()).where(
            Calculation.material_id.in_(selected)).group_by(Calculation.material_id)).all())
        picks = dict(session.execute(select(CampaignPick.material_id, func.count()).where(
            CampaignPick.material_id.in_(selected)).group_by(CampaignPick.material_id)).all())
        for material_id in selected:
            why = [f"{calculations[material_id]} calculation(s)"] if material_id in calculations else []
            why += [f"{picks[material_id]} campaign pick(s)"] if material_id in picks else []
            if why:
                plan.referenced.append(f"material {material_id}: {', '.join(why)}")
    return plan


def carry_out(session: Session, plan: DeletionPlan, force: bool = False) -> dict:
    """Delete what the plan holds (in the caller's transaction); refuses referenced records unless forced."""
    if plan.referenced and not force:
        shown = "; ".join(plan.referenced[:5]) + (f"; and {len(plan.referenced) - 5} more"
                                                    if len(plan.referenced) > 5 else "")
        raise TansakuError(f"{len(plan.referenced)} of the records to delete are measured data that calculations or "
                           f"campaigns refer to ({shown}); nothing was deleted. Ask again with --force to delete "
                           "them and what refers to them")
    if plan.properties:
        session.execute(delete(Property).where(Property.id.in_(plan.properties)))
    if plan.materials:
        session.execute(update(Material).where(Material.duplicate_of.in_(plan.materials)).values(duplicate_of=None))
        for start in range(0, len(plan.materials), 10_000):
            part = plan.materials[start : start + 10_000]
            # explicitly, child tables first: SQLite cascades only with its foreign-key pragma on
            for table in (CampaignPick, Subset, Property, Calculation, FeatureCache):
                session.execute(delete(table).where(table.material_id.in_(part)))
            session.execute(delete(Material).where(Material.id.in_(part)))
    if plan.subset:
        session.execute(delete(Subset).where(Subset.name == plan.subset))
    return plan.counts()
