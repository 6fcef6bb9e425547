"""A cheap relaxation of generated candidates with the CHGNet potential, before anything reads their structure.

A substituted cell is the prototype's geometry with new ions and a lattice scaled by ionic radii: bonds of the
right average length, but forces and stress that a relaxed cell does not have. Descriptors read off the
potential (`lgbm-chgnet`'s block) measure exactly those forces, and on such cells its ε_ion predictions fall
apart (benchmarks/results/ml_chgnet_unseen.md); relaxing with the same potential first takes seconds per cell,
against the hours DFT would need. The result is a better starting guess, not a DFT structure: DFT relaxes
again.

The relaxation keeps the substituted cell's space group (ASE's FixSymmetry, as pw.x and VASP keep a cell's
symmetry when they relax it): left free, CHGNet's float32 forces moved atoms 0.001 Å to more than 0.01 Å off
their symmetric sites, so that three of the six NaScO2-type candidates of benchmarks/dft_candidates.py came out
monoclinic (Cm) at the DFT workflow's tolerance, and pw.x found 2 of R-3m's 12 operations: more k-points, and a
DFT relaxation locked in Cm. A candidate that wants to distort is caught later by DFT's imaginary modes.

Needs the optional dependency `chgnet` (and PyTorch): `pip install 'tansaku[mlip]'`.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from ase.constraints import FixSymmetry
from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from tansaku.features.mlip import MODEL, check_readable, potential

FMAX = 0.05  # eV/Å: forces left on every atom
SYMPREC = 0.01  # Å: the tolerance at which the substituted cell's symmetry is found and then kept
MAX_STEPS = 500  # FIRE steps; a cell still moving after these is kept, flagged as not converged


@dataclass
class Relaxed:
    structure: Structure
    steps: int
    max_force: float  # eV/Å, on the returned structure
    volume_change: float  # relaxed / given volume - 1
    converged: bool
    space_group: str  # kept from the given cell, or what is left of it after a relaxation without symmetry

    def record(self) -> dict:
        """What a stored candidate keeps of its relaxation (its `extra` data)."""
        return {"relaxed_by": f"chgnet-{MODEL}", "relax_steps": self.steps, "relax_max_force": self.max_force,
                "relax_volume_change": self.volume_change, "relax_converged": self.converged,
                "relax_space_group": self.space_group}


@lru_cache(maxsize=1)
def _optimizer():
    from chgnet.model import StructOptimizer

    with contextlib.redirect_stdout(io.StringIO()):  # it prints the device it chose
        return StructOptimizer(model=potential(), use_device="cpu")


def relax(structure: Structure, fmax: float = FMAX, max_steps: int = MAX_STEPS,
          keep_symmetry: bool = True) -> Relaxed:
    """Positions and cell relaxed with CHGNet (FIRE, cell through ASE's Fréchet filter) until every force is
    below `fmax` eV/Å or `max_steps` have passed; in the given cell's space group unless `keep_symmetry` is off."""
    check_readable(structure)
    atoms = AseAtomsAdaptor.get_atoms(structure)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # CHGNet prints its device
        warnings.simplefilter("ignore")
        if keep_symmetry:
            atoms.set_constraint(FixSymmetry(atoms, symprec=SYMPREC))
        result = _optimizer().relax(atoms, fmax=fmax, steps=max_steps, relax_cell=True, verbose=False)
    final: Structure = result["final_structure"]
    forces = np.asarray(result["trajectory"].forces[-1])
    max_force = float(np.linalg.norm(forces, axis=1).max())
    steps = len(result["trajectory"].energies) - 1
    final = Structure(final.lattice, final.species, final.frac_coords)  # without CHGNet's magmom site properties
    space_group = SpacegroupAnalyzer(final, symprec=SYMPREC).get_space_group_symbol()
    return Relaxed(final, steps, max_force, final.volume / structure.volume - 1, max_force <= fmax, space_group)


def relax_candidates(candidates: list, track=iter) -> list:
    """Each generated candidate's structure relaxed in place (its `relaxation` records how); the Refusals of the
    ones CHGNet could not relax (forces that blow up, say), which are dropped, while the rest go on."""
    from tansaku import TansakuError
    from tansaku.sources.generate import Refusal

    if candidates:
        potential()  # CHGNet missing: one message for the batch, not one refusal per candidate
    refused, kept = [], []
    for candidate in track(list(candidates)):
        try:
            relaxed = relax(candidate.structure)
            if not np.isfinite(relaxed.structure.lattice.matrix).all() or relaxed.structure.volume <= 0:
                raise TansakuError("the relaxation gave a degenerate cell")
        except (TansakuError, ValueError, RuntimeError) as error:
            refused.append(Refusal(candidate.formula, candidate.prototype, f"CHGNet relaxation failed: {error}"))
            continue
        candidate.structure, candidate.relaxation = relaxed.structure, relaxed.record()
        kept.append(candidate)
    candidates[:] = kept
    return refused
