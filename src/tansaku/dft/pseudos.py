"""Pseudopotential families: a directory plus an element → file map, with checksums and cutoff hints."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from pymatgen.core import Element

from tansaku import TansakuError
from tansaku.files import unreadable


@dataclass
class PseudoFamily:
    directory: Path
    files: dict[str, str]  # element symbol → file name

    @property
    def name(self) -> str:
        return self.directory.name

    def file_for(self, element: str) -> str:
        if element not in self.files:
            raise TansakuError(f"no pseudopotential for {element} in family {self.name} ({self.directory})")
        return self.files[element]

    def path_for(self, element: str) -> Path:
        """The element's UPF file; a missing or empty file (a broken download) is refused here, for every use."""
        path = self.directory / self.file_for(element)
        if not path.is_file() or path.stat().st_size == 0:
            state = "missing" if not path.is_file() else "empty"
            raise TansakuError(f"{path}: the pseudopotential file for {element} in family {self.name} is {state} "
                               "(a broken download?); fetch the family again")
        return path

    def check_covers(self, elements, where: str) -> None:
        missing = sorted(set(elements) - set(self.files))
        if missing:
            raise TansakuError(
                f"{where}: no pseudopotential for {', '.join(missing)} in family {self.name} ({self.directory})"
            )
        for element in sorted(set(elements)):
            try:
                self.path_for(element)
            except TansakuError as exc:
                raise TansakuError(f"{where}: {exc}") from None

    def checksums(self, elements) -> dict[str, str]:
        """SHA-256 of each file used, for provenance (each file hashed once per process)."""
        return {el: _sha256(self.path_for(el)) for el in sorted(set(elements))}

    def cutoff_hint(self, elements) -> float | None:
        """Largest suggested wavefunction cutoff (Ry) in the UPF headers of these elements, if any says one."""
        hints = [h for el in set(elements) if (h := _upf_cutoff(self.path_for(el)))]
        return max(hints) if hints else None

    def valence(self, element: str) -> float:
        path = self.path_for(element)
        text = path.read_text(errors="replace")[:200_000]
        match = re.search(r'z_valence="\s*([-\d.Ee+]+)"', text) or re.search(r"([\d.]+)\s+Z valence", text)
        if not match:
            raise TansakuError(f"{path}: no z_valence in the UPF header")
        return float(match.group(1))


@lru_cache(maxsize=512)
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _upf_cutoff(path: Path) -> float | None:
    text = path.read_text(errors="replace")[:200_000]
    match = re.search(r'wfc_cutoff="\s*([\d.Ee+]+)"', text) or re.search(
        r"[Ss]uggested minimum cutoff for wavefunctions:\s*([\d.]+)\s*Ry", text
    )
    return float(match.group(1)) if match and float(match.group(1)) > 0 else None


def load_family(directory: str | Path | None = None) -> PseudoFamily:
    """The family at `directory`, else $TANSAKU_PSEUDO_DIR. standard.json maps elements; else file names do."""
    directory = directory or os.environ.get("TANSAKU_PSEUDO_DIR")
    if not directory:
        raise TansakuError("no pseudopotentials: pass --pseudo-dir or set $TANSAKU_PSEUDO_DIR")
    directory = Path(directory).expanduser().resolve()
    if not directory.is_dir():
        raise TansakuError(f"{directory}: pseudopotential directory does not exist")
    mapping = directory / "standard.json"
    if mapping.exists():
        files = _element_map(mapping)
    else:
        files = {}
        for path in sorted(directory.iterdir()):
            if path.suffix.lower() != ".upf":
                continue
            symbol = re.split(r"[._\-]", path.name)[0].capitalize()
            if Element.is_valid_symbol(symbol):
                files.setdefault(symbol, path.name)
    absent = [name for name in files.values() if not (directory / name).is_file()]
    if absent:
        raise TansakuError(f"{directory}: the element map names missing files: {', '.join(absent[:5])}")
    if not files:
        raise TansakuError(f"{directory}: no UPF files found")
    return PseudoFamily(directory, files)


def _element_map(path: Path) -> dict[str, str]:
    """standard.json: element symbol → UPF file name; a file that cannot be read or is not such a map is refused."""
    try:
        files = json.loads(path.read_text())
    except OSError as exc:
        raise TansakuError(f"{path}: {unreadable(exc)}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TansakuError(f"{path}: malformed JSON ({exc})") from exc
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise TansakuError(f"{path}: expected a JSON object mapping element symbols to UPF file names")
    return files
