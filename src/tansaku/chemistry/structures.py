"""Reading structure files (CIF, POSCAR/CONTCAR, pymatgen JSON) and checking them, with clear errors.

Pure chemistry: nothing here touches the database or the descriptors, so every layer can use it.
"""

from __future__ import annotations

import gzip
import json
import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pymatgen.core import Element, Species, Structure

from tansaku import TansakuError
from tansaku.files import unreadable, write_atomically

POSCAR_NAMES = ("poscar", "contcar", ".vasp", ".poscar")
XYZ_SUFFIXES = (".xyz", ".extxyz", ".xyz.gz", ".extxyz.gz")  # extended XYZ: a cell in the comment line


@dataclass(frozen=True)
class StructureInput:
    """One structure a file holds. Most files hold one; a CIF can hold several data blocks and a JSON file a
    list, and each of those is an input of its own, so one bad block refuses only itself."""

    path: Path
    key: str | None  # the CIF block's name or the JSON list's index; None for a file holding one structure
    read: Callable[[], Structure]  # raises TansakuError naming `label`

    @property
    def label(self) -> str:
        """How messages and results name it: the path, or path#key."""
        return str(self.path) if self.key is None else f"{self.path}#{self.key}"

    @property
    def source_id(self) -> str:
        """The id a stored material keeps: the resolved path, with #key for one of several."""
        resolved = str(self.path.resolve())
        return resolved if self.key is None else f"{resolved}#{self.key}"

    @property
    def origin(self) -> dict:
        """What a material stored from it records of where it came from: the file's name, and the block or index."""
        return {"file": self.path.name} | ({"entry": self.key} if self.key is not None else {})

    @property
    def name(self) -> str:
        """A short name (file stem, with the key) for things named after their input, e.g. prototypes."""
        return self.path.stem if self.key is None else f"{self.path.stem}#{self.key}"


def structure_inputs(paths: Iterable[str | Path], species: list[str] | None = None) -> list[StructureInput]:
    """Every structure the files (and the structure files under directories) hold, in order: a file is one input
    unless it is a CIF with several data blocks that hold atoms or a JSON list of structures (pymatgen itself
    would read only the first). Nothing is checked here beyond what telling them apart needs; each input's `read`
    does the checking."""
    found: list[StructureInput] = []
    for path in _files(paths):
        several = _several_structures(path)
        if several is None:
            found.append(StructureInput(path, None, lambda path=path: read_structure(path, species)))
        else:
            found += [StructureInput(path, key, lambda reader=reader, label=f"{path}#{key}": reader(label))
                      for key, reader in several]
    return found


DIRECTORY_PATTERNS = ("*.cif", "*.cif.gz", "*.mcif", "*.json", "*.json.gz", "*.vasp", "POSCAR*", "CONTCAR*", "*.xyz",
                      "*.extxyz")


def _files(paths: Iterable[str | Path]) -> list[Path]:
    """The paths, with each directory replaced by the structure files under it (DIRECTORY_PATTERNS, at any depth,
    hidden ones left out, in name order); a directory holding none stays, for read_structure to refuse by name."""
    files: list[Path] = []
    for given in paths:
        path = Path(given)
        if not path.is_dir():
            files.append(path)
            continue
        inside = sorted({found for pattern in DIRECTORY_PATTERNS for found in path.rglob(pattern) if found.is_file()
                         and not any(part.startswith(".") for part in found.relative_to(path).parts)})
        files += inside or [path]
    return files


def _several_structures(path: Path) -> list[tuple[str, Callable[[str], Structure]]] | None:
    """(key, reader) for each structure of a CIF with several blocks, a JSON list or an extended XYZ file with
    several frames; None for anything else (including a file that cannot be read: read_structure says why)."""
    name = path.name.lower()
    is_json = name.endswith((".json", ".json.gz"))
    if name.endswith(XYZ_SUFFIXES) and path.is_file():
        frames = _xyz_frames(path)
        if frames is None or len(frames) < 2:
            return None
        return [(str(index), lambda label, atoms=atoms: _checked(_from_atoms(atoms, label), label))
                for index, atoms in enumerate(frames)]
    if not (is_json or ".cif" in name) or not path.is_file():
        return None
    try:
        text = _text(path)
    except (OSError, UnicodeDecodeError, EOFError):
        return None
    if is_json:
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            return None
        if not isinstance(data, list) or not data:
            return None
        return [(str(index), lambda label, item=item: _checked(_structure_from_json(item, label), label))
                for index, item in enumerate(data)]
    blocks = _cif_blocks(text)
    if len(blocks) < 2:
        return None
    return [(key, lambda label, block=block: _checked(_parse(label, lambda: Structure.from_str(block, fmt="cif"))[0],
                                                      label))
            for key, block in blocks]


def _cif_blocks(text: str) -> list[tuple[str, str]]:
    """(name, text) of each data block that places atoms, split where pymatgen's CifFile splits; a block name met
    twice gets its position appended."""
    chunks = [chunk for chunk in re.split(r"^\s*data_", f"x\n{text}", flags=re.MULTILINE)[1:]
              if "_atom_site_" in chunk.lower() and "powder_pattern" not in chunk.split("\n", 1)[0]]
    if len(chunks) < 2:  # the common file, one structure: nothing to tell apart, no block parsed twice
        return []
    blocks: list[tuple[str, str]] = []
    for chunk in chunks:
        if _places_atoms(f"data_{chunk}"):
            blocks.append((chunk.split("\n", 1)[0].strip() or str(len(blocks) + 1), f"data_{chunk}"))
    names = [name for name, _ in blocks]
    return [(name if names.count(name) == 1 else f"{name}({index + 1})", block)
            for index, (name, block) in enumerate(blocks)]


def _places_atoms(block: str) -> bool:
    """Whether a CIF block gives at least one atom position. A journal's global block has none, and a Pauling
    File (SpringerMaterials) CIF follows its structure with published-cell and Niggli-cell blocks whose atom-site
    loop is only '?': those are not structures of their own."""
    from pymatgen.io.cif import CifBlock

    try:
        data = {key.lower(): value for key, value in CifBlock.from_str(block).data.items()}
    except Exception:  # noqa: BLE001 - a block pymatgen cannot tokenize: let its reader say why
        return True
    coordinates = data.get("_atom_site_fract_x") or data.get("_atom_site_cartn_x") or []
    return any(re.match(r"[-+]?(\d|\.\d)", str(value)) for value in coordinates)


def read_structure(path: str | Path, species: list[str] | None = None) -> Structure:
    """One ordered-or-not Structure from a CIF, POSCAR/CONTCAR/VASP, pymatgen JSON, extended XYZ (its first frame)
    or Quantum ESPRESSO pw.x file (input, printed output, XML; an output gives its last structure, a relaxation's
    result).

    Species must come from somewhere the user stated: the file, a POTCAR beside a POSCAR, or `species` (element
    symbols in the order of a VASP 4 POSCAR's counts). A file that names no species, or an element symbol that
    does not exist, is refused rather than stored as something else; pymatgen's own warnings are kept in the
    message when it cannot read a file.
    """
    path = Path(path)
    if path.is_dir():
        raise TansakuError(f"{path}: a directory with no structure files ({', '.join(DIRECTORY_PATTERNS)})")
    if not path.is_file():
        raise TansakuError(f"{path}: no such file")
    name = path.name.lower()
    try:
        with path.open("rb") as handle:
            head = handle.read(4096)
    except OSError as exc:  # a file we may not read, say: refused by name like any other bad input
        raise TansakuError(f"{path}: {unreadable(exc)}") from exc
    if b"\0" in head and not name.endswith(".gz"):
        if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
            raise TansakuError(f"{path}: UTF-16 text; save it as UTF-8 to read it")
        raise TansakuError(f"{path}: a binary file, not a structure (CIF, POSCAR or pymatgen JSON)")

    def parse() -> Structure:
        if name.endswith(".json") or name.endswith(".json.gz"):
            return _from_json(path)
        if any(key in name for key in POSCAR_NAMES) and (problem := _poscar_counts_problem(path)):
            raise TansakuError(f"{path}: {problem}")
        if name.endswith(XYZ_SUFFIXES):
            frames = _xyz_frames(path, quiet=False)
            return _from_atoms(frames[0], str(path))
        if (kind := _quantum_espresso_kind(head)) is not None:
            return _from_quantum_espresso(path, kind, head)
        if species and any(key in name for key in POSCAR_NAMES):
            from pymatgen.io.vasp import Poscar

            return Poscar.from_str(path.read_text(), default_names=list(species)).structure
        return Structure.from_file(path)

    structure, caught = _parse(str(path), parse)
    if any("cannot be determined" in str(w.message) for w in caught):
        raise TansakuError(f"{path}: the POSCAR names no elements (VASP 4 format, no POTCAR beside it); give them "
                           "in the order of its counts (--species Mg,O) or add the element line")
    return _checked(structure, str(path))


def _quantum_espresso_kind(head: bytes) -> str | None:
    """'xml', 'output' or 'input' for pw.x's XML data file, its printed output or its input; None otherwise."""
    low = head.lower()
    if b"<qes:espresso" in low:
        return "xml"
    if b"program pwscf" in low:
        return "output"
    if b"&system" in low and b"&control" in low:
        return "input"
    return None


def _from_quantum_espresso(path: Path, kind: str, head: bytes) -> Structure:
    """The structure of a pw.x file: the XML's output structure, the last one a printed output holds (a
    relaxation's final cell), or an input's. Inputs must give their cell as CELL_PARAMETERS (ibrav = 0); an
    output holds any cell as vectors."""
    if kind == "xml":
        return _from_pw_xml(path)
    if kind == "input" and (ibrav := re.search(rb"\bibrav\s*=\s*(-?\d+)", head, re.IGNORECASE)) and int(ibrav[1]):
        raise TansakuError(f"{path}: a pw.x input with ibrav = {int(ibrav[1])}; give its cell as CELL_PARAMETERS "
                           "(ibrav = 0), or import the run's output (the printed .out or the XML), which holds the "
                           "cell as vectors")
    import io

    import ase.io
    from ase.units import Bohr
    from pymatgen.io.ase import AseAtomsAdaptor

    text = _text(path)
    if kind == "input" and not re.search(r"celldm\(1\)", text, re.IGNORECASE):
        # ASE lower-cases the namelist's keys and then looks for 'A', so it misses A = ...; celldm(1) it reads
        text = re.sub(r"(?<![\w(%])A\s*=\s*([0-9.+\-eEdD]+)",
                      lambda m: f"celldm(1) = {float(m[1].lower().replace('d', 'e')) / Bohr!r}", text,
                      count=1, flags=re.IGNORECASE)
    atoms = ase.io.read(io.StringIO(text), format=f"espresso-{'out' if kind == 'output' else 'in'}", index=-1)
    return AseAtomsAdaptor.get_structure(atoms)


BOHR_TO_ANGSTROM = 0.529177210903  # what pw.x converts with (CODATA 2018; scipy and pymatgen now have 2022's)


def _from_pw_xml(path: Path) -> Structure:
    """The output structure of pw.x's XML data file (a relaxation's result)."""
    import xml.etree.ElementTree as ET

    try:
        node = ET.parse(path).getroot().find("output/atomic_structure")
    except ET.ParseError as exc:
        raise TansakuError(f"{path}: cannot read the pw.x XML ({exc})") from exc
    if node is None:
        raise TansakuError(f"{path}: the pw.x XML has no output structure (the run did not finish); import its "
                           "input file instead")
    return structure_from_pw_xml(node)


def structure_from_pw_xml(node) -> Structure:
    """A Structure from an <atomic_structure> element of pw.x's XML (cell and Cartesian positions in bohr; an atom
    labelled Fe1 or O_2, as magnetic or Hubbard sites are, is its element)."""
    from pymatgen.core import Lattice

    def floats(text: str | None) -> np.ndarray:
        return np.array((text or "").split(), dtype=float)

    cell = np.array([floats(node.findtext(f"cell/a{i}")) for i in (1, 2, 3)]) * BOHR_TO_ANGSTROM
    species, coords = [], []
    for atom in node.findall("atomic_positions/atom"):
        label = re.sub(r"[^A-Za-z]", "", atom.get("name")).capitalize()[:2]
        species.append(label if Element.is_valid_symbol(label) else label[0])
        coords.append(floats(atom.text) * BOHR_TO_ANGSTROM)
    return Structure(Lattice(cell), species, coords, coords_are_cartesian=True)


def _xyz_frames(path: Path, quiet: bool = True) -> list | None:
    """Every frame of an extended XYZ file as ASE Atoms; None (or ASE's error, when not `quiet`) if unreadable."""
    import io

    import ase.io

    try:
        return ase.io.read(io.StringIO(_text(path)), index=":", format="extxyz")
    except Exception:  # noqa: BLE001 - ASE raises many types for a broken file; read_structure says which
        if quiet:
            return None
        raise


def _from_atoms(atoms, where: str) -> Structure:
    """A periodic structure from ASE Atoms; a frame without a full periodic cell (a molecule) is refused."""
    from pymatgen.io.ase import AseAtomsAdaptor

    if atoms.cell.rank < 3 or not all(atoms.pbc):
        raise TansakuError(f"{where}: no periodic cell (a molecule, or an XYZ without Lattice= in its comment line)")
    return AseAtomsAdaptor.get_structure(atoms)


def _parse(where: str, parse: Callable[[], Structure]) -> tuple[Structure, list[warnings.WarningMessage]]:
    """parse() and the warnings it raised; any parser's exception becomes one message naming `where` and quoting
    pymatgen's warnings that explain it."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            return parse(), caught
    except TansakuError:
        raise
    except Exception as exc:  # noqa: BLE001 - parsers raise many types; all mean "unreadable"
        said = "; ".join(dict.fromkeys(_printable(str(w.message)) for w in caught if _worth_saying(w)))
        raise TansakuError(f"{where}: cannot read a structure ({type(exc).__name__}: {_printable(str(exc))})"
                           + (f"; pymatgen says: {said}" if said else "")) from exc


def _checked(structure: Structure, where: str) -> Structure:
    """The structure, if its elements exist, it has sites, and its cell is one a calculation can use."""
    unknown = sorted({str(sp) for sp in structure.composition if not isinstance(sp, Element | Species)
                      or not Element.is_valid_symbol(sp.symbol)})
    if unknown:
        raise TansakuError(f"{where}: unknown element symbol(s) {', '.join(repr(u.rstrip('0+-')) for u in unknown)}")
    if len(structure) == 0:
        raise TansakuError(f"{where}: the structure has no sites")
    check_geometry(structure, where)
    return structure


STRUCTURE_FILE_SUFFIXES = {"cif": ".cif", "poscar": ".vasp", "json": ".json"}  # each read back by read_structure


def write_structure_file(structure: Structure, folder: Path, stem: str, fmt: str = "cif") -> Path:
    """The structure written as folder/<stem><suffix> in a format this module reads back (cif, poscar as .vasp,
    json), whole or not at all; characters a file name should not hold become '_'."""
    if fmt not in STRUCTURE_FILE_SUFFIXES:
        raise TansakuError(f"structure file format {fmt!r}: cif, poscar or json")
    text = json.dumps(structure.as_dict()) if fmt == "json" else structure.to(fmt=fmt)
    path = folder / (re.sub(r"[^\w.()+#-]", "_", stem) + STRUCTURE_FILE_SUFFIXES[fmt])
    write_atomically(path, lambda handle: handle.write(text.encode()))
    return path


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
        data = json.loads(_text(path))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TansakuError(f"{path}: malformed JSON ({exc})") from exc
    return _structure_from_json(data, str(path))


def _structure_from_json(data, where: str) -> Structure:
    """A pymatgen structure dict, bare or under 'structure' (as in a ComputedStructureEntry-like record)."""
    if isinstance(data, dict) and "structure" in data and "lattice" not in data:
        data = data["structure"]
    if not isinstance(data, dict) or "lattice" not in data or "sites" not in data:
        raise TansakuError(f"{where}: the JSON holds no pymatgen structure (needs 'lattice' and 'sites')")
    return structure_from_dict(data, where)


def _text(path: Path) -> str:
    """A text file's content, gunzipped when its name ends in .gz."""
    raw = path.read_bytes()
    return (gzip.decompress(raw) if path.name.lower().endswith(".gz") else raw).decode()


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
