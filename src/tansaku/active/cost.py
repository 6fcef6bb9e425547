"""What a dielectric workflow will cost, before it runs: a size from the cell and k-mesh, calibrated on finished runs.

size = k-points × plane waves × bands² × atoms: plane-wave DFT scales with k-points × plane waves × bands²
(plane waves ∝ volume × ecutwfc^1.5, bands ∝ electrons), and DFPT repeats that for 3 × atoms
perturbations. CPU hours = c × size^b; with fewer than four finished runs b = 1 and c is the median ratio of
CPU hours to size; with four or more, c and b come from a least-squares fit in log space (b kept in [0.5, 2]).
Before any run finishes, c is a prior measured on this project's CI-like machine (rock-salt SrS and BaS, 'test'
preset).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pymatgen.core import Structure

from tansaku.dft.pseudos import PseudoFamily
from tansaku.dft.qe.inputs import ecutwfc_for, number_of_electrons
from tansaku.dft.settings import DielectricSettings, kmesh, standard_cell

PRIOR_HOURS_PER_SIZE = 3.0e-11  # SrS and BaS, test preset, 2 MPI processes, this project's CI machine


def cost_size(structure: Structure, settings: DielectricSettings, pseudos: PseudoFamily) -> float:
    """The size of the cell the workflow will actually compute (its standard primitive cell by default)."""
    if settings.standardize:
        structure = standard_cell(structure)
    nk = float(np.prod(kmesh(structure, settings.kspacing, settings.even_kmesh)))
    ecut = ecutwfc_for(structure, settings, pseudos)
    plane_waves = structure.volume * ecut**1.5
    bands = number_of_electrons(structure, pseudos) / 2 + settings.extra_bands
    return nk * plane_waves * bands**2 * len(structure)


@dataclass
class CostModel:
    scale: float = PRIOR_HOURS_PER_SIZE
    exponent: float = 1.0
    n_runs: int = 0

    def hours(self, size: np.ndarray | float) -> np.ndarray:
        return self.scale * np.asarray(size, dtype=float) ** self.exponent

    @classmethod
    def calibrate(cls, sizes: list[float], hours: list[float]) -> CostModel:
        pairs = [(s, h) for s, h in zip(sizes, hours, strict=True) if s > 0 and h > 0]
        if not pairs:
            return cls()
        s, h = np.log(np.array(pairs)).T
        if len(pairs) < 4:
            return cls(float(np.exp(np.median(h - s))), 1.0, len(pairs))
        b = float(np.clip(np.polyfit(s, h, 1)[0], 0.5, 2.0))
        return cls(float(np.exp(np.median(h - b * s))), b, len(pairs))
