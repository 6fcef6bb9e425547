"""A table of element properties as one NumPy array, built once from pymatgen (and mendeleev where pymatgen
has no value, e.g. dipole polarizabilities), so descriptors are array lookups, not per-site Python calls."""

from __future__ import annotations

import re
import warnings
from functools import lru_cache

import numpy as np
from pymatgen.core import Element

MAX_Z = 103
ANIONS = frozenset({"O", "N", "F", "S", "Cl", "Se", "Br", "Te", "I", "P", "As", "H", "C"})

PYMATGEN_PROPERTIES = [
    "Z", "atomic_mass", "row", "group", "block", "X", "atomic_radius", "average_ionic_radius", "mendeleev_no",
    "melting_point", "thermal_conductivity", "molar_volume", "density_of_solid", "ionization_energy",
    "electron_affinity",
]
DERIVED_PROPERTIES = ["nsvalence", "npvalence", "ndvalence", "nfvalence", "nvalence", "nsunfilled", "npunfilled",
                      "ndunfilled", "nfunfilled", "nunfilled", "max_oxidation", "min_oxidation",
                      "is_transition_metal", "is_anion"]
MENDELEEV_PROPERTIES = ["dipole_polarizability", "covalent_radius_pyykko", "en_allen", "vdw_radius"]
PROPERTIES = PYMATGEN_PROPERTIES + DERIVED_PROPERTIES + MENDELEEV_PROPERTIES


def _number(value) -> float:
    if value is None:
        return np.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        match = re.match(r"[-\d.eE+]+", str(value))
        return float(match.group(0)) if match else np.nan


def _valence_counts(element: Element) -> list[float]:
    """Electrons in s, p, d, f orbitals outside the noble-gas core and the empty states beside them (Magpie's
    N*Valence and N*Unfilled definitions)."""
    structure = element.electronic_structure.split(".")
    counts = {"s": 0.0, "p": 0.0, "d": 0.0, "f": 0.0}
    for part in structure:
        match = re.fullmatch(r"\d+([spdf])(\d+)", part)
        if match:
            counts[match.group(1)] += float(match.group(2))
    # a filled d or f shell below the valence s/p shell does not take part in bonding for p-block elements
    if element.block == "p":
        counts["d"] = counts["f"] = 0.0
    values = [counts["s"], counts["p"], counts["d"], counts["f"]]
    # empty states left in each partly or fully occupied valence shell (Magpie's N*Unfilled): what can accept
    # electrons, i.e. how easily the ion is polarized and how covalent its bonds are
    unfilled = [capacity - n if n > 0 else 0.0 for n, capacity in zip(values, (2, 6, 10, 14), strict=True)]
    return [*values, sum(values), *unfilled, sum(unfilled)]


@lru_cache(maxsize=1)
def element_table() -> np.ndarray:
    """Array (MAX_Z + 1, len(PROPERTIES)); row Z holds element Z, NaN where a value is unknown."""
    table = np.full((MAX_Z + 1, len(PROPERTIES)), np.nan)
    block_index = {"s": 0.0, "p": 1.0, "d": 2.0, "f": 3.0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for z in range(1, MAX_Z + 1):
            el = Element.from_Z(z)
            row = []
            for name in PYMATGEN_PROPERTIES:
                if name == "block":
                    row.append(block_index.get(el.block, np.nan))
                elif name == "ionization_energy":
                    row.append(_number(el.ionization_energies[0]) if el.ionization_energies else np.nan)
                else:
                    try:
                        row.append(_number(getattr(el, name)))
                    except (AttributeError, ValueError, KeyError):
                        row.append(np.nan)
            oxidation = el.common_oxidation_states or el.oxidation_states or (0,)
            row += _valence_counts(el)
            row += [float(max(oxidation)), float(min(oxidation)), float(el.is_transition_metal),
                    float(el.symbol in ANIONS)]
            table[z, : len(row)] = row
    table[:, len(PYMATGEN_PROPERTIES) + len(DERIVED_PROPERTIES):] = _mendeleev_columns()
    return table


def _mendeleev_columns() -> np.ndarray:
    out = np.full((MAX_Z + 1, len(MENDELEEV_PROPERTIES)), np.nan)
    try:
        from mendeleev.fetch import fetch_table
    except ImportError:  # optional: the columns stay NaN and are dropped by the featurizer
        return out
    frame = fetch_table("elements").set_index("atomic_number")
    for j, name in enumerate(MENDELEEV_PROPERTIES):
        for z, value in frame[name].items():
            if z <= MAX_Z:
                out[int(z), j] = _number(value)
    return out


@lru_cache(maxsize=1)
def symbol_to_z() -> dict[str, int]:
    return {Element.from_Z(z).symbol: z for z in range(1, MAX_Z + 1)}
