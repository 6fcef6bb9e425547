"""Ionic dielectric tensor from Born effective charges and Γ force constants (Gonze & Lee 1997).

ε_ion,αβ = (4π/Ω) Σ_m S_m,αβ / ω_m², S_m,αβ = Z̃_m,α Z̃_m,β, Z̃_m,α = Σ_κα' Z*_κ,αα' e_m,κα' / √M_κ,
over the optical modes of the mass-weighted force-constant matrix, in Hartree atomic units, after the
acoustic sum rule is imposed on charges and force constants.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

AMU_TO_ME = 1822.888486  # atomic mass unit in electron masses
HARTREE_TO_THZ = 6579.683920502  # ν (THz) = E (Ha) / h
IMAGINARY_THRESHOLD_THZ = 0.3  # |ν| below this counts as zero (numerical noise of acoustic modes)


@dataclass
class IonicDielectric:
    """The result and everything needed to judge it: frequencies, strengths, imaginary modes."""

    tensor: np.ndarray  # 3x3, dimensionless
    frequencies_thz: np.ndarray  # all 3N modes, negative = imaginary, acoustic included
    acoustic: np.ndarray  # indices of the three translation modes
    oscillator_strengths: np.ndarray  # (3N, 3, 3) in e²/amu
    imaginary_modes: list[int] = field(default_factory=list)  # optical modes with ν < -threshold

    @property
    def average(self) -> float:
        return float(np.mean(np.linalg.eigvalsh(self.tensor)))


def asr_born_charges(charges: np.ndarray) -> np.ndarray:
    """Charge neutrality: subtract the mean tensor so that Σ_κ Z*_κ = 0."""
    charges = np.asarray(charges, dtype=float)
    return charges - charges.mean(axis=0, keepdims=True)


def asr_force_constants(fc: np.ndarray) -> np.ndarray:
    """The 'simple' acoustic sum rule: each on-site block becomes minus the sum of the off-site blocks.

    fc has shape (N, N, 3, 3) (atom κ, atom κ', α, β). The matrix is symmetrized first, and the on-site
    blocks after, so that the result is symmetric and Σ_κ' Φ(κ,κ') = 0 for every κ.
    """
    fc = np.asarray(fc, dtype=float)
    fc = 0.5 * (fc + fc.transpose(1, 0, 3, 2))
    out = fc.copy()
    n = fc.shape[0]
    for k in range(n):
        off = fc[k].sum(axis=0) - fc[k, k]
        out[k, k] = -off
        out[k, k] = 0.5 * (out[k, k] + out[k, k].T)
    return out


def ionic_dielectric(
    force_constants: np.ndarray,
    born_charges: np.ndarray,
    masses_amu: np.ndarray,
    volume_bohr3: float,
    apply_asr: bool = True,
) -> IonicDielectric:
    """ε_ion from Φ (N,N,3,3) in Hartree/bohr², Z* (N,3,3) in e (Z*_κ,αβ: field α, displacement β), masses in amu."""
    fc = np.asarray(force_constants, dtype=float)
    z = np.asarray(born_charges, dtype=float)
    masses = np.asarray(masses_amu, dtype=float)
    n = len(masses)
    if fc.shape != (n, n, 3, 3) or z.shape != (n, 3, 3):
        raise ValueError(f"shapes do not match {n} atoms: force constants {fc.shape}, charges {z.shape}")
    if apply_asr:
        fc = asr_force_constants(fc)
        z = asr_born_charges(z)
    m = np.repeat(masses * AMU_TO_ME, 3)
    matrix = fc.transpose(0, 2, 1, 3).reshape(3 * n, 3 * n) / np.sqrt(np.outer(m, m))
    omega2, vectors = np.linalg.eigh(0.5 * (matrix + matrix.T))
    # The three modes closest to rigid translations are the acoustic ones.
    translations = np.zeros((3 * n, 3))
    for a in range(3):
        translations[a::3, a] = np.sqrt(m[a::3])
    translations /= np.linalg.norm(translations, axis=0)
    overlap = np.sum((vectors.T @ translations) ** 2, axis=1)
    acoustic = np.sort(np.argsort(overlap)[-3:])
    # Mode effective charges: Z̃_m,α = Σ_κβ Z*_κ,αβ e_m,κβ / √M_κ (e/√me)
    zt = np.einsum("kab,kbm->am", z, vectors.reshape(n, 3, 3 * n) / np.sqrt(m.reshape(n, 3, 1)))
    strengths = np.einsum("am,bm->mab", zt, zt)
    nu = np.sign(omega2) * np.sqrt(np.abs(omega2)) * HARTREE_TO_THZ
    tensor = np.zeros((3, 3))
    imaginary = []
    for mode in range(3 * n):
        if mode in acoustic:
            continue
        if nu[mode] < -IMAGINARY_THRESHOLD_THZ:
            imaginary.append(mode)
            continue
        if abs(nu[mode]) <= IMAGINARY_THRESHOLD_THZ:
            continue
        tensor += strengths[mode] / omega2[mode]
    tensor *= 4 * np.pi / volume_bohr3
    return IonicDielectric(
        tensor=0.5 * (tensor + tensor.T),
        frequencies_thz=nu,
        acoustic=acoustic,
        oscillator_strengths=strengths * AMU_TO_ME,
        imaginary_modes=imaginary,
    )


def isotropic_born_charge(born_charges) -> float:
    """The scalar stored as `born_charges`: the mean over atoms of |Tr Z*| / 3 (e), the isotropic Born charge
    (MgO ≈ 2). The reference database's 'avg_abs_trace' is this number, so computed and imported values agree."""
    z = np.asarray(born_charges, dtype=float)
    return float(np.mean(np.abs(np.trace(z, axis1=1, axis2=2)) / 3))
