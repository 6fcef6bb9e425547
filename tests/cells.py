"""Test crystals with their sites written out. pymatgen's Structure.from_spacegroup rebuilds the space group's
operations on every call: 1.6 s for each Fm-3m cell and 0.5 s for F-43m here, and the suite builds dozens. These
give the same conventional cells (rock salt's sites in from_spacegroup's order; the others' within a species in
another order)."""

from __future__ import annotations

from pymatgen.core import Lattice, Structure

FCC = [(0.0, 0.0, 0.0), (0.5, 0.5, 0.0), (0.5, 0.0, 0.5), (0.0, 0.5, 0.5)]


def face_centred(a: float, basis: list[tuple[str, tuple[float, float, float]]]) -> Structure:
    """The cubic cell of side `a` with each (species, position) of the basis repeated at the four FCC points."""
    species, coords = [], []
    for element, offset in basis:
        for point in FCC:
            species.append(element)
            coords.append([(p + o) % 1.0 for p, o in zip(point, offset, strict=True)])
    return Structure(Lattice.cubic(a), species, coords)


def rocksalt(a: float, cation: str, anion: str = "O") -> Structure:
    """Fm-3m, cation at 4a and anion at 4b: from_spacegroup("Fm-3m", ..., [[0, 0, 0], [0.5, 0.5, 0.5]])."""
    return face_centred(a, [(cation, (0.0, 0.0, 0.0)), (anion, (0.5, 0.5, 0.5))])


def zinc_blende(a: float, cation: str, anion: str) -> Structure:
    """F-43m, cation at 4a and anion at 4c: from_spacegroup("F-43m", ..., [[0, 0, 0], [0.25, 0.25, 0.25]])."""
    return face_centred(a, [(cation, (0.0, 0.0, 0.0)), (anion, (0.25, 0.25, 0.25))])


def fluorite(a: float, cation: str, anion: str = "O") -> Structure:
    """Fm-3m, cation at 4a and anion at 8c: from_spacegroup("Fm-3m", ..., [[0, 0, 0], [0.25, 0.25, 0.25]])."""
    return face_centred(a, [(cation, (0.0, 0.0, 0.0)), (anion, (0.25, 0.25, 0.25)), (anion, (0.75, 0.75, 0.75))])
