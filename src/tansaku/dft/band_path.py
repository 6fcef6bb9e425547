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
    standard primitive cell in the standard orientation (what the workflows compute in: `standard_frame`)."""
    import seekpath

    cell = (structure.lattice.matrix, structure.frac_coords, [site.specie.Z for site in structure])
    try:
        path = seekpath.get_explicit_k_path(cell, reference_distance=spacing)
    except Exception as exc:  # noqa: BLE001 - seekpath raises its own errors for cells it cannot handle
        raise TansakuError(f"{structure.composition.reduced_formula}: no standard band path ({exc})") from exc
    if not np.allclose(path["rotation_matrix"], np.eye(3), atol=1e-6):
        raise TansakuError(f"{structure.composition.reduced_formula}: the cell is not in the standard orientation "
                           "its band path is defined in (run with standardize=true)")
    k_cartesian = np.asarray(path["explicit_kpoints_abs"])  # same Cartesian frame as the cell: no rotation
    frac = k_cartesian @ structure.lattice.matrix.T / (2 * np.pi)
    labels = ["Γ" if label == "GAMMA" else label for label in path["explicit_kpoints_labels"]]
    steps = np.linalg.norm(np.diff(k_cartesian, axis=0), axis=1)
    # seekpath lists a segment's end and the next one's start separately; across a jump they differ
    jumps = np.array([bool(a and b and a != b) for a, b in zip(labels[:-1], labels[1:], strict=True)])
    steps[jumps] = 0.0
    return BandPath(frac, np.concatenate([[0.0], np.cumsum(steps)]), labels)
