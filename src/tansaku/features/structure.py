"""Structure descriptors: density and packing, neighbour-distance statistics and heterogeneity, coordination,
cation-polyhedron distortion, local property differences, bond-valence sums, Ewald energy, space group. One
neighbour list per structure (pymatgen's C implementation); everything after it is NumPy on arrays of bonds."""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
import spglib
from pymatgen.analysis.ewald import EwaldSummation
from pymatgen.core import Structure

from tansaku import TansakuError
from tansaku.chemistry.oxidation import anion_elements, guess_oxidation_states
from tansaku.chemistry.structures import check_ordered
from tansaku.features.base import MedianFilledFeaturizer
from tansaku.features.elements import MAX_Z, PROPERTIES, element_table, symbol_to_z

VERSION = "structure-3"
CUTOFF = 6.0  # Å, beyond any first shell of an oxide
SHELL = 1.2  # first shell: neighbours within 1.2 × the site's nearest distance
LOCAL_PROPERTIES = ("X", "row", "atomic_mass", "dipole_polarizability", "average_ionic_radius", "Z")
CRYSTAL_SYSTEMS = ((2, 1), (15, 2), (74, 3), (142, 4), (167, 5), (194, 6), (230, 7))
BOND_VALENCE_CUTOFF = 4.0  # Å: cation-anion bonds counted in bond-valence sums
BOND_VALENCE_B = 0.37  # Å, the universal softness of Brown's bond valence s = exp((R0 - R) / b)
UNDER_BONDED = 0.8  # a cation whose bond-valence sum is below this fraction of its charge rattles in its cage

NAMES = (
    ["density", "volume_per_atom", "packing_fraction"]
    + [f"{s}_nn_distance" for s in ("mean", "std", "min", "max")]
    + ["nn_distance_relative_variation", "first_shell_distance_variation_mean", "first_shell_distance_variation_max"]
    + [f"{s}_coordination" for s in ("mean", "std", "min", "max")]
    + ["cation_polyhedron_distortion_mean", "cation_polyhedron_distortion_max", "mean_cation_anion_distance",
       "min_anion_anion_distance"]
    + [f"local_difference_{p}_{s}" for p in LOCAL_PROPERTIES for s in ("mean", "std")]
    + ["ewald_energy_per_atom", "spacegroup_number", "crystal_system"]
    + [f"{s}_cation_bond_valence_ratio" for s in ("mean", "std", "min", "max")]
    + ["global_instability_index", "under_bonded_cation_fraction", "volume_per_anion"]
)


def _crystal_system(number: int) -> int:
    return next(system for limit, system in CRYSTAL_SYSTEMS if number <= limit)


def structure_descriptors(structure: Structure, ewald: bool = True) -> np.ndarray:
    check_ordered(structure, structure.composition.reduced_formula, "descriptors need an ordered cell")
    n = len(structure)
    table = element_table()
    z = np.array([symbol_to_z()[site.specie.symbol] for site in structure])
    props = table[z]
    radius = np.nan_to_num(props[:, PROPERTIES.index("atomic_radius")], nan=1.5)
    packing = (4 / 3 * np.pi * radius**3).sum() / structure.volume
    centers, neighbors, _, distances = structure.get_neighbor_list(CUTOFF)
    keep = distances > 1e-6
    centers, neighbors, distances = centers[keep], neighbors[keep], distances[keep]
    if len(distances) == 0:
        raise TansakuError(f"{structure.composition.reduced_formula}: no neighbours within {CUTOFF} Å")
    nearest = np.full(n, np.inf)
    np.minimum.at(nearest, centers, distances)
    shell = distances < SHELL * nearest[centers]
    c_s, n_s, d_s = centers[shell], neighbors[shell], distances[shell]
    coordination = np.bincount(c_s, minlength=n).astype(float)
    mean_shell = np.bincount(c_s, weights=d_s, minlength=n) / np.maximum(coordination, 1)
    deviation = np.bincount(c_s, weights=np.abs(d_s - mean_shell[c_s]), minlength=n) / np.maximum(coordination, 1)
    variation = deviation / mean_shell
    anions = anion_elements(structure.composition)
    is_anion = np.array([site.specie.symbol in anions for site in structure])
    cation_sites = ~is_anion
    distortion = variation[cation_sites] if cation_sites.any() else np.zeros(1)
    ca_bonds = shell & ~is_anion[centers] & is_anion[neighbors]
    mean_ca = distances[ca_bonds].mean() if ca_bonds.any() else np.nan
    aa = is_anion[centers] & is_anion[neighbors]
    min_aa = distances[aa].min() if aa.any() else np.nan
    local = []
    for prop in LOCAL_PROPERTIES:
        values = np.nan_to_num(props[:, PROPERTIES.index(prop)])
        per_site = np.bincount(c_s, weights=np.abs(values[c_s] - values[n_s]), minlength=n) / np.maximum(
            coordination, 1)
        local += [per_site.mean(), per_site.std()]
    bond_valence = _bond_valence_descriptors(structure, z, is_anion, centers, neighbors, distances)
    ewald_energy = _ewald(structure) if ewald else np.nan
    number = _spacegroup_number(structure)
    return np.array(
        [structure.density, structure.volume / n, packing,
         nearest.mean(), nearest.std(), nearest.min(), nearest.max(), nearest.std() / nearest.mean(),
         variation.mean(), variation.max(),
         coordination.mean(), coordination.std(), coordination.min(), coordination.max(),
         distortion.mean(), distortion.max(), mean_ca, min_aa, *local, ewald_energy, number,
         _crystal_system(number) if number else np.nan, *bond_valence]
    )


@lru_cache(maxsize=1)
def _bond_valence_parameters() -> tuple[np.ndarray, np.ndarray]:
    """O'Keeffe-Brese element parameters (r, c) indexed by Z, NaN where pymatgen has none."""
    from pymatgen.analysis.bond_valence import BV_PARAMS

    r, c = np.full(MAX_Z + 1, np.nan), np.full(MAX_Z + 1, np.nan)
    for element, values in BV_PARAMS.items():
        r[element.Z], c[element.Z] = values["r"], values["c"]
    return r, c


def _bond_valence_descriptors(structure: Structure, z: np.ndarray, is_anion: np.ndarray, centers: np.ndarray,
                              neighbors: np.ndarray, distances: np.ndarray) -> list[float]:
    """How well each cation fits its cage: bond-valence sum / formal charge (O'Keeffe-Brese R0, b = 0.37 Å).

    An under-bonded cation (ratio well below 1, as Ti in BaTiO3's cubic cage) sits on a flat or double-well
    potential and gives a soft polar mode, the main source of a large ionic dielectric constant. Also Salinas-
    Sanchez's global instability index over all sites and the volume per anion.
    """
    anion_count = int(is_anion.sum())
    volume_per_anion = structure.volume / anion_count if anion_count else np.nan
    undefined = [np.nan] * 6 + [volume_per_anion]
    states = guess_oxidation_states(structure.composition.reduced_formula)
    if states is None or not anion_count or is_anion.all():
        return undefined
    charge = np.abs([states[site.specie.symbol] for site in structure]).astype(float)
    r, c = _bond_valence_parameters()
    pair = ~is_anion[centers] & is_anion[neighbors] & (distances < BOND_VALENCE_CUTOFF)
    ri, rj, ci, cj = r[z[centers[pair]]], r[z[neighbors[pair]]], c[z[centers[pair]]], c[z[neighbors[pair]]]
    r0 = ri + rj - ri * rj * (np.sqrt(ci) - np.sqrt(cj)) ** 2 / (ci * ri + cj * rj)
    valence = np.exp((r0 - distances[pair]) / BOND_VALENCE_B)
    n = len(structure)
    # each cation-anion bond appears once from the cation's side; it adds to both ends
    sums = np.bincount(centers[pair], weights=valence, minlength=n) + np.bincount(
        neighbors[pair], weights=valence, minlength=n)
    unknown = np.isnan(r[z]) | np.isnan(c[z])
    sums[unknown] = np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (sums / charge)[~is_anion & (charge > 0)]
    ratio = ratio[np.isfinite(ratio)]
    if not len(ratio):
        return undefined
    instability = float(np.sqrt(np.nanmean((sums - charge) ** 2)))
    return [ratio.mean(), ratio.std(), ratio.min(), ratio.max(), instability, float(np.mean(ratio < UNDER_BONDED)),
            volume_per_anion]


def _ewald(structure: Structure) -> float:
    states = guess_oxidation_states(structure.composition.reduced_formula)
    if states is None:
        return np.nan
    decorated = structure.copy()
    decorated.add_oxidation_state_by_element(states)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return EwaldSummation(decorated, acc_factor=6.0).total_energy / len(structure)


def _spacegroup_number(structure: Structure) -> int:
    cell = (structure.lattice.matrix, structure.frac_coords, [site.specie.Z for site in structure])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = spglib.get_symmetry_dataset(cell, symprec=0.1)
    return int(dataset.number) if dataset is not None else 0


class StructureFeaturizer(MedianFilledFeaturizer):
    """Geometric and bonding descriptors of pymatgen Structures (use beside CompositionFeaturizer)."""

    def __init__(self, ewald: bool = True):
        self.ewald = ewald

    def names(self) -> list[str]:
        return list(NAMES)

    def raw(self, X) -> np.ndarray:
        rows = []
        for item in X:
            if not isinstance(item, Structure):
                raise TansakuError(f"structure descriptors need pymatgen Structures, got {type(item).__name__}")
            rows.append(structure_descriptors(item, self.ewald))
        if not rows:
            raise TansakuError("no structures to featurize")
        return np.array(rows)
