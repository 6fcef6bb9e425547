"""Storing structure files as materials (reading and checking them is `tansaku.chemistry.structures`)."""

from __future__ import annotations

from pathlib import Path

from tansaku import TansakuError
from tansaku.chemistry.structures import check_ordered, structure_inputs
from tansaku.store.database import Database
from tansaku.store.materials import ImportReport, add_structure_material, add_to_subset

FILE_SOURCE = "file"


def import_structure_files(
    db: Database, paths: list[Path], allow_disorder: bool = False, progress=None, species: list[str] | None = None,
    subset: str | None = None,
) -> ImportReport:
    """Store each structure the files hold as a material (source 'file', id = its resolved path, with #block for
    one of a CIF's several blocks or #index for one of a JSON list's structures); one transaction each.
    `species`: the elements of VASP 4 POSCARs that name none, in the order of their counts. `subset`: each stored
    material (or the one a structure was already stored as) also joins this named subset, in the same
    transaction."""
    report = ImportReport()
    inputs = structure_inputs(paths, species)
    for item in progress(inputs) if progress else inputs:
        try:
            structure = item.read()
            if not allow_disorder:
                check_ordered(structure, item.label, "pass --allow-disorder to store it anyway")
            with db.session() as session:
                material, _ = add_structure_material(session, structure, FILE_SOURCE, item.source_id, report,
                                                     extra=item.origin)
                if subset:
                    add_to_subset(session, subset, [material.id])
        except TansakuError as exc:
            report.error(item.label, str(exc).removeprefix(f"{item.label}: "))
    return report
