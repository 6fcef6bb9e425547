"""The published oxide dielectric database (Takahashi et al., PRM 4, 103801 (2020)) as materials and properties.

Accepts the repository's layout as a directory, as a zip of the repository, or a URL of such a zip.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from tansaku import TansakuError
from tansaku.chemistry.structures import structure_from_dict
from tansaku.download import fetch
from tansaku.files import unreadable
from tansaku.numbers import is_finite_number
from tansaku.store.database import Database
from tansaku.store.materials import (
    ImportReport,
    add_structure_material,
    add_to_subset,
    get_material,
    set_property,
    tensor_average,
)

SOURCE = "oxi_diel_db"
METHOD = "import:oxi_diel_db"
PAPER_SUBSET = "paper"
SUBSET_FILE = "paper_subset_ids.txt"
BATCH = 200  # entries per transaction
# Pinned to a commit so that the archive's content cannot change under us.
DEFAULT_URL = (
    "https://github.com/takahashi-akira-36m/oxi_diel_db/archive/d5fab66496b6e4a2f4996a8a59fa8235b741edaf.zip"
)


@dataclass
class RawEntry:
    """One JSON file of the database before parsing: where it came from and its bytes."""

    name: str
    text: bytes
    unreadable: str | None = None  # why the file could not be read; the entry is then refused with it


@dataclass
class Bundle:
    """The entries found at a location, plus the paper subset ids when present."""

    entries: list[RawEntry]
    subset_ids: list[str] | None
    location: str


def load_bundle(location: str | Path | None = None, subset_file: Path | None = None) -> Bundle:
    """Read the database from a directory, a zip or a URL (default: the official archive, cached)."""
    location = str(location) if location is not None else DEFAULT_URL
    if "://" in location:
        path = fetch(location, "oxi_diel_db-" + location.rstrip("/").rsplit("/", 1)[-1])
        bundle = _from_zip(path, location)
    else:
        path = Path(location)
        if path.is_dir():
            bundle = _from_directory(path)
        elif path.is_file() and zipfile.is_zipfile(path):
            bundle = _from_zip(path, location)
        elif path.exists():
            raise TansakuError(f"{location}: neither a directory nor a zip of the oxide dielectric database")
        else:
            raise TansakuError(f"{location}: no such file or directory")
    if subset_file is not None:
        bundle.subset_ids = _read_ids(Path(subset_file).read_text())
    return bundle


def _from_directory(path: Path) -> Bundle:
    data_dir = path / "data" if (path / "data").is_dir() else path
    files = sorted(data_dir.glob("*.json"))
    if not files:
        raise TansakuError(f"{path}: no JSON files (expected data/*.json as in the database's repository)")
    subset = path / SUBSET_FILE
    ids = _read_ids(subset.read_text()) if subset.exists() else None
    return Bundle([_read_entry(f) for f in files], ids, str(path))


def _read_entry(path: Path) -> RawEntry:
    try:
        return RawEntry(path.name, path.read_bytes())
    except OSError as exc:  # one file we may not read refuses only itself
        return RawEntry(path.name, b"", unreadable(exc))


def _from_zip(path: Path, location: str) -> Bundle:
    entries: list[RawEntry] = []
    ids = None
    try:
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                parts = PurePosixPath(member)
                if parts.suffix == ".json" and parts.parent.name == "data":
                    entries.append(RawEntry(parts.name, archive.read(member)))
                elif parts.name == SUBSET_FILE:
                    ids = _read_ids(archive.read(member).decode())
    except zipfile.BadZipFile as exc:
        raise TansakuError(f"{location}: not a readable zip ({exc})") from exc
    if not entries:
        raise TansakuError(
            f"{location}: this zip is not the oxide dielectric database (no data/*.json inside)"
        )
    return Bundle(sorted(entries, key=lambda e: e.name), ids, location)


def _read_ids(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def parse_entry(raw: RawEntry) -> dict:
    """Validate one JSON entry fully before anything is written: structure, tensors, ids."""
    if raw.unreadable:
        raise TansakuError(f"{raw.name}: {raw.unreadable}")
    try:
        data = json.loads(raw.text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TansakuError(f"{raw.name}: malformed JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise TansakuError(f"{raw.name}: expected a JSON object")
    if "structure" not in data:
        raise TansakuError(f"{raw.name}: no 'structure' in the entry")
    if "mp_id" not in data:
        raise TansakuError(f"{raw.name}: no 'mp_id' in the entry")
    structure = structure_from_dict(data["structure"], raw.name)
    try:
        _check_values(data, len(structure))
    except TansakuError as exc:
        raise TansakuError(f"{raw.name}: {exc}") from None
    spacegroup = data.get("spacegroup") or {}
    return {
        "id": str(data["mp_id"]),
        "structure": structure,
        "spacegroup": (spacegroup["number"], spacegroup["symbol"]) if "number" in spacegroup else None,
        "data": data,
    }


def _check_values(data: dict, sites: int) -> None:
    """Every value the import stores is a finite number or an array of the shape it must have: one malformed
    field refuses its entry by name, instead of stopping the import with a traceback halfway through."""
    def number(value, where: str) -> None:
        if value is not None and not is_finite_number(value):
            raise TansakuError(f"'{where}' is not a number ({str(value)[:40]!r})")

    def array(value, shape: tuple | None, where: str) -> None:
        """`shape` None: a non-empty list."""
        if value is None:
            return
        try:
            matrix = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            matrix = np.full(1, np.nan)  # refused below, as a NaN would be
        fits = matrix.shape == shape if shape else matrix.ndim == 1 and len(matrix) > 0
        if not fits or not np.isfinite(matrix).all():
            wanted = "x".join(map(str, shape)) + " array" if shape else "non-empty list"
            raise TansakuError(f"'{where}' is not a {wanted} of finite numbers ({str(value)[:40]!r})")

    for block in ("spacegroup", "dielectric", "born_effective_charge", "phonon"):
        if data.get(block) is not None and not isinstance(data[block], dict):
            raise TansakuError(f"'{block}' is not an object ({str(data[block])[:40]!r})")
    spacegroup = data.get("spacegroup") or {}
    if "number" in spacegroup and not (isinstance(spacegroup["number"], int) and 1 <= spacegroup["number"] <= 230
                                       and isinstance(spacegroup.get("symbol"), str)):
        raise TansakuError(f"'spacegroup' needs a number from 1 to 230 and a symbol ({str(spacegroup)[:60]!r})")
    number(data.get("band_gap"), "band_gap")
    dielectric = data.get("dielectric") or {}
    for name in ("epsilon_electronic", "epsilon_ionic"):
        array(dielectric.get(name), (3, 3), f"dielectric.{name}")
        number(dielectric.get(f"{name}_avg"), f"dielectric.{name}_avg")
    born = data.get("born_effective_charge") or {}
    array(born.get("tensors"), (sites, 3, 3), "born_effective_charge.tensors")
    number(born.get("avg_abs_trace"), "born_effective_charge.avg_abs_trace")
    phonon = data.get("phonon") or {}
    array(phonon.get("frequency"), None, "phonon.frequency")
    number(phonon.get("lowest_freq"), "phonon.lowest_freq")


def _store_properties(session, material, data: dict, report: ImportReport) -> None:
    def put(name, value, unit=None, tensor=None, extra=None):
        set_property(session, material, name, value, METHOD, unit=unit, tensor=tensor, extra=extra,
                     material_is_new=True)
        report.properties += 1

    if data.get("band_gap") is not None:
        put("band_gap", data["band_gap"], "eV", extra={"is_direct": data.get("is_direct")})
    dielectric = data.get("dielectric") or {}
    parts = {}
    for ours, theirs in (("eps_electronic", "epsilon_electronic"), ("eps_ionic", "epsilon_ionic")):
        if dielectric.get(theirs) is not None:
            tensor = dielectric[theirs]
            parts[ours] = (dielectric.get(f"{theirs}_avg", tensor_average(tensor)), np.asarray(tensor, float))
            put(ours, parts[ours][0], None, tensor)
    if len(parts) == 2:  # as `run dielectric` stores it: the static constant a high-k search asks for
        (e_avg, e_tensor), (i_avg, i_tensor) = parts["eps_electronic"], parts["eps_ionic"]
        put("eps_total", e_avg + i_avg, None, (e_tensor + i_tensor).tolist())
    born = data.get("born_effective_charge") or {}
    if born.get("tensors") is not None:
        put("born_charges", born.get("avg_abs_trace"), "e", born["tensors"])
    phonon = data.get("phonon") or {}
    if phonon.get("frequency") is not None:
        freqs = phonon["frequency"]
        put("gamma_frequencies", phonon.get("lowest_freq", min(freqs)), "THz", freqs)


def _import_entry(session, raw: RawEntry, report: ImportReport) -> None:
    """One entry in a savepoint: refused whole (its counts and warnings too) when anything in it is wrong."""
    entry = ImportReport()
    try:
        parsed = parse_entry(raw)
        with session.begin_nested():
            material, added = add_structure_material(
                session, parsed["structure"], SOURCE, parsed["id"], entry, parsed["spacegroup"]
            )
            if added:
                _store_properties(session, material, parsed["data"], entry)
    except TansakuError as exc:
        report.error(raw.name, str(exc).removeprefix(f"{raw.name}: "))
        return
    report.absorb(entry)


def import_oxi_diel_db(
    db: Database,
    location: str | Path | None = None,
    subset_file: Path | None = None,
    progress: Callable[[list], Iterator] | None = None,
) -> ImportReport:
    """Import every entry, each in a savepoint of a transaction per `BATCH` entries: a bad entry is reported and
    leaves nothing behind, and the database commits once per batch instead of once per entry."""
    bundle = load_bundle(location, subset_file)
    report = ImportReport()
    entries = bundle.entries
    shown = iter(progress(entries) if progress else entries)  # the bar counts an entry when the next one starts
    for start in range(0, len(entries), BATCH):
        with db.session() as session:
            for raw in entries[start:start + BATCH]:
                next(shown)
                _import_entry(session, raw, report)
    for _ in shown:  # the bar's last step
        pass
    if bundle.subset_ids:
        with db.session() as session:
            ids = []
            for source_id in bundle.subset_ids:
                material = get_material(session, SOURCE, source_id)
                if material is not None:
                    ids.append(material.id)
            add_to_subset(session, PAPER_SUBSET, ids)
    return report
