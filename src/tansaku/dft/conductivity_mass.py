"""Conductivity (transport) effective masses from a uniform-mesh band structure, through BoltzTraP2.

The conductivity mass tensor of a carrier type is n e² (σ/τ)⁻¹ at a temperature and carrier concentration, with σ/τ
the constant-relaxation-time conductivity: the mass a Drude model needs to give the material's conductivity, which
weighs every band near the edge by how many carriers it holds (heavy and light holes together, non-parabolicity,
several valleys). BoltzTraP2 interpolates the bands (smoothed Fourier fit) and does the Fermi integrals; this module
chooses the bands, the chemical potential for the concentration, and the units.
"""

from __future__ import annotations

import copy
import logging
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import scipy.constants as const

from tansaku import TansakuError
from tansaku.dft.band_edges import spin_channels

HARTREE_EV = const.physical_constants["Hartree energy in eV"][0]
WINDOW_EV = 1.0  # bands with an energy within this of a band edge take part
BIN_EV = 1e-3  # density-of-states histogram bins: well below kT at room temperature


@dataclass(frozen=True)
class ConductivityMasses:
    temperature: float  # K
    concentration: float  # cm⁻³, of each carrier type in turn
    electrons: np.ndarray  # 3x3 tensor, electron masses, Cartesian frame of the cell it was computed in
    holes: np.ndarray
    lpfac: int
    k_points: int  # irreducible k-points the interpolation was fitted to
    channels: dict[str, ConductivityMasses] = field(default_factory=dict)  # spin-polarized: each channel alone

    @staticmethod
    def average(tensor: np.ndarray) -> float:
        """Mean of the eigenvalues (for a cubic crystal, the one mass there is)."""
        return float(np.linalg.eigvalsh((tensor + tensor.T) / 2).mean())

    def sides(self) -> dict:
        return {side: {"tensor": getattr(self, side).round(5).tolist(),
                       "eigenvalues": np.linalg.eigvalsh((getattr(self, side) + getattr(self, side).T) / 2)
                       .round(5).tolist(), "average": round(self.average(getattr(self, side)), 5)}
                for side in ("electrons", "holes")}

    def as_dict(self) -> dict:
        return {"temperature_k": self.temperature, "concentration_cm3": self.concentration, "lpfac": self.lpfac,
                "k_points": self.k_points, "method": "BoltzTraP2, constant relaxation time: n e² (σ/τ)⁻¹",
                **self.sides(), **({"channels": {name: masses.sides() for name, masses in self.channels.items()}}
                                   if self.channels else {})}


def conductivity_masses(xml_dir: Path, vbm_ev: float, cbm_ev: float, temperature: float = 300.0,
                        concentration: float = 1e18, lpfac: int = 20, magnetization: float | None = None
                        ) -> ConductivityMasses:
    """Electron and hole conductivity masses from the pw.x XML file in `xml_dir` (a uniform mesh, symmetry-reduced),
    each with `concentration` carriers per cm³ of its own type at `temperature`. vbm/cbm (eV, the XML's energy
    zero) choose the bands: those within WINDOW_EV of an edge. Spin-polarized (total moment `magnetization`):
    both channels under one chemical potential, as the carriers share out between them, and each channel alone
    (its own edges, all carriers in it) under `channels`."""
    try:
        from BoltzTraP2 import dft
    except ImportError as exc:
        raise TansakuError("conductivity masses need BoltzTraP2: pip install 'tansaku[transport]' (it compiles; "
                           "Debian needs cmake and libgtest-dev)") from exc
    logging.getLogger("BoltzTraP2").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = dft.DFTData(str(xml_dir))
    both = _masses(data, xml_dir, vbm_ev, cbm_ev, temperature, concentration, lpfac)
    if data.dosweight == 2.0:
        return both
    channels = spin_channels(len(data.ebands), data.nelect, True, magnetization)
    if channels is None:
        raise TansakuError(f"{xml_dir}: a moment of {magnetization} μB fills no whole number of bands per channel")
    alone = {}
    for channel in channels:
        one = copy.copy(data)  # BoltzTraP2 lists the up bands, then the down ones, like pw.x
        one.ebands, one.nelect = data.ebands[channel.first:channel.first + channel.count], channel.occupied
        vbm, cbm = one.ebands[channel.occupied - 1].max(), one.ebands[channel.occupied].min()
        alone[channel.name] = _masses(one, xml_dir, vbm * HARTREE_EV, cbm * HARTREE_EV, temperature, concentration,
                                      lpfac)
    return replace(both, channels=alone)


def _masses(data, xml_dir: Path, vbm_ev: float, cbm_ev: float, temperature: float, concentration: float,
            lpfac: int) -> ConductivityMasses:
    """The masses of BoltzTraP2 data (its `dosweight` electrons per band: 2, or 1 for spin channels)."""
    from BoltzTraP2 import bandlib, fite, sphere
    from BoltzTraP2.units import Angstrom

    data = copy.copy(data)  # bandana drops the bands outside the window from the object it is called on
    kept = data.bandana(emin=(vbm_ev - WINDOW_EV) / HARTREE_EV, emax=(cbm_ev + WINDOW_EV) / HARTREE_EV)
    if not kept.any():
        raise TansakuError(f"{xml_dir}: no band within {WINDOW_EV} eV of the band edges")
    equivalences = sphere.get_equivalences(data.atoms, data.magmom, lpfac * len(data.kpoints))
    coefficients = fite.fitde3D(data, equivalences)
    eband, vvband, _ = fite.getBTPbands(equivalences, coefficients, data.get_lattvec())
    span_ev = (eband.max() - eband.min()) * HARTREE_EV
    epsilon, dos, vvdos, _ = bandlib.BTPDOS(eband, vvband, npts=max(2000, int(span_ev / BIN_EV)))
    volume_a3 = data.atoms.get_volume()
    masses = {}
    for side, carriers in (("holes", concentration), ("electrons", -concentration)):
        electrons_left = data.nelect - carriers * volume_a3 * 1e-24  # fewer electrons than neutral: holes
        mu = bandlib.solve_for_mu(epsilon, dos, electrons_left, temperature, data.dosweight, refine=True,
                                  try_center=False)
        n, l0, l1, l2, _ = bandlib.fermiintegrals(epsilon, dos, vvdos, mur=np.array([mu]), Tr=np.array([temperature]),
                                                  dosweight=data.dosweight)
        sigma = bandlib.calc_Onsager_coefficients(l0, l1, l2, np.array([mu]), np.array([temperature]),
                                                  volume_a3 * Angstrom**3)[0][0, 0]  # σ/τ, S m⁻¹ s⁻¹
        per_m3 = abs(n[0, 0] + data.nelect) / (volume_a3 * 1e-30)
        masses[side] = per_m3 * const.e**2 * np.linalg.inv(sigma) / const.m_e
    return ConductivityMasses(temperature, concentration, masses["electrons"], masses["holes"], lpfac,
                              len(data.kpoints))
