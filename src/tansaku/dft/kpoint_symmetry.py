"""Which k-points of a small grid around a band edge share their energies by symmetry.

A band mass is fitted to the energies on a 3x3x3 grid around an extremum k0. The crystal's rotations R that keep k0
where it is (R k0 = k0 up to a reciprocal lattice vector: the little group of k0), and time reversal (E(-k) = E(k)
without spin-orbit coupling), map the grid onto itself: E(k0 + R δ) = E(k0 + δ). pw.x then needs one point of each
class, not all 27 (4 at Γ of a cubic crystal), and the others take its energies.
"""

from __future__ import annotations

import numpy as np
from pymatgen.core import Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

SYMPREC = 1e-3  # Å: the tolerance spglib finds the rotations with (pw.x's own is 1e-6 in fractional coordinates)


def _cartesian_rotations(structure: Structure) -> list[np.ndarray]:
    """The point-group rotations of the crystal, in Cartesian coordinates of its own frame."""
    operations = SpacegroupAnalyzer(structure, symprec=SYMPREC).get_symmetry_operations(cartesian=True)
    return [op.rotation_matrix for op in operations]


def equivalent_offsets(structure: Structure, k0_frac: np.ndarray, offsets: np.ndarray,
                       time_reversal: bool = True) -> np.ndarray:
    """For each Cartesian offset (Å⁻¹, k = 2π-convention) from k0 (reciprocal basis), the index of the first offset
    it is equivalent to. `time_reversal` False where E(-k) = E(k) fails (spin-orbit coupling in a magnet; tansaku
    runs collinear spins without it, where each channel keeps it)."""
    lattice = structure.lattice.matrix
    reciprocal = structure.lattice.reciprocal_lattice.matrix
    k0 = np.asarray(k0_frac, float) @ reciprocal
    offsets = np.asarray(offsets, float)
    scale = max(float(np.abs(offsets).max()), 1e-12)
    rotations = _cartesian_rotations(structure)
    if time_reversal:
        rotations += [-r for r in rotations]
    parent = list(range(len(offsets)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for rotation in rotations:
        moved = (rotation @ k0 - k0) @ lattice.T / (2 * np.pi)  # in the reciprocal basis: must be whole numbers
        if np.abs(moved - np.round(moved)).max() > 1e-5:
            continue  # not in the little group of k0
        images = offsets @ rotation.T
        for i, image in enumerate(images):
            match = np.flatnonzero(np.linalg.norm(offsets - image, axis=1) < 1e-6 * scale)
            if len(match):
                a, b = root(i), root(int(match[0]))
                parent[max(a, b)] = min(a, b)
    return np.array([root(i) for i in range(len(offsets))])
