"""The selections every command shares: the query language, "measured values only", "stored without a value".

Written once here so that training, suggesting, predicting, campaigns and exports agree on what a measured
value is (anything not predicted by a model: imported or computed) and on what `--query` means.
"""

from __future__ import annotations

import re

from sqlalchemy import ColumnElement, Select, select

from tansaku import TansakuError
from tansaku.store.tables import Material, Property, Subset

ML_PREFIX = "ml:"


def is_measured() -> ColumnElement[bool]:
    """Property rows that were imported or computed, never a model's prediction (method 'ml:<model id>')."""
    return ~Property.method.startswith(ML_PREFIX)


def measured_values(property_name: str) -> Select:
    """(material id, value) of the property's measured values, in insertion order."""
    return (select(Property.material_id, Property.value)
            .where(Property.name == property_name, Property.value.is_not(None), is_measured())
            .order_by(Property.material_id, Property.id))


def missing_property(property_name: str, structures_only: bool = False) -> Select:
    """Ids of stored materials with no measured value of the property: what predictions and suggestions fill."""
    have = select(Property.material_id).where(Property.name == property_name, is_measured())
    query = select(Material.id).where(Material.id.not_in(have)).order_by(Material.id)
    if structures_only:
        query = query.where(Material.structure_json.is_not(None))
    return query


def build_query(text: str, structures_only: bool = True):
    """'formula=MgO', 'source=oxi_diel_db', 'subset=paper', 'max_sites=5', 'elements=Mg,O', joined by ';'.

    'all' selects every material; composition-only materials are left out unless `structures_only` is False.
    """
    query = select(Material.id).order_by(Material.id)
    if structures_only:
        query = query.where(Material.structure_json.is_not(None))
    if text.strip() == "all":
        return query
    for clause in filter(None, (c.strip() for c in text.split(";"))):
        match = re.fullmatch(r"(\w+)\s*=\s*(.+)", clause)
        if not match:
            raise TansakuError(f"query clause {clause!r} is not key=value")
        key, value = match.group(1), match.group(2).strip()
        if key == "formula":
            query = query.where(Material.reduced_formula.in_(value.split(",")))
        elif key == "source":
            query = query.where(Material.source == value)
        elif key == "source_id":
            query = query.where(Material.source_id.in_(value.split(",")))
        elif key == "subset":
            query = query.where(Material.id.in_(select(Subset.material_id).where(Subset.name == value)))
        elif key == "max_sites":
            query = query.where(Material.nsites <= int(value))
        elif key == "elements":
            query = query.where(Material.elements == ",".join(sorted(value.split(","))))
        else:
            raise TansakuError(f"unknown query key {key!r} (formula, source, source_id, subset, max_sites, elements)")
    return query
