"""Band edges, gaps and band effective masses from eigenvalues on k-points: the physics of `run electronic`,
kept apart from any code that produced the eigenvalues so that it can be tested on bands known exactly.

Units: energies eV, k in Cartesian Å⁻¹ (including the 2π), masses in electron masses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tansaku import TansakuError

HBAR2_OVER_2ME = 3.80998212  # ħ²/2mₑ in eV Å²: E = 3.81 k² for a free electron with k in Å⁻¹


@dataclass(frozen=True)
class BandEdges:
    """Valence-band maximum and conduction-band minimum, where they are, and the gaps they make (a gap of zero or
    less: the bands overlap, a metal or semimetal)."""

    vbm: float
    cbm: float
    vbm_k: int  # index of the k-point
    cbm_k: int
    direct_gap: float  # the smallest vertical gap
    direct_k: int
    gap: float
    is_direct: bool

    @property
    def is_metal(self) -> bool:
        return self.gap <= 0


def edges_from(valence: np.ndarray, conduction: np.ndarray, direct_tolerance: float = 1e-4) -> BandEdges:
    """Edges from the highest occupied and the lowest empty energy at each k-point (eV)."""
    valence, conduction = np.asarray(valence, dtype=float), np.asarray(conduction, dtype=float)
    vbm_k, cbm_k = int(np.argmax(valence)), int(np.argmin(conduction))
    vertical = conduction - valence
    direct_k = int(np.argmin(vertical))
    gap = float(conduction[cbm_k] - valence[vbm_k])
    return BandEdges(vbm=float(valence[vbm_k]), cbm=float(conduction[cbm_k]), vbm_k=vbm_k, cbm_k=cbm_k,
                     direct_gap=float(vertical[direct_k]), direct_k=direct_k, gap=gap,
                     is_direct=float(vertical[direct_k]) - gap <= direct_tolerance)


def band_edges(eigenvalues: np.ndarray, occupied_bands: int, direct_tolerance: float = 1e-4) -> BandEdges:
    """Edges from eigenvalues (n_k × n_bands, eV) with the lowest `occupied_bands` bands filled."""
    energies = np.asarray(eigenvalues, dtype=float)
    if energies.ndim != 2 or not 0 < occupied_bands < energies.shape[1]:
        raise TansakuError(f"{occupied_bands} occupied bands do not fit eigenvalues of shape {energies.shape}")
    return edges_from(energies[:, occupied_bands - 1], energies[:, occupied_bands], direct_tolerance)


@dataclass(frozen=True)
class SpinChannel:
    """One spin channel's bands in an eigenvalue array (columns `first` to `first + count`), `occupied` of them
    filled. pw.x lists a spin-polarized run's spin-up bands, then its spin-down ones, at each k-point."""

    name: str  # "" when spin-unpolarized, else "up" or "down"
    first: int
    count: int
    occupied: int

    def energies(self, eigenvalues: np.ndarray) -> np.ndarray:
        return np.asarray(eigenvalues)[:, self.first:self.first + self.count]


def spin_channels(bands: int, nelec: float, lsda: bool = False, magnetization: float | None = 0.0
                  ) -> list[SpinChannel] | None:
    """The channels of `bands` columns holding `nelec` electrons: one doubly occupied set, or (lsda, total moment
    M fixed) (nelec + M) / 2 spin-up and (nelec - M) / 2 spin-down electrons. None for a fractional filling (no
    gap: a metal)."""
    if not lsda:
        if nelec % 2 > 1e-6:
            return None
        return [SpinChannel("", 0, bands, int(round(nelec)) // 2)]
    moment = magnetization or 0.0
    up, down = (nelec + moment) / 2, (nelec - moment) / 2
    if abs(up - round(up)) > 1e-3:
        return None
    half = bands // 2
    return [SpinChannel("up", 0, half, int(round(up))), SpinChannel("down", half, half, int(round(down)))]


def channel_edges(eigenvalues: np.ndarray, channels: list[SpinChannel]) -> tuple[BandEdges, str, str]:
    """Edges over all channels (the highest filled level of any channel, the lowest empty one of any), and the
    names of the channels holding the VBM and the CBM."""
    energies = np.asarray(eigenvalues, dtype=float)
    valence = np.full(len(energies), -np.inf)
    conduction = np.full(len(energies), np.inf)
    vbm_channel = cbm_channel = channels[0].name
    for channel in channels:
        block = channel.energies(energies)
        if block.shape[1] <= channel.occupied:
            raise TansakuError(f"only {block.shape[1]} bands for {channel.occupied} occupied: no empty band")
        if channel.occupied > 0:
            top = block[:, channel.occupied - 1]
            if top.max() > valence.max():
                vbm_channel = channel.name
            valence = np.maximum(valence, top)
        bottom = block[:, channel.occupied]
        if bottom.min() < conduction.min():
            cbm_channel = channel.name
        conduction = np.minimum(conduction, bottom)
    return edges_from(valence, conduction), vbm_channel, cbm_channel


@dataclass(frozen=True)
class BandMass:
    """The effective-mass tensor of one band at one extremum (electron masses; positive for electrons at a
    minimum and for holes at a maximum), its principal values, and how well a parabola fitted the band."""

    tensor: np.ndarray
    principal: np.ndarray  # eigenvalues, ascending
    points: int  # k-points inside the window that the fit used
    rms_error_ev: float

    @property
    def average(self) -> float:
        """The harmonic mean of the principal masses (the conductivity average of a single valley)."""
        return float(3.0 / np.sum(1.0 / self.principal))


def band_mass(k_cartesian: np.ndarray, energies: np.ndarray, k0: np.ndarray, window_ev: float = 0.05,
              hole: bool = False) -> BandMass:
    """Fit E(k) = E0 + g·δk + δkᵀ C δk to one band's energies within `window_ev` of its value at `k0` and turn the
    curvature into a mass tensor: (mₑ/m*)ᵢⱼ = Cᵢⱼ / (ħ²/2mₑ). The linear term absorbs an extremum that lies
    slightly off the sampled point. Needs at least ten points around k0 spread in three dimensions."""
    k = np.asarray(k_cartesian, dtype=float) - np.asarray(k0, dtype=float)
    e = np.asarray(energies, dtype=float)
    sign = -1.0 if hole else 1.0
    at_k0 = int(np.argmin(np.linalg.norm(k, axis=1)))
    inside = np.abs(e - e[at_k0]) <= window_ev
    k, e = k[inside], e[inside]
    if len(e) < 10:
        raise TansakuError(f"{len(e)} k-points within {window_ev} eV of the extremum: a mass fit needs at least 10 "
                           "(sample more points around it or widen the window)")
    x, y, z = k.T
    design = np.column_stack([np.ones_like(x), x, y, z, x * x, y * y, z * z, 2 * x * y, 2 * x * z, 2 * y * z])
    coefficients, *_ = np.linalg.lstsq(design, e, rcond=None)
    if np.linalg.matrix_rank(design) < design.shape[1]:
        raise TansakuError("the k-points around the extremum do not span three dimensions: no mass tensor")
    cxx, cyy, czz, cxy, cxz, cyz = coefficients[4:]
    curvature = np.array([[cxx, cxy, cxz], [cxy, cyy, cyz], [cxz, cyz, czz]])
    inverse_mass = sign * curvature / HBAR2_OVER_2ME
    principal_inverse = np.linalg.eigvalsh(inverse_mass)
    if np.any(principal_inverse <= 0):
        kind = "maximum" if hole else "minimum"
        raise TansakuError(f"the band is not a {kind} here (curvature eigenvalues {principal_inverse.round(4)})")
    tensor = np.linalg.inv(inverse_mass)
    residual = e - design @ coefficients
    return BandMass(tensor=tensor, principal=np.sort(np.linalg.eigvalsh(tensor)), points=int(len(e)),
                    rms_error_ev=float(np.sqrt(np.mean(residual**2))))
