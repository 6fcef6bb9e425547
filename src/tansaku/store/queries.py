"""Read-side views of the database: statistics, one material in full, and tabular export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pymatgen.core import Composition
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tansaku import TansakuError
from tansaku.files import table_format, write_table
from tansaku.store.filters import ML_PREFIX, build_query, is_measured
from tansaku.store.tables import Calculation, Material, Property, Subset


def stats(session: Session) -> dict[str, Any]:
    """Counts by source, property, subset and number of elements."""

    def grouped(column, *where) -> dict:
        query = select(column, func.count()).group_by(column)
        for clause in where:
            query = query.where(clause)
        return {str(k): n for k, n in session.execute(query.order_by(column)).all()}

    return {
        "materials": session.scalar(select(func.count()).select_from(Material)),
        "with_structure": session.scalar(
            select(func.count()).select_from(Material).where(Material.structure_json.is_not(None))
        ),
        "linked_duplicates": session.scalar(
            select(func.count()).select_from(Material).where(Material.duplicate_of.is_not(None))
        ),
        "sources": grouped(Material.source),
        "properties": grouped(Property.name),
        "property_methods": grouped(Property.method),
        "subsets": grouped(Subset.name),
        "nelements": grouped(Material.nelements),
        "calculations": grouped(Calculation.status),
    }


# What the scalar `value` of a property row means where the name alone does not say (the tensor is in the row)
DEFINITIONS = {
    "eps_electronic": "mean of the tensor's eigenvalues (ε∞)",
    "eps_ionic": "mean of the tensor's eigenvalues (ionic contribution to the static ε)",
    "eps_total": "mean of the tensor's eigenvalues (ε∞ + ε_ion)",
    "born_charges": "mean over atoms of |Tr Z*| / 3 (e), the isotropic Born charge; the tensors are in the row",
    "gamma_frequencies": "lowest Γ phonon frequency (THz); all of them are in the row",
}


def find_materials(session: Session, key: str) -> list[int]:
    """Ids of the materials `key` names: an id, or a reduced formula (any order of elements, e.g. OMg)."""
    if key.strip().isdigit():
        return [int(key)]
    try:
        formula = Composition(key).reduced_formula
    except Exception:  # noqa: BLE001 - pymatgen raises many types for a bad formula
        raise TansakuError(f"{key!r} is neither a material id nor a formula") from None
    ids = list(session.scalars(select(Material.id).where(Material.reduced_formula == formula).order_by(Material.id)))
    if not ids:
        raise TansakuError(f"no material with formula {formula}")
    return ids


def material_details(session: Session, material_id: int) -> dict[str, Any]:
    material = session.get(Material, material_id)
    if material is None:
        raise TansakuError(f"no material with id {material_id}")
    subsets = session.scalars(select(Subset.name).where(Subset.material_id == material_id)).all()
    return {
        "id": material.id,
        "formula": material.formula,
        "reduced_formula": material.reduced_formula,
        "nsites": material.nsites,
        "spacegroup": material.spacegroup_symbol,
        "spacegroup_number": material.spacegroup_number,
        "source": material.source,
        "source_id": material.source_id,
        "duplicate_of": material.duplicate_of,
        "subsets": list(subsets),
        "created_at": material.created_at.isoformat(timespec="seconds"),
        "properties": [
            {"name": p.name, "value": p.value, "unit": p.unit, "method": p.method, "tensor": p.tensor,
             "calculation_id": p.calculation_id}
            for p in material.properties
        ],
        "calculations": [
            {"id": c.id, "workflow": c.workflow, "step": c.step, "status": c.status, "error": c.error}
            for c in material.calculations
        ],
        "structure": json.loads(material.structure_json) if material.structure_json else None,
    }


def _selection(subset: str | None, query: str | None, structures_only: bool = False):
    """The select of the materials an export takes: a subset's members, those `query` selects (the syntax of
    `--query`), or all."""
    selected = select(Material)
    if subset:
        selected = selected.where(Material.id.in_(select(Subset.material_id).where(Subset.name == subset)))
    if query:
        selected = selected.where(Material.id.in_(build_query(query, structures_only=False)))
    if structures_only:
        selected = selected.where(Material.structure_json.is_not(None))
    return selected


def selected_materials(session: Session, subset: str | None = None, query: str | None = None,
                       structures_only: bool = False) -> list[Material]:
    """The materials an export takes, by id (see _selection)."""
    return list(session.scalars(_selection(subset, query, structures_only).order_by(Material.id)))


def export_rows(
    session: Session,
    properties: list[str] | None = None,
    structures: str | None = None,
    subset: str | None = None,
    include_predictions: bool = False,
    query: str | None = None,
) -> list[dict[str, Any]]:
    """One row per material (each property a value column and a `<name>_method` column). Measured values
    (imported or computed) only, unless `include_predictions`: then a model's prediction fills a cell no measured
    value fills, and its method (ml:<model id>) says so. `query`: the syntax of `--query` ('source=file', ...)."""
    if structures not in (None, "cif", "json"):
        raise TansakuError(f"--structures takes 'cif' or 'json', not {structures!r}")
    materials = selected_materials(session, subset, query)
    prop_query = select(Property.material_id, Property.name, Property.value, Property.method)
    if subset or query:  # only the selected materials' values, not the whole database's
        prop_query = prop_query.where(
            Property.material_id.in_(_selection(subset, query).with_only_columns(Material.id)))
    if properties:
        prop_query = prop_query.where(Property.name.in_(properties))
    if not include_predictions:
        prop_query = prop_query.where(is_measured())
    values: dict[int, dict[str, tuple[float | None, str]]] = {}
    predicted: dict[int, dict[str, tuple[float | None, str]]] = {}
    for material_id, name, value, method in session.execute(prop_query.order_by(Property.id)):
        target = predicted if method.startswith(ML_PREFIX) else values
        target.setdefault(material_id, {})[name] = (value, method)
    for material_id, row in predicted.items():
        for name, cell in row.items():
            values.setdefault(material_id, {}).setdefault(name, cell)
    names = properties or sorted({n for row in values.values() for n in row})
    rows = []
    for m in materials:
        row: dict[str, Any] = {
            "id": m.id, "formula": m.reduced_formula, "source": m.source, "source_id": m.source_id,
            "nsites": m.nsites, "spacegroup": m.spacegroup_symbol,
        }
        for name in names:
            value, method = values.get(m.id, {}).get(name, (None, None))
            row[name], row[f"{name}_method"] = value, method
        if structures:
            structure = m.structure()
            if structure is None:
                row["structure"] = None
            else:
                row["structure"] = structure.to(fmt="cif") if structures == "cif" else structure.as_dict()
        rows.append(row)
    return rows


def export_table(session: Session, out: Path, properties: list[str] | None = None, structures: str | None = None,
                 subset: str | None = None, include_predictions: bool = False, query: str | None = None,
                 fmt: str | None = None) -> int:
    """export_rows written to `out` (format by `fmt` or the suffix), whole or not at all: a killed export leaves
    the previous file, never half of one. Returns rows written."""
    fmt = table_format(out, fmt)
    rows = export_rows(session, properties, structures, subset, include_predictions, query)
    write_table(out, rows, fmt, keep_whole=("structure",))
    return len(rows)
