"""Band edges, band masses and optics on bands and spectra known exactly (no DFT): what `run electronic` will
read its numbers with."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from tansaku import TansakuError
from tansaku.dft.band_edges import HBAR2_OVER_2ME, band_edges, band_mass
from tansaku.dft.optics import (
    absorption_coefficient,
    absorption_onset,
    f_sum,
    kramers_kronig_eps1,
    scissor,
)
from tests.cells import rocksalt


def grid_around(k0, half_width=0.08, n=7) -> np.ndarray:
    axis = np.linspace(-half_width, half_width, n)
    return np.array(np.meshgrid(axis, axis, axis, indexing="ij")).reshape(3, -1).T + np.asarray(k0)


def parabolic(k, k0, masses, rotation, e0=0.0, hole=False):
    """E = E0 ± (ħ²/2mₑ) δkᵀ R diag(1/m) Rᵀ δk: an anisotropic band with principal axes turned by R."""
    inverse = rotation @ np.diag(1.0 / np.asarray(masses)) @ rotation.T
    delta = k - k0
    curvature = HBAR2_OVER_2ME * np.einsum("ni,ij,nj->n", delta, inverse, delta)
    return e0 - curvature if hole else e0 + curvature


def test_an_anisotropic_electron_valley_gives_back_its_masses_and_axes():
    rotation = Rotation.from_euler("zyx", [30, 20, 10], degrees=True).as_matrix()
    k0 = np.array([0.2, -0.1, 0.3])
    true_k0 = k0 + np.array([0.004, -0.003, 0.002])  # the minimum lies between sampled points
    k = grid_around(k0)
    mass = band_mass(k, parabolic(k, true_k0, [0.3, 0.5, 1.2], rotation), k0, window_ev=0.5)
    assert mass.principal == pytest.approx([0.3, 0.5, 1.2], rel=1e-6)
    expected = rotation @ np.diag([0.3, 0.5, 1.2]) @ rotation.T
    assert mass.tensor == pytest.approx(expected, rel=1e-6, abs=1e-9)
    assert mass.average == pytest.approx(3 / (1 / 0.3 + 1 / 0.5 + 1 / 1.2))
    assert mass.rms_error_ev < 1e-9 and mass.points > 10


def test_heavy_and_light_holes_are_fitted_band_by_band():
    k0 = np.zeros(3)
    k = grid_around(k0, 0.05)
    identity = np.eye(3)
    heavy = band_mass(k, parabolic(k, k0, [0.8] * 3, identity, 1.0, hole=True), k0, window_ev=0.2, hole=True)
    light = band_mass(k, parabolic(k, k0, [0.15] * 3, identity, 1.0, hole=True), k0, window_ev=0.2, hole=True)
    assert heavy.principal == pytest.approx([0.8] * 3) and light.principal == pytest.approx([0.15] * 3)


def test_a_mass_is_refused_where_the_band_has_no_extremum_or_too_few_points():
    k0 = np.zeros(3)
    k = grid_around(k0, 0.05)
    saddle = HBAR2_OVER_2ME * (k[:, 0] ** 2 / 0.3 + k[:, 1] ** 2 / 0.3 - k[:, 2] ** 2 / 0.5)
    with pytest.raises(TansakuError, match="not a minimum"):
        band_mass(k, saddle, k0, window_ev=1.0)
    steep = parabolic(k, k0, [0.01] * 3, np.eye(3))
    with pytest.raises(TansakuError, match="a mass fit needs at least 10"):
        band_mass(k, steep, k0, window_ev=0.001)


def test_band_edges_tell_direct_from_indirect_and_see_a_metal():
    k = np.linspace(0, 1, 21)  # a 1D path, index 0 = Γ
    valence = -0.5 * (k - 0.0) ** 2
    lower = valence - 2.0
    indirect_conduction = 1.2 + 0.8 * (k - 0.85) ** 2
    edges = band_edges(np.column_stack([lower, valence, indirect_conduction]), occupied_bands=2)
    assert edges.vbm_k == 0 and edges.cbm_k == 17 and not edges.is_direct
    assert edges.gap == pytest.approx(1.2) and edges.direct_gap > edges.gap
    direct = band_edges(np.column_stack([lower, valence, 1.5 + k**2]), occupied_bands=2)
    assert direct.is_direct and direct.gap == pytest.approx(1.5) and direct.direct_k == 0
    metal = band_edges(np.column_stack([lower, valence, -0.2 + k**2]), occupied_bands=2)
    assert metal.is_metal and metal.gap == pytest.approx(-0.2)
    with pytest.raises(TansakuError, match="do not fit"):
        band_edges(np.column_stack([lower, valence]), occupied_bands=2)


def lorentz(energy, e0=5.0, gamma=0.5, strength=30.0):
    denominator = (e0**2 - energy**2) ** 2 + (gamma * energy) ** 2
    return 1 + strength * (e0**2 - energy**2) / denominator, strength * gamma * energy / denominator


def test_kramers_kronig_and_the_f_sum_rule_hold_for_a_lorentz_oscillator():
    energy = np.linspace(0.0, 400.0, 20001)
    eps1, eps2 = lorentz(energy)
    assert f_sum(energy, eps2) == pytest.approx(np.pi * 30.0 / 2, rel=2e-3)
    window = energy <= 12.0
    rebuilt = kramers_kronig_eps1(energy, eps2)[window]
    assert rebuilt == pytest.approx(eps1[window], abs=0.02 * np.max(np.abs(eps1[window])))


def test_absorption_starts_at_the_direct_gap_and_the_scissor_moves_it_keeping_the_f_sum():
    energy = np.linspace(0.0, 60.0, 12001)
    gap = 2.0
    above = energy > gap
    eps2 = np.where(above, 40.0 * np.sqrt(np.clip(energy - gap, 0, None)) / np.maximum(energy, 1e-9) ** 2, 0.0)
    eps1 = kramers_kronig_eps1(energy, eps2)
    alpha = absorption_coefficient(energy, eps1, eps2)
    assert np.all(alpha[energy < gap] == 0.0) and np.all(alpha[above][:50] > 0)
    onset = absorption_onset(energy, alpha)
    assert gap < onset < gap + 0.3

    shifted = scissor(energy, eps2, 1.0)
    kept = energy <= energy[-1] - 1.0  # what the shift leaves on the grid
    assert f_sum(energy, shifted) == pytest.approx(f_sum(energy[kept], eps2[kept]), rel=1e-3)
    alpha_shifted = absorption_coefficient(energy, kramers_kronig_eps1(energy, shifted), shifted)
    assert absorption_onset(energy, alpha_shifted) == pytest.approx(onset + 1.0, abs=0.1)
    assert absorption_onset(energy, alpha, threshold=1e12) is None


def test_absorption_coefficient_units():
    """A medium with n = 2, κ = 0.1 at 2 eV absorbs α = 4πκ/λ: λ = hc/E = 619.9 nm → 2.03e4 cm⁻¹."""
    n, kappa, energy = 2.0, 0.1, np.array([2.0])
    eps1, eps2 = n**2 - kappa**2, 2 * n * kappa
    wavelength_cm = 2 * np.pi * 1.973269804e-5 / energy
    assert absorption_coefficient(energy, [eps1], [eps2]) == pytest.approx(4 * np.pi * kappa / wavelength_cm)


def test_absorption_figure_draws_both_spectra_and_their_onsets(tmp_path):
    from tansaku.plots.figures import absorption_spectrum

    energy = np.linspace(0, 10, 501)
    eps2 = np.where(energy > 3, 2.0 * np.sqrt(np.clip(energy - 3, 0, None)), 0.0)
    eps1 = kramers_kronig_eps1(energy, eps2)
    alpha = absorption_coefficient(energy, eps1, eps2)
    shifted = scissor(energy, eps2, 1.5)
    alpha_shifted = absorption_coefficient(energy, kramers_kronig_eps1(energy, shifted), shifted)
    optics = {"energy_ev": energy.tolist(), "alpha_cm": alpha.tolist(),
              "alpha_scissored_cm": alpha_shifted.tolist(),
              "onset_ev": absorption_onset(energy, alpha),
              "scissored_onset_ev": absorption_onset(energy, alpha_shifted),
              "threshold_cm": 1e4, "broadening_ev": 0.1, "scissor_from": "ddh-scf", "scissor_ev": 1.5}
    assert optics["scissored_onset_ev"] - optics["onset_ev"] == pytest.approx(1.5, abs=0.05)
    absorption_spectrum(optics, tmp_path / "a.png", "test")
    assert (tmp_path / "a.png").stat().st_size > 10_000


def lattice_band(structure, k_cart: np.ndarray) -> np.ndarray:
    """A periodic band with the lattice's full symmetry: Σ over the lattice vectors up to 8 Å of e^(-|R|) cos(k·R)."""
    frac = np.array(np.meshgrid(*[np.arange(-4, 5)] * 3, indexing="ij")).reshape(3, -1).T
    vectors = frac @ structure.lattice.matrix
    vectors = vectors[np.linalg.norm(vectors, axis=1) < 8.0]
    return np.cos(k_cart @ vectors.T) @ np.exp(-np.linalg.norm(vectors, axis=1))


@pytest.mark.parametrize("name", ["MgO", "GaN"])
def test_mass_grid_points_equivalent_by_symmetry_share_their_energies(name):
    """One point of each class is computed for a band mass; the others take its energies. Checked on a band with
    the lattice's symmetry at every high-symmetry point of the path, and on the numbers of classes."""
    from pymatgen.core import Lattice, Structure

    from tansaku.dft.band_path import band_path
    from tansaku.dft.kpoint_symmetry import equivalent_offsets
    from tansaku.dft.settings import standard_frame
    from tansaku.workflows.electronic import mass_points

    if name == "MgO":
        cell = rocksalt(4.2, "Mg", "O")
        expected = {"Γ": 4, "X": 6, "L": 6}  # Oh at Γ: the centre, 6 faces, 12 edges, 8 corners of the cube
    else:
        cell = Structure.from_spacegroup("P6_3mc", Lattice.hexagonal(3.19, 5.19), ["Ga", "N"],
                                         [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.377]])
        expected = {"Γ": 8, "A": 8}  # 6mm and time reversal: the hexagonal axes keep only part of a cubic grid
    cell = standard_frame(cell.get_primitive_structure())[0]
    path = band_path(cell, 0.1)
    counted = {}
    for label, k0 in zip(path.labels, path.frac, strict=True):
        if not label or label in counted:
            continue
        points, offsets = mass_points(cell, k0, 0.03)
        classes = equivalent_offsets(cell, k0, offsets)
        energies = lattice_band(cell, points @ cell.lattice.reciprocal_lattice.matrix)
        assert energies == pytest.approx(energies[classes], abs=1e-12), label
        assert all(classes[c] == c for c in classes)  # each class named by its first member
        counted[label] = len(set(classes))
    assert {label: counted[label] for label in expected} == expected
    # no symmetry but time reversal: at Γ, δ and -δ pair up (13 pairs and the centre); elsewhere all 27 differ
    cell.apply_strain([0.02, -0.03, 0.05])
    cell.translate_sites([1], [0.05, 0.09, 0.14])
    offsets = mass_points(cell, np.zeros(3), 0.03)[1]
    assert len(set(equivalent_offsets(cell, np.zeros(3), offsets))) == 14
    assert len(set(equivalent_offsets(cell, np.array([0.1, 0.2, 0.3]), offsets))) == 27
    assert len(set(equivalent_offsets(cell, np.zeros(3), offsets, time_reversal=False))) == 27
