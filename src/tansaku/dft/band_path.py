"""The high-symmetry path of a band structure, in the convention of Hinuma et al. (Comput. Mater. Sci. 128, 140
(2017)) as seekpath computes it: labels such as Γ-X-U|K-Γ-L-W-X that users know from the literature."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pymatgen.core import Structure

from tansaku import TansakuError

CONVENTION = "Hinuma et al. 2017 (seekpath)"


@dataclass(frozen=True)
class BandPath:
    frac: np.ndarray  # k-points in the computed cell's reciprocal basis
    distance: np.ndarray  # position along the path in Å⁻¹ (2π included); a jump between segments adds nothing
    labels: list[str]  # "" between high-symmetry points

    def ticks(self) -> tuple[list[float], list[str]]:
        """Positions and labels of the high-symmetry points; two labels at one position (a jump) become 'X|K'."""
        positions: list[float] = []
        names: list[str] = []
        for x, label in zip(self.distance, self.labels, strict=True):
            if not label:
                continue
            if positions and abs(positions[-1] - x) < 1e-9:
                if names[-1] != label:
                    names[-1] = f"{names[-1]}|{label}"
                continue
            positions.append(float(x))
            names.append(label)
        return positions, names


def band_path(structure: Structure, spacing: float = 0.025) -> BandPath:
    """Points every `spacing` Å⁻¹ (2π included) along the standard path of the structure's cell, which must be its
    standard primitive cell (what the workflows compute in: `standard_frame`). seekpath may still rotate that
    cell onto one it maps to itself (zinc-blende SiC: a 90° turn about x picks the other setting of F-43m); the
    path's points are then turned back into the cell's own frame."""
    import seekpath

    cell = (structure.lattice.matrix, structure.frac_coords, [site.specie.Z for site in structure])
    try:
        path = seekpath.get_explicit_k_path(cell, reference_distance=spacing)
    except Exception as exc:  # noqa: BLE001 - seekpath raises its own errors for cells it cannot handle
        raise TansakuError(f"{structure.composition.reduced_formula}: no standard band path ({exc})") from exc
    rotation = np.asarray(path["rotation_matrix"])  # r_standard = R r_cell, so k_cell = R^T k_standard
    if not _same_crystal(structure, path, rotation):
        raise TansakuError(f"{structure.composition.reduced_formula}: the cell is not the standard primitive cell "
                           "its band path is defined in (run with standardize=true)")
    k_cartesian = np.asarray(path["explicit_kpoints_abs"]) @ rotation  # rows: (R^T k)^T = k^T R
    frac = k_cartesian @ structure.lattice.matrix.T / (2 * np.pi)
    labels = ["Γ" if label == "GAMMA" else label for label in path["explicit_kpoints_labels"]]
    steps = np.linalg.norm(np.diff(k_cartesian, axis=0), axis=1)
    # seekpath lists a segment's end and the next one's start separately; across a jump they differ
    jumps = np.array([bool(a and b and a != b) for a, b in zip(labels[:-1], labels[1:], strict=True)])
    steps[jumps] = 0.0
    return BandPath(frac, np.concatenate([[0.0], np.cumsum(steps)]), labels)


def _same_crystal(structure: Structure, path: dict, rotation: np.ndarray) -> bool:
    """Whether seekpath's primitive cell, turned back by `rotation`, is the structure's own crystal: the same
    lattice (perhaps another basis of it) and the same atoms up to whole lattice vectors, so that its path's
    labels hold for this cell."""
    standard = np.asarray(path["primitive_lattice"])
    change = standard @ rotation @ np.linalg.inv(structure.lattice.matrix)  # rows: R^T a in our basis
    if not (np.allclose(change, np.round(change), atol=1e-4) and abs(abs(np.linalg.det(change)) - 1) < 1e-4):
        return False
    cartesian = np.asarray(path["primitive_positions"]) @ standard @ rotation
    frac = cartesian @ np.linalg.inv(structure.lattice.matrix)
    types = list(path["primitive_types"])
    ours = [(site.specie.Z, site.frac_coords) for site in structure]
    if len(frac) != len(ours):
        return False

    def matches(shift: np.ndarray) -> bool:  # every atom lands on one of ours (an origin shift moves no k-point)
        return all(any(z == z0 and np.allclose((f - shift - f0 + 0.5) % 1.0 - 0.5, 0.0, atol=1e-4)
                       for z0, f0 in ours) for z, f in zip(types, frac, strict=True))

    return any(matches(frac[0] - f0) for z0, f0 in ours if z0 == types[0])
