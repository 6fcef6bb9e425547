"""The ionic dielectric code against closed-form answers and symmetry requirements."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from tansaku.dft.ionic import AMU_TO_ME, HARTREE_TO_THZ, asr_born_charges, asr_force_constants, ionic_dielectric


def diatomic(k=0.2, z=2.0, masses=(24.3, 16.0)):
    fc = np.zeros((2, 2, 3, 3))
    fc[0, 0] = fc[1, 1] = k * np.eye(3)
    fc[0, 1] = fc[1, 0] = -k * np.eye(3)
    charges = np.array([z * np.eye(3), -z * np.eye(3)])
    return fc, charges, np.array(masses)


def test_rock_salt_model_matches_closed_form():
    """Two ions on springs k: ω_TO² = k/μ and ε_ion = 4π Z² / (Ω k), isotropic."""
    k, z, volume = 0.2, 2.0, 125.9
    fc, charges, masses = diatomic(k, z)
    result = ionic_dielectric(fc, charges, masses, volume)
    np.testing.assert_allclose(result.tensor, 4 * np.pi * z**2 / (volume * k) * np.eye(3), rtol=1e-10)
    mu = masses[0] * masses[1] / masses.sum() * AMU_TO_ME
    optical = np.delete(result.frequencies_thz, result.acoustic)
    np.testing.assert_allclose(optical, np.sqrt(k / mu) * HARTREE_TO_THZ, rtol=1e-10)
    assert result.imaginary_modes == []


def test_acoustic_sum_rule_repairs_broken_translation_invariance():
    fc, charges, masses = diatomic()
    broken = fc.copy()
    broken[0, 0] += 0.01 * np.eye(3)  # as a coarse XC grid does
    charges_broken = charges + 0.3 * np.eye(3)  # charge neutrality broken
    fixed = asr_force_constants(broken)
    np.testing.assert_allclose(fixed.sum(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(asr_born_charges(charges_broken).sum(axis=0), 0, atol=1e-12)
    result = ionic_dielectric(broken, charges_broken, masses, 100.0)
    np.testing.assert_allclose(np.take(result.frequencies_thz, result.acoustic), 0, atol=1e-6)


def random_crystal(n=4, seed=1):
    """A random but physical (symmetric, translation-invariant, stable) force-constant model."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(3 * n, 3 * n))
    matrix = a @ a.T * 0.05
    fc = asr_force_constants(matrix.reshape(n, 3, n, 3).transpose(0, 2, 1, 3))
    charges = asr_born_charges(rng.normal(size=(n, 3, 3)) + 2 * np.eye(3))
    masses = rng.uniform(10, 120, size=n)
    return fc, charges, masses


def test_permuting_atoms_changes_nothing():
    fc, charges, masses = random_crystal()
    order = np.array([2, 0, 3, 1])
    a = ionic_dielectric(fc, charges, masses, 300.0)
    b = ionic_dielectric(fc[np.ix_(order, order)], charges[order], masses[order], 300.0)
    np.testing.assert_allclose(a.tensor, b.tensor, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.sort(a.frequencies_thz), np.sort(b.frequencies_thz), atol=1e-8)


def test_tensor_rotates_with_the_cell():
    fc, charges, masses = random_crystal(seed=3)
    rot = Rotation.from_euler("zyx", [30, 40, 50], degrees=True).as_matrix()
    fc_rot = np.einsum("ai,klij,bj->klab", rot, fc, rot)
    charges_rot = np.einsum("ai,kij,bj->kab", rot, charges, rot)
    a = ionic_dielectric(fc, charges, masses, 300.0)
    b = ionic_dielectric(fc_rot, charges_rot, masses, 300.0)
    np.testing.assert_allclose(b.tensor, rot @ a.tensor @ rot.T, rtol=1e-8, atol=1e-10)
    assert a.average == pytest.approx(b.average, rel=1e-10)


def test_imaginary_modes_are_flagged_and_left_out():
    fc, charges, masses = diatomic(k=-0.05)  # an unstable optical mode
    result = ionic_dielectric(fc, charges, masses, 100.0)
    assert len(result.imaginary_modes) == 3
    assert np.all(result.frequencies_thz[result.imaginary_modes] < 0)
    np.testing.assert_allclose(result.tensor, 0)


def test_shape_mismatch_is_an_error():
    fc, charges, masses = diatomic()
    with pytest.raises(ValueError, match="shapes do not match 3 atoms"):
        ionic_dielectric(fc, charges, np.array([1.0, 2.0, 3.0]), 100.0)


def test_anisotropic_springs_and_non_symmetric_born_charges_keep_their_indices():
    """Two ions on springs K = diag(k1, k2, k3) with a non-symmetric Z* (field α, displacement β): the closed form
    is ε_ion = (4π/Ω) Z K⁻¹ Zᵀ. Reading Z* with its indices swapped gives (4π/Ω) Zᵀ K⁻¹ Z instead, which
    differs here; a cubic test cannot tell the two apart."""
    springs = np.array([0.12, 0.2, 0.35])
    z = np.array([[2.1, 0.6, 0.0], [-0.2, 1.7, 0.4], [0.3, 0.0, 2.6]])
    fc = np.zeros((2, 2, 3, 3))
    fc[0, 0] = fc[1, 1] = np.diag(springs)
    fc[0, 1] = fc[1, 0] = -np.diag(springs)
    volume = 140.0
    result = ionic_dielectric(fc, np.array([z, -z]), np.array([65.4, 16.0]), volume)
    expected = 4 * np.pi / volume * z @ np.diag(1 / springs) @ z.T
    swapped = 4 * np.pi / volume * z.T @ np.diag(1 / springs) @ z
    np.testing.assert_allclose(result.tensor, expected, rtol=1e-9)
    assert np.abs(expected - swapped).max() > 0.5  # the test can see a swap


def test_a_real_wurtzite_dynamical_matrix_is_read_index_by_index():
    """tests/data/beo_wurtzite_gamma.dyn: ph.x 6.7 at Γ for wurtzite BeO (P6_3mc, 4 atoms, test preset, c along z),
    made by `tansaku run dielectric` on mp-2542. The expected numbers were read off the file by eye: a uniaxial
    ε∞, and Born charges and force constants whose zz differs from xx, so a mis-ordered atom or axis, or a unit
    slip, changes the result (the non-symmetric Z* case is the closed-form test above)."""
    from pathlib import Path

    from tansaku.dft.qe.parsers import read_dyn_gamma

    dyn = read_dyn_gamma(Path(__file__).parent / "data" / "beo_wurtzite_gamma.dyn")
    assert dyn.species == ["Be", "Be", "O", "O"]
    np.testing.assert_allclose(dyn.masses_amu, [9.012182, 9.012182, 15.9994, 15.9994], rtol=1e-6)
    alat = 5.0945372  # bohr; cell vectors (1, 0, 0), (-1/2, √3/2, 0), (0, 0, 1.623877660) in alat
    assert dyn.volume_bohr3 == pytest.approx(alat**3 * 0.866025404 * 1.623877660, rel=1e-8)
    np.testing.assert_allclose(np.diag(dyn.eps_electronic), [3.203365249085, 3.203365248996, 3.183934488004])
    assert np.abs(dyn.eps_electronic - np.diag(np.diag(dyn.eps_electronic))).max() < 1e-9
    np.testing.assert_allclose(np.diag(dyn.born_charges[0]), [1.800520189037, 1.800520189126, 1.868130117947])
    np.testing.assert_allclose(np.diag(dyn.born_charges[3]), [-1.844795047976, -1.844795047660, -1.848167885551])
    # the file's force constants are in Ry/bohr² (block 1 1: xx 0.22113668, zz 0.35605200; block 1 4: zz
    # -0.12429162); we hold Hartree/bohr²
    assert dyn.force_constants[0, 0, 0, 0] == pytest.approx(0.22113668 / 2)
    assert dyn.force_constants[0, 0, 2, 2] == pytest.approx(0.35605200 / 2)
    assert dyn.force_constants[0, 3, 2, 2] == pytest.approx(-0.12429162 / 2)
    result = ionic_dielectric(dyn.force_constants, dyn.born_charges, dyn.masses_amu, dyn.volume_bohr3)
    optical = np.sort(np.delete(result.frequencies_thz, result.acoustic))
    # ph.x's own frequencies before the acoustic sum rule: 9.685 (E2), ... , 26.098 THz; the rule shifts them a
    # little, never by more than a THz at these settings
    np.testing.assert_allclose(optical[[0, -1]], [9.685, 26.098], atol=0.5)
    assert result.tensor[0, 0] == pytest.approx(result.tensor[1, 1]) and result.tensor[2, 2] > result.tensor[0, 0]
    assert result.average == pytest.approx(4.3425, abs=1e-3)  # what the workflow stored for this run
