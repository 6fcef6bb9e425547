"""Composition,value tables (e.g. matbench's mp_e_form.csv.gz): one material and one property per row.

Rows are validated in memory first; only valid rows are written, in batched transactions, so a bad row
never leaves anything in the database. Each row is its own material (source id = file and row number),
because such tables hold polymorphs whose structures they do not carry.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import statistics
from collections.abc import Callable, Iterator
from pathlib import Path

from pymatgen.core import Composition, Element
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from tansaku import TansakuError
from tansaku.store.database import Database
from tansaku.store.materials import ImportReport, composition_fields
from tansaku.store.tables import Material, Property

COMPOSITION_COLUMNS = ("formula", "composition", "reduced_formula", "pretty_formula")
BATCH = 5000


def open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def csv_rows(path: Path) -> list[list[str]]:
    """A CSV file's rows (gzipped or not); a missing, unreadable or undecodable file is refused by name."""
    if not path.is_file():
        raise TansakuError(f"{path}: no such file")
    try:
        with open_text(path) as handle:
            return list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise TansakuError(f"{path}: cannot read as CSV ({exc})") from exc


def formulas_in(path: Path) -> list[str]:
    """The formulas of a CSV, as written: its formula (or composition) column, else its first column (a file
    without a header is all formulas). What candidates and predictions read; nothing is parsed here."""
    rows = [row for row in csv_rows(path) if row and any(cell.strip() for cell in row)]
    if not rows:
        raise TansakuError(f"{path}: the CSV is empty")
    header = [cell.strip().lower() for cell in rows[0]]
    column = next((header.index(c) for c in COMPOSITION_COLUMNS if c in header), None)
    if column is None:
        return [row[0].strip() for row in rows]  # no header: every row is a formula
    return [row[column].strip() for row in rows[1:] if len(row) > column]


def parse_composition(text: str) -> Composition:
    """A Composition, refusing unknown symbols and empty formulas with the formula in the message."""
    try:
        composition = Composition(text)
    except Exception as exc:  # noqa: BLE001 - pymatgen raises ValueError/KeyError/CompositionError
        raise TansakuError(f"formula {text!r} is not a valid composition ({exc})") from exc
    if composition.num_atoms <= 0:
        raise TansakuError(f"formula {text!r} has no atoms")
    unknown = [getattr(el, "symbol", str(el)) for el in composition.elements if not isinstance(el, Element)]
    if unknown:
        raise TansakuError(f"formula {text!r} is not a valid composition (unknown element {unknown[0]!r})")
    return composition


def median_by_formula(path: Path, value_column: str | None = None) -> dict[str, float]:
    """A composition,value table as reduced formula → the median of its rows' values (`read_table`'s rows).

    A formula with several rows (polymorphs, as Materials Project's PBE gaps have) takes their median: without
    energies we cannot tell the ground state, and the median correlated best with the experimental gap
    (r = 0.871 against 0.862 for the minimum and 0.863 for the maximum on matbench's gaps)."""
    rows, _, parsed = read_parsed_table(path, value_column)
    return medians(rows, parsed)


def medians(rows: Rows, parsed: Parsed) -> dict[str, float]:
    """`median_by_formula` of rows already read."""
    values: dict[str, list[float]] = {}
    for _, formula, value in rows:
        composition = parsed[formula]
        if isinstance(composition, Composition):  # an unreadable formula is one row less, as on import
            values.setdefault(composition.reduced_formula, []).append(value)
    return {f: float(statistics.median(v)) for f, v in values.items()}


Rows = list[tuple[int, str, float]]
Parsed = dict[str, Composition | TansakuError]


def read_table(path: Path, value_column: str | None = None) -> tuple[Rows, ImportReport]:
    """Valid (row number, formula, value) rows, and a report listing the refused rows."""
    rows, report, _ = read_parsed_table(path, value_column)
    return rows, report


def read_parsed_table(path: Path, value_column: str | None = None,
                      progress: Callable[..., Iterator] | None = None) -> tuple[Rows, ImportReport, Parsed]:
    """`read_table`'s rows and report, and each distinct formula's Composition (or why it is refused)."""
    rows, report = read_rows(path, value_column)
    parsed = parse_formulas(rows, progress)
    _report_conflicts(rows, parsed, report, path)
    return rows, report, parsed


def read_rows(path: Path, value_column: str | None = None) -> tuple[Rows, ImportReport]:
    """The rows whose value is a finite number, formulas not yet parsed, and a report of the refused ones."""
    report = ImportReport()
    rows = csv_rows(path)
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise TansakuError(f"{path}: the CSV is empty")
    if len(rows) == 1:
        raise TansakuError(f"{path}: the CSV has a header but no rows")
    header = [cell.strip().lower() for cell in rows[0]]
    comp_idx = next((header.index(c) for c in COMPOSITION_COLUMNS if c in header), 0)
    if value_column is not None:
        if value_column.lower() not in header:
            raise TansakuError(f"{path}: no column {value_column!r} (columns: {', '.join(header)})")
        value_idx = header.index(value_column.lower())
    else:
        value_idx = _value_column(path, header, comp_idx, rows[1:201])
    good: list[tuple[int, str, float]] = []
    for number, row in enumerate(rows[1:], start=1):
        if not row or not any(cell.strip() for cell in row):
            continue
        where = f"{path.name} row {number}"
        try:
            formula, text = row[comp_idx].strip(), row[value_idx].strip()
        except IndexError:
            report.error(where, f"has {len(row)} cells, expected at least {max(comp_idx, value_idx) + 1}")
            continue
        try:
            value = float(text)
        except ValueError:
            report.error(where, f"value {text!r} is not a number")
            continue
        if not math.isfinite(value):
            report.error(where, f"value {text!r} is not finite")
            continue
        good.append((number, formula, value))
    return good, report


def parse_formulas(rows: Rows, progress: Callable[..., Iterator] | None = None) -> Parsed:
    """Each distinct formula of the rows parsed once: pymatgen's parsing is most of an import's time (132,752 rows
    of matbench share 106,250 formulas). `progress(chunks, "formulas")` wraps it."""
    distinct = list(dict.fromkeys(formula for _, formula, _ in rows))
    chunks = [distinct[i : i + BATCH] for i in range(0, len(distinct), BATCH)]
    parsed: Parsed = {}
    for chunk in progress(chunks, "formulas") if progress else chunks:
        parsed.update((formula, _parsed(formula)) for formula in chunk)
    return parsed


def _parsed(formula: str) -> Composition | TansakuError:
    try:
        return parse_composition(formula)
    except TansakuError as exc:
        return exc


def _value_column(path: Path, header: list[str], comp_idx: int, sample: list[list[str]]) -> int:
    """The only numeric column besides the formula; several (an id and a value) or none stop the import."""
    others = [i for i in range(len(header)) if i != comp_idx]
    if not others:
        raise TansakuError(f"{path}: needs a composition column and a value column")

    def numeric(i: int) -> bool:
        cells = [row[i].strip() for row in sample if len(row) > i and row[i].strip()]
        parsed = 0
        for cell in cells:
            try:
                float(cell)
                parsed += 1
            except ValueError:
                pass
        return bool(cells) and parsed > 0.5 * len(cells)  # a few bad cells are reported row by row

    candidates = [i for i in others if numeric(i)]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise TansakuError(f"{path}: no numeric column besides {header[comp_idx]!r} to take values from "
                           f"(columns: {', '.join(header)})")
    names = ", ".join(header[i] for i in candidates)
    raise TansakuError(f"{path}: several numeric columns could hold the values ({names}); name one with --column")


def _report_conflicts(rows: Rows, parsed: Parsed, report: ImportReport, path: Path) -> None:
    """Say how many formulas appear more than once with different values: polymorphs (each row stays its own
    material, as matbench's tables mean) or conflicting entries, which the user should know about."""
    values: dict[str, set[float]] = {}
    for _, formula, value in rows:
        composition = parsed[formula]
        if isinstance(composition, Composition):  # a refused formula is reported later, row by row
            values.setdefault(composition.reduced_formula, set()).add(value)
    conflicting = [f for f, v in values.items() if len(v) > 1]
    if conflicting:
        report.warn(f"{path.name}: {len(conflicting)} formula(s) appear more than once with different values "
                    f"(polymorphs or conflicting entries), e.g. {', '.join(conflicting[:5])}; each row is stored "
                    "as its own material")


def import_csv(
    db: Database,
    path: str | Path,
    property_name: str,
    unit: str | None = None,
    value_column: str | None = None,
    progress: Callable[..., Iterator] | None = None,
) -> ImportReport:
    """Import a composition,value table; rows already imported from the same file are skipped before their
    formulas are parsed, so a rerun after a kill costs what is left (and the warning about formulas with several
    values speaks of the rows this run adds). `progress(items, what)` wraps the two long loops: parsing the
    formulas, then writing the rows."""
    path = Path(path)
    rows, report = read_rows(path, value_column)
    source = f"csv:{path.name}"
    method = f"import:{path.name}"
    with db.session() as session:
        existing = set(session.scalars(select(Material.source_id).where(Material.source == source)))
    new = [row for row in rows if _source_id(row[0]) not in existing]
    report.existing += len(rows) - len(new)
    parsed = parse_formulas(new, progress)
    _report_conflicts(new, parsed, report, path)
    fields_cache: dict[str, dict] = {}
    batches = [new[i : i + BATCH] for i in range(0, len(new), BATCH)]
    for batch in progress(batches, "rows") if progress else batches:
        materials, values = [], []
        for number, formula, value in batch:
            source_id = _source_id(number)
            fields = fields_cache.get(formula)
            if fields is None:
                composition = parsed[formula]
                if isinstance(composition, TansakuError):
                    report.error(f"{path.name} row {number}", str(composition))
                    continue
                fields = fields_cache[formula] = composition_fields(composition)
            materials.append({**fields, "source": source, "source_id": source_id})
            values.append(value)
        if not materials:
            continue
        with db.session() as session:
            ids = _insert_materials(session, materials, source)
            session.execute(
                insert(Property.__table__),
                [
                    {"material_id": mid, "name": property_name, "value": v, "unit": unit, "method": method}
                    for mid, v in zip(ids, values, strict=True)
                ],
            )
        report.added += len(ids)
        report.properties += len(ids)
    return report


def _source_id(number: int) -> str:
    """A row's material: the same row of the same file is the same material on every import."""
    return f"row {number}"


def _insert_materials(session: Session, materials: list[dict], source: str) -> list[int]:
    """Insert a batch of materials of one source and return their ids in order.

    A plain executemany and one query for the ids (source and source id are unique, and the ids are above the
    largest before the insert): 1.6x faster on SQLite and 3x on PostgreSQL than INSERT … RETURNING, whose one
    long statement per page psycopg parses anew each time. Core, not ORM, inserts: the ORM's bulk path adds as
    much again for plain rows."""
    before = session.scalar(select(func.max(Material.id))) or 0
    session.execute(insert(Material.__table__), materials)
    new = select(Material.source_id, Material.id).where(Material.source == source, Material.id > before)
    ids = dict(session.execute(new).all())
    return [ids[material["source_id"]] for material in materials]
