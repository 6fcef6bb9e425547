"""Browsing the materials table: filter, sort and page over the whole database with a few indexed queries.

What the web pages, their JSON endpoints and their CSV downloads share; every value reaches SQL as a bound
parameter, never as text pasted into a statement.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pymatgen.core import Composition, Element
from sqlalchemy import ColumnElement, and_, func, literal, select
from sqlalchemy.orm import Session

from tansaku import TansakuError
from tansaku.store.filters import is_measured
from tansaku.store.tables import Material, Property, Subset

MAX_PAGE = 500
SORTABLE_COLUMNS = {
    "id": Material.id, "formula": Material.reduced_formula, "nsites": Material.nsites,
    "nelements": Material.nelements, "spacegroup": Material.spacegroup_number, "source": Material.source,
    "source_id": Material.source_id,
}


@dataclass
class MaterialFilter:
    """What a person narrows the table by. `method` picks whose values count ('import:oxi_diel_db', 'dft:qe:standard',
    'ml:<model id>'); without it, measured values (imported or computed), never a model's predictions. Where a
    material has several counted values of a property, the table shows (and sorts by) the one whose method sorts
    first: computed (dft:…) before imported (import:…)."""

    elements: list[str] = field(default_factory=list)  # the material has all of them
    formula: str | None = None  # any element order: OMg finds MgO
    source: str | None = None
    subset: str | None = None
    method: str | None = None
    ranges: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)  # property → (min, max)
    structures_only: bool = False

    def __post_init__(self) -> None:
        for symbol in self.elements:
            try:
                Element(symbol)
            except ValueError:
                raise TansakuError(f"{symbol!r} is not an element symbol") from None
        if self.formula:
            try:
                self.formula = Composition(self.formula).reduced_formula
            except Exception:  # noqa: BLE001 - pymatgen raises many types for a bad formula
                raise TansakuError(f"{self.formula!r} is not a chemical formula") from None


def value_source(name: str, method: str | None) -> ColumnElement[bool]:
    """Property rows of `name` that count under the filter's method."""
    which = Property.method == method if method else is_measured()
    return and_(Property.name == name, which)


def has_element(symbol: str) -> ColumnElement[bool]:
    """The comma-joined element list contains the symbol (padded with commas so that O does not match Os)."""
    return (literal(",") + Material.elements + literal(",")).like(f"%,{symbol},%")


def where_clauses(flt: MaterialFilter) -> list[ColumnElement[bool]]:
    clauses: list[ColumnElement[bool]] = [has_element(symbol) for symbol in flt.elements]
    if flt.formula:
        clauses.append(Material.reduced_formula == flt.formula)
    if flt.source:
        clauses.append(Material.source == flt.source)
    if flt.subset:
        clauses.append(Material.id.in_(select(Subset.material_id).where(Subset.name == flt.subset)))
    if flt.structures_only:
        clauses.append(Material.structure_json.is_not(None))
    for name, (lo, hi) in flt.ranges.items():
        # IN over the property's rows (found once through the name index), not EXISTS per material
        condition = [value_source(name, flt.method), Property.value.is_not(None)]
        if lo is not None:
            condition.append(Property.value >= lo)
        if hi is not None:
            condition.append(Property.value <= hi)
        clauses.append(Material.id.in_(select(Property.material_id).where(*condition)))
    return clauses


def _sort_key(sort: str, flt: MaterialFilter):
    if sort in SORTABLE_COLUMNS:
        return SORTABLE_COLUMNS[sort]
    # a property: its shown value, as a correlated subquery (NULL for materials without one). Ordered by method,
    # which the (material, name, method) index gives for free; ordering by row id made SQLite walk the name index
    return (select(Property.value).where(Property.material_id == Material.id, value_source(sort, flt.method))
            .order_by(Property.method).limit(1).scalar_subquery())


@dataclass
class Page:
    rows: list[dict[str, Any]]
    total: int
    offset: int
    limit: int
    columns: list[str]  # the property columns of each row


def material_page(session: Session, flt: MaterialFilter, columns: list[str], sort: str = "id",
                  descending: bool = False, offset: int = 0, limit: int = 50) -> Page:
    """One page of the filtered table with the named property columns, and the number of rows in all."""
    clauses = where_clauses(flt)
    total = session.scalar(select(func.count()).select_from(Material).where(*clauses)) or 0
    rows = _rows(session, flt, clauses, columns, sort, descending, offset, limit)
    return Page(rows=rows, total=total, offset=offset, limit=limit, columns=columns)


def _rows(session: Session, flt: MaterialFilter, clauses, columns: list[str], sort: str, descending: bool,
          offset: int, limit: int) -> list[dict[str, Any]]:
    if not 1 <= limit <= MAX_PAGE:
        raise TansakuError(f"page size {limit} is outside 1..{MAX_PAGE}")
    if offset < 0:
        raise TansakuError(f"offset {offset} is negative")
    if sort not in SORTABLE_COLUMNS and sort not in columns:
        raise TansakuError(f"cannot sort by {sort!r}: a column ({', '.join(SORTABLE_COLUMNS)}) or a shown property")
    key = _sort_key(sort, flt)
    order = key.desc().nulls_last() if descending else key.asc().nulls_last()
    query = (select(Material.id, Material.reduced_formula, Material.nsites, Material.spacegroup_symbol,
                    Material.source, Material.source_id)
             .where(*clauses).order_by(order, Material.id).offset(offset).limit(limit))
    rows = [dict(r._mapping) for r in session.execute(query)]
    _attach_values(session, rows, columns, flt.method)
    return rows


def _attach_values(session: Session, rows: list[dict[str, Any]], columns: list[str], method: str | None) -> None:
    """Fill each row's property columns with the shown value (and its method) of that property."""
    if not rows or not columns:
        return
    ids = [r["id"] for r in rows]
    which = Property.method == method if method else is_measured()
    query = (select(Property.material_id, Property.name, Property.value, Property.method)
             .where(Property.material_id.in_(ids), Property.name.in_(columns), which).order_by(Property.method))
    found: dict[tuple[int, str], tuple[float | None, str]] = {}
    for material_id, name, value, row_method in session.execute(query):
        found.setdefault((material_id, name), (value, row_method))
    for row in rows:
        for name in columns:
            row[name], row[f"{name}_method"] = found.get((row["id"], name), (None, None))


def iter_filtered(session: Session, flt: MaterialFilter, columns: list[str], sort: str = "id",
                  descending: bool = False, chunk: int = MAX_PAGE) -> Iterator[dict[str, Any]]:
    """Every row of the filter in the table's order, a page at a time (for downloads of any size)."""
    clauses = where_clauses(flt)
    offset = 0
    while rows := _rows(session, flt, clauses, columns, sort, descending, offset, chunk):
        yield from rows
        offset += chunk


def property_names(session: Session) -> list[str]:
    return list(session.scalars(select(Property.name).distinct().order_by(Property.name)))


def methods(session: Session) -> list[str]:
    return list(session.scalars(select(Property.method).distinct().order_by(Property.method)))


def sources(session: Session) -> list[str]:
    return list(session.scalars(select(Material.source).distinct().order_by(Material.source)))


def structure_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(Material).where(Material.structure_json.is_not(None))) or 0


def subsets(session: Session) -> list[str]:
    return list(session.scalars(select(Subset.name).distinct().order_by(Subset.name)))
