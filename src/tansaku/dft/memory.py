"""How much memory a hybrid-functional pw.x run needs, before it runs: enough to refuse a run that would not fit.

With ACE, pw.x keeps every occupied orbital, in real space on the exact-exchange FFT grid (set by ecutfock), at
every k+q point of the meshes: occupied bands × k+q points × FFT points × 16 bytes, shared among the MPI
processes. That buffer dwarfs the rest. Calibrated on MgO (standard preset: 8 occupied bands, 512 k+q points,
36³ FFT points, 2 processes): the buffer formula gives 1.53 GB per process, pw.x printed 1.51 GB as its
estimate, and each process's resident memory reached 3.1 GB. Temporary copies in the exchange operator about
double the buffer, so the estimate is twice it plus 0.2 GB per process for the program itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Structure

from tansaku.dft.magnetism import spin_setup
from tansaku.dft.pseudos import PseudoFamily
from tansaku.dft.qe.inputs import ecutfock_for, number_of_electrons
from tansaku.dft.settings import DielectricSettings, exchange_q_mesh, irreducible_points, kmesh

BOHR = 0.529177210903  # Å
BUFFER_FACTOR = 2.0  # resident memory over the exact-exchange buffer (MgO, measured)
PROGRAM_GB = 0.2  # per process


def good_fft_order(n: int) -> int:
    """The smallest size ≥ n whose only prime factors are 2, 3 and 5 (the FFT sizes pw.x picks)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def fft_grid(structure: Structure, cutoff_ry: float) -> tuple[int, int, int]:
    """pw.x's real-space grid for a density-like cutoff: along each cell vector 2 ⌊√E |a| / 2π⌋ + 1 points
    (E in Ry, |a| in bohr), rounded up to a good FFT size."""
    lengths = np.linalg.norm(structure.lattice.matrix, axis=1) / BOHR
    return tuple(good_fft_order(2 * int(math.sqrt(cutoff_ry) * a / (2 * math.pi)) + 1) for a in lengths)


def k_plus_q_points(structure: Structure, k_mesh: tuple[int, int, int], q_mesh: list[int]) -> int:
    """Distinct k+q points: k over the irreducible points of the Γ-centred k-mesh, q over the q-mesh."""
    q = np.array(np.meshgrid(*(np.arange(n) / n for n in q_mesh), indexing="ij")).reshape(3, -1).T
    points = (irreducible_points(structure, k_mesh)[:, None, :] + q[None, :, :]).reshape(-1, 3)
    common = int(np.lcm.reduce(list(k_mesh) + list(q_mesh)))  # every point is a whole multiple of 1/common
    return len(np.unique(np.round(points * common).astype(int) % common, axis=0))


@dataclass
class HybridMemory:
    gb_per_process: float
    processes: int
    occupied: int
    k_plus_q: int
    fft: tuple[int, int, int]
    q_mesh: list[int]

    @property
    def total_gb(self) -> float:
        return self.gb_per_process * self.processes

    def describe(self) -> str:
        return (f"about {self.total_gb:.1f} GB ({self.gb_per_process:.1f} GB in each of {self.processes} MPI "
                f"processes: the exact exchange holds {self.occupied} occupied bands at {self.k_plus_q} k+q points "
                f"on a {'x'.join(map(str, self.fft))} FFT grid)")


def hybrid_memory(structure: Structure, settings: DielectricSettings, pseudos: PseudoFamily, processes: int
                  ) -> HybridMemory:
    """The estimate for a hybrid run of this cell with these settings (a spin-polarized one holds both channels)."""
    k_mesh = kmesh(structure, settings.kspacing, settings.even_kmesh)
    q_mesh = exchange_q_mesh(k_mesh, settings.hybrid_q_divisor)
    fft = fft_grid(structure, ecutfock_for(structure, settings, pseudos))
    electrons = number_of_electrons(structure, pseudos)
    spin = spin_setup(structure, settings.spin)
    moment = spin.total_magnetization if spin is not None else 0
    # spin-polarized: each channel's occupied orbitals, (N + M) / 2 and (N - M) / 2; else N / 2
    occupied = math.ceil((electrons + moment) / 2) + (math.ceil((electrons - moment) / 2) if spin else 0)
    k_plus_q = k_plus_q_points(structure, k_mesh, q_mesh)
    buffer_gb = occupied * k_plus_q * float(np.prod(fft)) * 16 / 1e9
    return HybridMemory(BUFFER_FACTOR * buffer_gb / processes + PROGRAM_GB, processes, occupied, k_plus_q, fft,
                        q_mesh)


def machine_memory_gb() -> float | None:
    """This machine's memory (MemTotal), or None where /proc/meminfo is not there to read."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        return None
    return None
