"""Storing structure files as materials (reading and checking them is `tansaku.chemistry.structures`)."""

from __future__ import annotations

from pathlib import Path

from tansaku import TansakuError
from tansaku.chemistry.structures import check_ordered, read_structure
from tansaku.store.database import Database
from tansaku.store.materials import ImportReport, add_structure_material

FILE_SOURCE = "file"


def import_structure_files(
    db: Database, paths: list[Path], allow_disorder: bool = False, progress=None, species: list[str] | None = None
) -> ImportReport:
    """Store each file as a material (source 'file', id = its resolved path); one transaction per file.
    `species`: the elements of VASP 4 POSCARs that name none, in the order of their counts."""
    report = ImportReport()
    for path in progress(paths) if progress else paths:
        try:
            structure = read_structure(path, species)
            if not allow_disorder:
                check_ordered(structure, str(path), "pass --allow-disorder to store it anyway")
            with db.session() as session:
                add_structure_material(
                    session, structure, FILE_SOURCE, str(Path(path).resolve()), report,
                    extra={"file": Path(path).name},
                )
        except TansakuError as exc:
            report.error(str(path), str(exc).removeprefix(f"{path}: "))
    return report
