"""Adding materials and properties: uniqueness by source id, linking structures that already exist."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pymatgen.core import Composition, Structure
from sqlalchemy import select
from sqlalchemy.orm import Session

from tansaku.chemistry.formulas import alphabetical_formula, anonymous_formula
from tansaku.store.rows import get_or_create
from tansaku.store.tables import Material, Property, Subset


@dataclass
class ImportReport:
    """What an import did: counts of new and skipped items, and every refused item with its reason."""

    added: int = 0
    existing: int = 0
    linked: int = 0
    properties: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # stored, but worth knowing (e.g. conflicting duplicates)

    def error(self, item: str, reason: str) -> None:
        self.errors.append((item, reason))

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def absorb(self, part: ImportReport) -> None:
        """Add what one item did (counted in its own report, so a refused item's counts are simply dropped)."""
        self.added += part.added
        self.existing += part.existing
        self.linked += part.linked
        self.properties += part.properties
        self.errors += part.errors
        self.warnings += part.warnings

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "existing": self.existing,
            "linked_duplicates": self.linked,
            "properties": self.properties,
            "errors": [{"item": i, "reason": r} for i, r in self.errors],
            "warnings": list(self.warnings),
        }


def composition_fields(composition: Composition) -> dict[str, Any]:
    elements = sorted(el.symbol for el in composition.elements)
    return {
        "formula": composition.formula.replace(" ", ""),
        "reduced_formula": composition.reduced_formula,
        "elements": ",".join(elements),
        "nelements": len(elements),
        "formula_alphabetical": alphabetical_formula(composition),
        "formula_anonymous": anonymous_formula(composition),
    }


def structure_fields(structure: Structure, spacegroup: tuple[int, str] | None = None) -> dict[str, Any]:
    """Columns of a Material for a structure; the space group is computed when not given."""
    if spacegroup is None:
        spacegroup = _spacegroup(structure)
    fields = composition_fields(structure.composition)
    fields.update(
        structure_json=json.dumps(structure.as_dict()),
        nsites=len(structure),
        spacegroup_number=spacegroup[0] if spacegroup else None,
        spacegroup_symbol=spacegroup[1] if spacegroup else None,
    )
    return fields


def _spacegroup(structure: Structure) -> tuple[int, str] | None:
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        analyzer = SpacegroupAnalyzer(structure, symprec=0.1)
        return analyzer.get_space_group_number(), analyzer.get_space_group_symbol()
    except Exception:  # noqa: BLE001 - spglib fails on some odd cells; the space group is optional
        return None


def find_same_structure(session: Session, structure: Structure) -> int | None:
    """Id of a stored material (the canonical one) whose structure matches, or None."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    query = select(Material.id, Material.structure_json, Material.duplicate_of).where(
        Material.reduced_formula == structure.composition.reduced_formula,
        Material.structure_json.is_not(None),
    )
    rows = session.execute(query).all()
    if not rows:
        return None
    matcher = StructureMatcher()
    for material_id, structure_json, duplicate_of in rows:
        other = Structure.from_dict(json.loads(structure_json))
        if matcher.fit(structure, other):
            return duplicate_of or material_id
    return None


def get_material(session: Session, source: str, source_id: str) -> Material | None:
    return session.scalar(select(Material).where(Material.source == source, Material.source_id == source_id))


def add_structure_material(
    session: Session,
    structure: Structure,
    source: str,
    source_id: str,
    report: ImportReport,
    spacegroup: tuple[int, str] | None = None,
    extra: dict | None = None,
) -> tuple[Material, bool]:
    """The material for (source, source_id), added if new; True when it was added by this call."""
    existing = get_material(session, source, source_id)
    if existing is not None:
        report.existing += 1
        return existing, False
    duplicate_of = find_same_structure(session, structure)
    material = Material(
        source=source,
        source_id=source_id,
        duplicate_of=duplicate_of,
        extra=extra,
        **structure_fields(structure, spacegroup),
    )
    session.add(material)
    session.flush()
    report.added += 1
    if duplicate_of is not None:
        report.linked += 1
    return material, True


def tensor_average(tensor: Any) -> float:
    """The average of a symmetric 3x3 tensor's eigenvalues (= trace / 3), as the reference database uses."""
    matrix = np.asarray(tensor, dtype=float)
    return float(np.mean(np.linalg.eigvalsh(0.5 * (matrix + matrix.T))))


def set_property(
    session: Session,
    material: Material,
    name: str,
    value: float | None,
    method: str,
    unit: str | None = None,
    tensor: Any = None,
    extra: dict | None = None,
    calculation_id: int | None = None,
    material_is_new: bool = False,
) -> Property:
    """Insert or update the property (material, name, method): one value per method.

    `material_is_new`: the material was added in this transaction, so no other process can hold its properties
    and the row is inserted without looking first (three queries fewer: an import's main cost)."""
    if material_is_new:
        prop = Property(material_id=material.id, name=name, method=method)
        session.add(prop)
    else:
        prop = get_or_create(session, Property, material_id=material.id, name=name, method=method)
    prop.value = None if value is None else float(value)
    prop.tensor = tensor
    prop.unit = unit
    prop.extra = extra
    prop.calculation_id = calculation_id
    return prop


def add_to_subset(session: Session, name: str, material_ids: list[int]) -> int:
    """Add members to a named subset; returns how many were new."""
    present = set(session.scalars(select(Subset.material_id).where(Subset.name == name)))
    new = [mid for mid in material_ids if mid not in present]
    session.add_all(Subset(name=name, material_id=mid) for mid in new)
    return len(new)
