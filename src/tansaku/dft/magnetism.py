"""Spin polarization for oxides with open-shell cations: a ferromagnetic, high-spin start with a fixed moment.

Why fixed: ph.x computes ε∞ and Born charges only for insulators with fixed occupations, and pw.x allows fixed
occupations with two spins only when the total moment is given (`tot_magnetization`). We take the moment of
every open-shell cation filled by Hund's rule (Fe3+ d5: 5 μB, Ni2+ d8: 2 μB; mixed valence counted per state,
Fe3O4 = Fe2+ + 2 Fe3+: 14 μB per formula unit), aligned ferromagnetically, the
usual high-throughput starting point (antiferromagnetic orders need supercells and are not tried).
"""

from __future__ import annotations

from dataclasses import dataclass

from pymatgen.core import Structure

from tansaku import TansakuError
from tansaku.chemistry.oxidation import high_spin_unpaired, open_shells

SPIN_MODES = ("auto", "off")


@dataclass(frozen=True)
class SpinSetup:
    """Total moment of the cell (μB, an integer) and the species that start magnetized."""

    total_magnetization: int
    magnetic_species: tuple[str, ...]


def check_spin_mode(mode: object) -> None:
    if mode not in SPIN_MODES:
        raise TansakuError(f"spin={mode!r}: choose auto (ferromagnetic high spin when a cation has an open d or f "
                           "shell) or off (always spin-unpolarized)")


def spin_setup(structure: Structure, mode: str) -> SpinSetup | None:
    """None for a non-magnetic run: mode 'off', or no cation with a partly filled d or f shell."""
    check_spin_mode(mode)
    if mode == "off":
        return None
    composition = structure.composition
    shells = open_shells(composition.reduced_formula)
    if not shells:
        return None
    units = composition.num_atoms / composition.reduced_composition.num_atoms  # formula units in the cell
    moment = sum(round(amount * units) * high_spin_unpaired(n, full) for _, _, amount, _, n, full in shells)
    return SpinSetup(int(moment), tuple(sorted({symbol for symbol, *_ in shells})))
