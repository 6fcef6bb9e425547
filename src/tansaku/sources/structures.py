"""Reading structure files (CIF, POSCAR/CONTCAR, pymatgen JSON) into pymatgen Structures, with clear errors."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from pymatgen.core import Element, Structure

from tansaku import TansakuError
from tansaku.store.database import Database
from tansaku.store.materials import ImportReport, add_structure_material

FILE_SOURCE = "file"


def read_structure(path: str | Path) -> Structure:
    """One ordered-or-not Structure from a CIF, POSCAR/CONTCAR/VASP or pymatgen JSON file."""
    path = Path(path)
    if not path.is_file():
        raise TansakuError(f"{path}: no such file")
    name = path.name.lower()
    try:
        if name.endswith(".json") or name.endswith(".json.gz"):
            structure = _from_json(path)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                structure = Structure.from_file(path)
    except TansakuError:
        raise
    except Exception as exc:  # noqa: BLE001 - parsers raise many types; all mean "unreadable"
        raise TansakuError(f"{path}: cannot read a structure ({type(exc).__name__}: {exc})") from exc
    if len(structure) == 0:
        raise TansakuError(f"{path}: the structure has no sites")
    return structure


def _from_json(path: Path) -> Structure:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise TansakuError(f"{path}: malformed JSON ({exc})") from exc
    if isinstance(data, dict) and "structure" in data and "lattice" not in data:
        data = data["structure"]
    if not isinstance(data, dict) or "lattice" not in data or "sites" not in data:
        raise TansakuError(f"{path}: the JSON holds no pymatgen structure (needs 'lattice' and 'sites')")
    return structure_from_dict(data, str(path))


def structure_from_dict(data: dict, where: str) -> Structure:
    """Structure.from_dict with unknown element symbols reported by name."""
    for site in data.get("sites", []):
        for species in site.get("species", []):
            symbol = species.get("element", "")
            if not Element.is_valid_symbol(symbol):
                raise TansakuError(f"{where}: unknown element symbol {symbol!r}")
    try:
        return Structure.from_dict(data)
    except Exception as exc:  # noqa: BLE001
        raise TansakuError(f"{where}: invalid structure ({type(exc).__name__}: {exc})") from exc


ORDER_IT_FIRST = "order it first, e.g. with pymatgen's OrderDisorderedStructureTransformation"


def check_ordered(structure: Structure, where: str, remedy: str = ORDER_IT_FIRST) -> None:
    """Refuse disordered or partially occupied structures: DFT and our descriptors need ordered cells."""
    if not structure.is_ordered:
        partial = next(site for site in structure if not site.is_ordered)
        raise TansakuError(
            f"{where}: disordered or partially occupied structure (site {partial.species_string} "
            f"at {partial.frac_coords.round(3).tolist()}); {remedy}"
        )


def import_structure_files(
    db: Database, paths: list[Path], allow_disorder: bool = False, progress=None
) -> ImportReport:
    """Store each file as a material (source 'file', id = its resolved path); one transaction per file."""
    report = ImportReport()
    for path in progress(paths) if progress else paths:
        try:
            structure = read_structure(path)
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
