"""Reading what pw.x and ph.x write: the XML data file, the Γ dynamical-matrix file, and known log errors."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pymatgen.core import Lattice, Structure

from tansaku import TansakuError
from tansaku.chemistry.structures import BOHR_TO_ANGSTROM, structure_from_pw_xml
from tansaku.dft.band_edges import channel_edges, spin_channels

HARTREE_TO_EV = 27.211386245988
RY_MASS_PER_AMU = 911.444243  # masses in ph.x files are in units of m_e/2


@dataclass
class BandGap:
    gap: float  # eV, negative when bands overlap
    direct: bool
    vbm: float
    cbm: float
    nelec: float

    @property
    def is_metal(self) -> bool:
        return self.gap <= 0


def _floats(text: str | None) -> np.ndarray:
    return np.array((text or "").split(), dtype=float)


def read_pw_xml(path: Path) -> dict:
    """Final structure, energy, convergence and eigenvalues from pw.x's XML data file."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise TansakuError(f"{path}: cannot read the pw.x XML ({exc})") from exc
    output = root.find("output")
    if output is None:
        raise TansakuError(f"{path}: the pw.x XML has no <output> (the run did not finish)")
    result: dict = {"structure": structure_from_pw_xml(output.find("atomic_structure"))}
    conv = output.find("convergence_info/scf_conv/convergence_achieved")
    result["scf_converged"] = conv is not None and conv.text.strip() == "true"
    opt = output.find("convergence_info/opt_conv/convergence_achieved")
    result["relax_converged"] = None if opt is None else opt.text.strip() == "true"
    etot = output.find("total_energy/etot")
    result["energy_ev"] = float(etot.text) * HARTREE_TO_EV if etot is not None else None
    bands = output.find("band_structure")
    if bands is not None:
        result["nelec"] = float(bands.findtext("nelec"))
        result["lsda"] = bands.findtext("lsda", "false").strip() == "true"
        # the moment the input fixed (a non-self-consistent run's output reports 0), else the one computed
        total = root.findtext("input/bands/tot_magnetization") or output.findtext("magnetization/total")
        result["magnetization"] = float(total) if result["lsda"] and total is not None else 0.0
        result["eigenvalues_ev"] = np.array(
            [_floats(k.findtext("eigenvalues")) for k in bands.findall("ks_energies")]
        ) * HARTREE_TO_EV
        result["kpoints"] = np.array([_floats(k.findtext("k_point")) for k in bands.findall("ks_energies")])
    return result


def band_gap(eigenvalues_ev: np.ndarray, nelec: float, lsda: bool = False, magnetization: float = 0.0) -> BandGap:
    """Gap between the highest occupied and lowest empty band over the k-mesh; spin-polarized (lsda, the total
    moment fixed), the smaller of the two channels' conduction minima above the larger of their valence maxima."""
    channels = spin_channels(np.asarray(eigenvalues_ev).shape[1], nelec, lsda, magnetization)
    if channels is None:
        return BandGap(0.0, False, float("nan"), float("nan"), nelec)
    edges, _, _ = channel_edges(eigenvalues_ev, channels)
    return BandGap(edges.gap, edges.is_direct, edges.vbm, edges.cbm, nelec)


@dataclass
class GammaDynamics:
    """What ph.x writes at Γ with epsil and trans: Φ (Ha/bohr²), ε∞, Z* (field, displacement), cell."""

    force_constants: np.ndarray  # (N, N, 3, 3) Hartree / bohr²
    eps_electronic: np.ndarray | None
    born_charges: np.ndarray | None  # (N, 3, 3)
    masses_amu: np.ndarray
    species: list[str]
    volume_bohr3: float


def read_dyn_gamma(path: Path) -> GammaDynamics:
    """Parse a ph.x dynamical-matrix file at q = 0 (QE's plain text format)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise TansakuError(f"{path}: cannot read the dynamical matrix ({exc})") from exc
    try:
        head = lines[2].split()
        ntyp, nat, ibrav = int(head[0]), int(head[1]), int(head[2])
        alat = float(head[3])
        row = 3
        if ibrav != 0:
            raise TansakuError(f"{path}: ibrav={ibrav}; tansaku writes ibrav=0 cells only")
        basis = np.array([lines[row + 1 + i].split() for i in range(3)], dtype=float)
        row += 4
        type_names, type_masses = {}, {}
        for i in range(ntyp):
            match = re.match(r"\s*(\d+)\s+'([^']+)'\s+(\S+)", lines[row + i])
            type_names[int(match.group(1))] = match.group(2).strip()
            type_masses[int(match.group(1))] = float(match.group(3)) / RY_MASS_PER_AMU
        row += ntyp
        types = [int(lines[row + i].split()[1]) for i in range(nat)]
        row += nat
        fc = np.zeros((nat, nat, 3, 3))
        start = next(i for i, line in enumerate(lines) if "Dynamical  Matrix in cartesian axes" in line)
        i = start + 1
        for _ in range(nat * nat):
            while not re.fullmatch(r"\s*\d+\s+\d+\s*", lines[i]):
                i += 1
            a, b = (int(x) - 1 for x in lines[i].split())
            for r in range(3):
                values = np.array(lines[i + 1 + r].split(), dtype=float)
                fc[a, b, r] = values[0::2]
            i += 4
    except (IndexError, ValueError, StopIteration, AttributeError) as exc:
        raise TansakuError(f"{path}: not a Γ dynamical-matrix file ({type(exc).__name__}: {exc})") from exc
    text = "\n".join(lines)
    eps = _block_after(text, "Dielectric Tensor:", 3)
    charges = None
    if "Effective Charges E-U" in text:
        part = text.split("Effective Charges E-U")[1]
        charges = np.array([_block_after(part, f"atom #{i + 1:>5}", 3) for i in range(nat)])
    return GammaDynamics(
        force_constants=fc / 2.0,  # Ry → Hartree
        eps_electronic=eps,
        born_charges=charges,
        masses_amu=np.array([type_masses[t] for t in types]),
        species=[type_names[t] for t in types],
        volume_bohr3=float(abs(np.linalg.det(basis)) * alat**3),
    )


def _block_after(text: str, marker: str, nrows: int) -> np.ndarray | None:
    if marker not in text:
        return None
    rows = [line for line in text.split(marker, 1)[1].splitlines() if line.strip()][:nrows]
    return np.array([row.split()[:3] for row in rows], dtype=float)


def read_epsilon(directory: Path, prefix: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Energies (eV) and the xx, yy, zz components of ε1 and ε2 (columns) that epsilon.x wrote in `directory`."""
    try:
        real = np.loadtxt(directory / f"epsr_{prefix}.dat")
        imaginary = np.loadtxt(directory / f"epsi_{prefix}.dat")
    except (OSError, ValueError) as exc:
        raise TansakuError(f"{directory}: cannot read epsilon.x's spectra ({exc})") from exc
    if real.shape != imaginary.shape or real.ndim != 2 or real.shape[1] != 4:
        raise TansakuError(f"{directory}: epsilon.x's spectra have unexpected shapes {real.shape}, {imaginary.shape}")
    return real[:, 0], real[:, 1:], imaginary[:, 1:]


EXX_STARTS = "EXX: now go back to refine exchange calculation"


def first_hybrid_eigenvalues(log: str) -> np.ndarray:
    """Eigenvalues (eV, k × bands) of the first diagonalization with exact exchange in a pw.x hybrid log printed
    with iprint=1: the hybrid Hamiltonian of the orbitals and density pw.x's semilocal start converged to, before
    any self-consistency (the non-self-consistent hybrid eigenvalues)."""
    if EXX_STARTS not in log:
        raise TansakuError("pw.x never switched on the exact exchange (no 'EXX: now go back' in its log)")
    after = log.split(EXX_STARTS, 1)[1]
    end = after.find("highest occupied, lowest unoccupied level")
    if end < 0:
        raise TansakuError("no eigenvalues after the exact exchange was switched on (was iprint=1 set?)")
    blocks = re.split(r"k =.*band energies \(ev\):", after[:end])[1:]
    if not blocks:
        raise TansakuError("no k-point blocks in the first hybrid iteration's eigenvalues")
    values = [[float(x) for x in re.findall(r"-?\d+\.\d+", block)] for block in blocks]
    if len({len(v) for v in values}) != 1:
        raise TansakuError("the first hybrid iteration's k-points list different numbers of bands")
    energies = np.array(values)
    if "SPIN DOWN" in after[:end]:  # spin-polarized: every k-point's up bands, then every k-point's down bands
        half = len(energies) // 2
        energies = np.hstack([energies[:half], energies[half:]])
    return energies


# Known failures in pw.x / ph.x logs, each mapped to a code that an error handler can fix.
ERROR_PATTERNS = {
    "scf_not_converged": r"convergence NOT achieved after|SCF convergence NOT achieved",
    "relax_max_steps": r"The maximum number of steps has been reached",
    "bfgs_failed": r"bfgs failed|history already reset at previous step: stopping|trust radius too small",
    "walltime": r"Maximum CPU time exceeded|maximum CPU time exceeded",
    "ph_not_converged": r"No convergence has been achieved",
    "ph_symmetry": r"Wrong classes for|divide_class",
    "cholesky": r"Error in routine [cr]diaghg|problems computing cholesky|S matrix not positive definite",
    "charge_wrong": r"charge is wrong",  # the cell collapsed: cutoff far too low for a variable-cell run
    "bands_not_converged": r"too many bands are not converged",
}


def qe_error_message(log: str) -> str | None:
    """The text of QE's 'Error in routine' box, which says more than the MPI abort noise after it."""
    match = re.search(r"Error in routine (\S+) \((-?\d+)\):\s*\n\s*(.+)", log)
    return f"{match.group(3).strip()} (routine {match.group(1)})" if match else None


def detect_errors(log_text: str) -> list[str]:
    """Codes of the known failures present in a log, in the order of ERROR_PATTERNS."""
    return [code for code, pattern in ERROR_PATTERNS.items() if re.search(pattern, log_text)]


def last_geometry(log: str, lattice: Lattice | None = None, natoms: int | None = None) -> Structure | None:
    """The last ATOMIC_POSITIONS (crystal) block a pw.x relaxation printed, in the CELL_PARAMETERS printed before
    it (a fixed-cell relaxation prints none: then `lattice`, the input cell). With `natoms`, a block cut short
    (the run was killed while writing it) is passed over for the one before."""
    cells = list(re.finditer(r"CELL_PARAMETERS \((alat=\s*([\d.]+)|angstrom|bohr)\)\n((?:.*\n){3})", log))
    blocks = list(re.finditer(r"ATOMIC_POSITIONS \(crystal\)\n((?:\s*[A-Z][a-z]?\w*\s+[-\d.Ee+]+\s+[-\d.Ee+]+\s+"
                              r"[-\d.Ee+]+.*\n)+)", log))
    lines = [block.group(1).strip().splitlines() for block in blocks]
    complete = [(b, rows) for b, rows in zip(blocks, lines, strict=True) if natoms is None or len(rows) == natoms]
    if not complete:
        return None
    block, rows = complete[-1]
    before = [cell for cell in cells if cell.start() < block.start()]
    if before:
        cell = before[-1]
        matrix = np.array([line.split()[:3] for line in cell.group(3).strip().splitlines()], dtype=float)
        if cell.group(2):
            matrix *= float(cell.group(2)) * BOHR_TO_ANGSTROM
        elif cell.group(1) == "bohr":
            matrix *= BOHR_TO_ANGSTROM
    elif lattice is not None:
        matrix = lattice.matrix
    else:
        return None
    species, coords = [], []
    for line in rows:
        parts = line.split()
        species.append(re.sub(r"\d+$", "", parts[0]))
        coords.append([float(x) for x in parts[1:4]])
    return Structure(Lattice(matrix), species, coords)


def code_version(log: str) -> str | None:
    """'PWSCF 6.7MaX' from the banner a QE program prints first, or None."""
    match = re.search(r"Program (\w+) v\.(\S+)", log)
    return f"{match.group(1)} {match.group(2)}" if match else None


def symmetry_operations(log: str) -> int | None:
    """How many symmetry operations pw.x found and kept ('48 Sym. Ops., with inversion, found'; 'No symmetry
    found' is the identity alone), or None when the log says neither."""
    match = re.search(r"(\d+)[ \t]+Sym\. Ops\.", log)
    if match:
        return int(match.group(1))
    return 1 if "No symmetry found" in log else None


def cpu_seconds(log: str) -> float | None:
    """CPU seconds of the first MPI process from the timing line a finished pw.x, ph.x or epsilon.x prints last
    ('PWSCF        :   1m46.25s CPU   1m52.60s WALL'; hours as '1h 2m'), or None when the run did not finish."""
    matches = re.findall(r"^\s*(?:PWSCF|PHONON|epsilon)\s*:\s*(.+?)CPU", log, re.MULTILINE)
    if not matches:
        return None
    text = matches[-1].replace(" ", "")
    parts = re.fullmatch(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:([\d.]+)s)?", text)
    if not parts or not any(parts.groups()):
        return None
    days, hours, minutes, seconds = (float(x) if x else 0.0 for x in parts.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def cpu_seconds_so_far(log: str) -> float | None:
    """CPU seconds a pw.x or ph.x run had used where its log ends: `cpu_seconds` of a finished run, else the last
    running total it printed (pw.x 'total cpu time spent up to now is', ph.x 'iter # 3 total cpu time :'), a
    lower bound on what a killed run would have cost; None when it printed neither."""
    totals = [float(x) for x in re.findall(r"total cpu time (?:spent up to now is|:)\s*([\d.]+)\s*secs", log)]
    known = [x for x in (cpu_seconds(log), max(totals, default=None)) if x is not None]
    return max(known, default=None)


def read_ph_dielectric(log: str) -> tuple[np.ndarray, np.ndarray]:
    """ε∞ (3×3) and the Born charges (atoms × 3 × 3, rows the field direction as in the log) that ph.x prints
    after its electric-field step, the only record of an `epsil` run without phonons (it writes no fildyn)."""
    marker = "Dielectric constant in cartesian axis"
    if marker not in log:
        raise TansakuError("ph.x printed no dielectric constant")
    part = log.rsplit(marker, 1)[1]
    eps = np.array(re.findall(r"\(\s*([-\d.]+)\s+([-\d.]+)\s+([-\d.]+)\s*\)", part)[:3], dtype=float)
    charges_part = part.split("Effective charges (d Force / dE) in cartesian axis", 1)
    if len(charges_part) < 2:
        raise TansakuError("ph.x printed no Born effective charges")
    rows = []
    for line in charges_part[1].splitlines():
        match = re.match(r"\s*E[xyz]\s+\(\s*([-\d.]+)\s+([-\d.]+)\s+([-\d.]+)\s*\)", line)
        if match:
            rows.append([float(x) for x in match.groups()])
        elif rows and line.strip() and not line.strip().startswith("atom"):
            break
    if eps.shape != (3, 3) or not rows or len(rows) % 3:
        raise TansakuError("ph.x's dielectric constant or Born charges are cut short")
    return eps, np.array(rows).reshape(-1, 3, 3)


def irreducible_k_points(log: str) -> int | None:
    """The number of k-points pw.x computes ('number of k points=    29'), after its symmetry reduction."""
    match = re.search(r"number of k points=\s*(\d+)", log)
    return int(match.group(1)) if match else None
