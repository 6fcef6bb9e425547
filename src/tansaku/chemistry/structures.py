"""Reading structure files (CIF, POSCAR/CONTCAR, pymatgen JSON) and checking them, with clear errors.

Pure chemistry: nothing here touches the database or the descriptors, so every layer can use it.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
from pymatgen.core import Element, Species, Structure

from tansaku import TansakuError

POSCAR_NAMES = ("poscar", "contcar", ".vasp", ".poscar")


def read_structure(path: str | Path, species: list[str] | None = None) -> Structure:
    """One ordered-or-not Structure from a CIF, POSCAR/CONTCAR/VASP or pymatgen JSON file.

    Species must come from somewhere the user stated: the file, a POTCAR beside a POSCAR, or `species` (element
    symbols in the order of a VASP 4 POSCAR's counts). A file that names no species, or an element symbol that
    does not exist, is refused rather than stored as something else; pymatgen's own warnings are kept in the
    message when it cannot read a file.
    """
    path = Path(path)
    if not path.is_file():
        raise TansakuError(f"{path}: no such file")
    name = path.name.lower()
    head = path.read_bytes()[:4096]
    if b"\0" in head and not name.endswith(".gz"):
        if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
            raise TansakuError(f"{path}: UTF-16 text; save it as UTF-8 to read it")
        raise TansakuError(f"{path}: a binary file, not a structure (CIF, POSCAR or pymatgen JSON)")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if name.endswith(".json") or name.endswith(".json.gz"):
                structure = _from_json(path)
            elif any(key in name for key in POSCAR_NAMES) and (problem := _poscar_counts_problem(path)):
                raise TansakuError(f"{path}: {problem}")
            elif species and any(key in name for key in POSCAR_NAMES):
                from pymatgen.io.vasp import Poscar

                structure = Poscar.from_str(path.read_text(), default_names=list(species)).structure
            else:
                structure = Structure.from_file(path)
    except TansakuError:
        raise
    except Exception as exc:  # noqa: BLE001 - parsers raise many types; all mean "unreadable"
        said = "; ".join(dict.fromkeys(_printable(str(w.message)) for w in caught if _worth_saying(w)))
        raise TansakuError(f"{path}: cannot read a structure ({type(exc).__name__}: {_printable(str(exc))})"
                           + (f"; pymatgen says: {said}" if said else "")) from exc
    if any("cannot be determined" in str(w.message) for w in caught):
        raise TansakuError(f"{path}: the POSCAR names no elements (VASP 4 format, no POTCAR beside it); give them "
                           "in the order of its counts (--species Mg,O) or add the element line")
    unknown = sorted({str(sp) for sp in structure.composition if not isinstance(sp, Element | Species)
                      or not Element.is_valid_symbol(sp.symbol)})
    if unknown:
        raise TansakuError(f"{path}: unknown element symbol(s) {', '.join(repr(u.rstrip('0+-')) for u in unknown)}")
    if len(structure) == 0:
        raise TansakuError(f"{path}: the structure has no sites")
    check_geometry(structure, str(path))
    return structure


MAX_SITES = 10_000  # more than any cell DFT or the descriptors will see: a typo or a hostile file
VOLUME_PER_ATOM = (0.5, 10_000.0)  # Å³: below, atoms overlap or the cell is flat; above, a unit slip


def check_geometry(structure: Structure, where: str) -> None:
    """Refuse cells no calculation can use: non-finite numbers, a flat or absurd volume, too many sites."""
    matrix = structure.lattice.matrix
    if len(structure) > MAX_SITES:
        raise TansakuError(f"{where}: {len(structure)} sites (at most {MAX_SITES})")
    if not (np.isfinite(matrix).all() and np.isfinite(structure.frac_coords).all()):
        raise TansakuError(f"{where}: the cell or the coordinates hold a number that is not finite")
    per_atom = abs(float(np.linalg.det(matrix))) / len(structure)
    low, high = VOLUME_PER_ATOM
    if not low <= per_atom <= high:
        raise TansakuError(f"{where}: {per_atom:.3g} Å³ per atom is outside {low}-{high:g} (a flat or collapsed cell, "
                           "or lengths in the wrong unit)")


def _poscar_counts_problem(path: Path) -> str | None:
    """A POSCAR whose atom counts are negative or more than its lines could hold (pymatgen would try to read
    them all first)."""
    lines = path.read_text(errors="replace").splitlines()
    for index in (5, 6):  # VASP 4: counts on line 6; VASP 5: element line 6, counts line 7
        if index < len(lines):
            fields = lines[index].split()
            if fields and all(f.lstrip("-").isdigit() for f in fields):
                counts = [int(f) for f in fields]
                if any(c < 0 for c in counts):
                    return f"negative atom count in {' '.join(fields)}"
                if sum(counts) > len(lines):
                    return f"atom counts {' '.join(fields)} do not fit the {len(lines)} lines of the file"
                return None
    return None


def _worth_saying(caught: warnings.WarningMessage) -> bool:
    """pymatgen's warnings that explain a failure (not its notes on missing symmetry keys)."""
    text = str(caught.message)
    return "symmetry" not in text.lower() and "Issues encountered" not in text


def _printable(text: str, limit: int = 300) -> str:
    """A message safe for a terminal: control characters and undecodable bytes escaped, cut to `limit`."""
    text = " ".join(text.split("\n"))
    clean = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    return clean if len(clean) <= limit else clean[:limit] + "…"


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
