"""Downloading official pseudopotential families into the cache, checked by SHA-256, unpacked safely."""

from __future__ import annotations

import json
import shutil
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tansaku import TansakuError
from tansaku.dft.pseudos import PseudoFamily, load_family
from tansaku.download import cache_dir, fetch


@dataclass(frozen=True)
class FamilySource:
    url: str
    sha256: str | None  # None: recorded at the first download and checked on every later use
    description: str


FAMILIES: dict[str, FamilySource] = {
    "pseudodojo-nc-pbe": FamilySource(
        "https://www.pseudo-dojo.org/pseudos/nc-sr-04_pbe_standard_upf.tgz", None,
        "PseudoDojo v0.4 norm-conserving scalar-relativistic PBE, standard accuracy (UPF)",
    ),
    "sssp-pbesol": FamilySource(
        "https://archive.materialscloud.org/record/file?record_id=1732&filename=SSSP_1.3.0_PBEsol_efficiency.tar.gz",
        None, "SSSP 1.3 PBEsol efficiency (mixed NC/US/PAW; cutoffs in the family's JSON)",
    ),
}


def fetch_family(name: str, url: str | None = None, sha256: str | None = None) -> PseudoFamily:
    """Download (once) and unpack a family into the cache; returns it ready for --pseudo-dir."""
    if name not in FAMILIES and url is None:
        raise TansakuError(f"unknown pseudopotential family {name!r} (known: {', '.join(FAMILIES)}); "
                           "give --url for another one")
    source = FAMILIES.get(name)
    url = url or source.url
    sha256 = sha256 or (source.sha256 if source and url == source.url else None)
    archive = fetch(url, f"pseudos-{name}.archive", sha256)
    target = cache_dir() / "pseudos" / name
    if not target.exists():
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        _unpack(archive, staging, url)
        upfs = [p for p in staging.rglob("*") if p.suffix.lower() == ".upf"]
        if not upfs:
            shutil.rmtree(staging)
            raise TansakuError(f"{url}: the archive holds no UPF files")
        for path in upfs:  # flatten: one directory of UPF files
            if path.parent != staging:
                shutil.move(str(path), staging / path.name)
        for extra in staging.iterdir():
            if extra.is_dir():
                shutil.rmtree(extra)
        staging.rename(target)
    family = load_family(target)
    if not (target / "standard.json").exists():
        (target / "standard.json").write_text(json.dumps(family.files, indent=1, sort_keys=True))
    return family


def _unpack(archive: Path, destination: Path, url: str) -> None:
    """Extract, refusing members that would land outside the destination."""
    root = destination.resolve()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                if not (root / member).resolve().is_relative_to(root):
                    raise TansakuError(f"{url}: unsafe path in archive: {member}")
            zf.extractall(root)
        return
    try:
        with tarfile.open(archive) as tf:
            tf.extractall(root, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise TansakuError(f"{url}: not a tar or zip archive ({exc})") from exc
