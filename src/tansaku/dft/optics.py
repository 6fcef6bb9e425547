"""Optics from the frequency-dependent dielectric function: absorption coefficient, its onset, the scissor shift
to a better gap, and the two checks every ε(ω) must pass (Kramers-Kronig, the f-sum rule).

Energies in eV on a uniform, increasing grid starting at or near zero; α in cm⁻¹.
"""

from __future__ import annotations

import numpy as np

from tansaku import TansakuError

HBAR_C_EV_CM = 1.973269804e-5  # ħc in eV·cm
ONSET_ALPHA = 1e4  # cm⁻¹: where absorption is strong enough to count (a 1 µm film absorbs 63 %)


def _grid(energy: np.ndarray) -> float:
    step = np.diff(energy)
    if len(energy) < 3 or np.any(step <= 0) or not np.allclose(step, step[0], rtol=1e-6, atol=1e-12):
        raise TansakuError("the energy grid must be uniform and increasing, with at least three points")
    return float(step[0])


def absorption_coefficient(energy: np.ndarray, eps1: np.ndarray, eps2: np.ndarray) -> np.ndarray:
    """α(E) = 2 E κ / ħc with the extinction coefficient κ = √((|ε| − ε₁)/2)."""
    energy, eps1, eps2 = (np.asarray(a, dtype=float) for a in (energy, eps1, eps2))
    kappa = np.sqrt(np.maximum(0.0, (np.hypot(eps1, eps2) - eps1) / 2.0))
    return 2.0 * energy * kappa / HBAR_C_EV_CM


def absorption_onset(energy: np.ndarray, alpha: np.ndarray, threshold: float = ONSET_ALPHA) -> float | None:
    """The lowest energy where α reaches `threshold` (linear between grid points); None if it never does."""
    energy, alpha = np.asarray(energy, dtype=float), np.asarray(alpha, dtype=float)
    above = np.nonzero(alpha >= threshold)[0]
    if not len(above):
        return None
    i = int(above[0])
    if i == 0:
        return float(energy[0])
    fraction = (threshold - alpha[i - 1]) / (alpha[i] - alpha[i - 1])
    return float(energy[i - 1] + fraction * (energy[i] - energy[i - 1]))


def kramers_kronig_eps1(energy: np.ndarray, eps2: np.ndarray) -> np.ndarray:
    """ε₁(E) = 1 + (2/π) P∫ E′ ε₂(E′) / (E′² − E²) dE′ over the grid (the principal value by leaving out the
    singular point and using the symmetric neighbours: Maclaurin's method on alternate points)."""
    energy, eps2 = np.asarray(energy, dtype=float), np.asarray(eps2, dtype=float)
    step = _grid(energy)
    eps1 = np.ones_like(energy)
    index = np.arange(len(energy))
    for i, e in enumerate(energy):
        other = index[(index - i) % 2 == 1]  # points of the other parity: never the singular one
        terms = energy[other] * eps2[other] / (energy[other] ** 2 - e**2)
        eps1[i] += (2.0 / np.pi) * 2.0 * step * np.sum(terms)
    return eps1


def f_sum(energy: np.ndarray, eps2: np.ndarray) -> float:
    """∫ E ε₂(E) dE (eV²), which equals (π/2)(ħωₚ)² for the electrons that ε₂ describes."""
    energy, eps2 = np.asarray(energy, dtype=float), np.asarray(eps2, dtype=float)
    _grid(energy)
    return float(np.trapezoid(energy * eps2, energy))


def scissor(energy: np.ndarray, eps2: np.ndarray, shift_ev: float) -> np.ndarray:
    """ε₂ of the same transitions opened by `shift_ev` (from a semilocal to a hybrid gap): ε₂′(E) =
    ε₂(E − Δ)(E − Δ)/E, which keeps the f-sum. ε₁ follows from `kramers_kronig_eps1`."""
    energy, eps2 = np.asarray(energy, dtype=float), np.asarray(eps2, dtype=float)
    _grid(energy)
    source = energy - shift_ev
    moved = np.interp(source, energy, eps2, left=0.0, right=0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(energy > 0, source / energy, 0.0)
    return np.where(source > 0, moved * factor, 0.0)
