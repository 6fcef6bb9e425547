"""Settings of the dielectric workflow and its presets; every field can be overridden."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace

import numpy as np
import spglib
from pymatgen.core import Element, Lattice, Structure

from tansaku import TansakuError
from tansaku.dft.magnetism import check_spin_mode
from tansaku.numbers import is_finite_number

HYBRID_MODES = ("none", "scf", "nsc", "both")
HYBRID_FUNCTIONALS = ("hse06", "ddh")  # HSE06, and the dielectric-dependent hybrid (α = 1/ε∞)


@dataclass(frozen=True)
class DielectricSettings:
    """Physics and numerics of relax → SCF → DFPT. Lengths Å, energies Ry as QE takes them."""

    functional: str = "pbesol"
    ecutwfc: float | None = None  # None: the pseudopotential family's hint, else ecutwfc_default
    ecutwfc_default: float = 80.0
    ecutrho_factor: float = 4.0  # norm-conserving: 4 × ecutwfc
    # Å⁻¹ (2π included), Γ-centred. 0.4: ε∞ as on 0.25 Å⁻¹ meshes at about a third of their k-points
    # (benchmarks/results/dft_kpoints.md, dft_reproduction.md). Even numbers put the zone-boundary points (X, L)
    # on the mesh: on odd meshes the rock salts' indirect gaps came out 0.1-0.17 eV too wide.
    kspacing: float = 0.4
    even_kmesh: bool = True
    # Automatic k-mesh: refine from the coarsest mesh until ε∞ changes by less than this fraction and the gap by
    # less than k_converge_gap_ev between two meshes (cheap SCF + electric-field-only ph.x probes), then run with
    # the coarser of the two. None: use kspacing as given.
    k_converge: float | None = None
    k_converge_gap_ev: float = 0.05
    k_coarsest: float = 0.6  # Å⁻¹, the first probe's spacing; each next one is 0.8× the last, down to 0.1
    # With a fixed kspacing, a material whose SCF gap is below small_gap_ev gets its mesh measured anyway, from
    # kspacing down, to small_gap_k_converge in ε∞: 0.4 Å⁻¹ put ZnO (PBEsol gap 0.66 eV) 48 % and BaTiO3 (1.8 eV)
    # 9 % above their 0.25 Å⁻¹ ε∞, while wide-gap oxides agreed to 0.6 % (dft_reproduction.md). 0: never.
    small_gap_ev: float = 2.0
    small_gap_k_converge: float = 0.01
    # The probes stop when two meshes agree, the finer refining the coarser in every direction: ε∞, the Born
    # charges and the gap come from the finer (its SCF and field-only ph.x), the force constants from the
    # displacements on the coarser one's SCF.
    # True: the force constants come from the displacements on the fixed mesh instead, a ground-state property
    # that may converge like the energy. BaTiO3: ε_ion 3.00 against 3.02 from the full ph.x on the refined 6x6x6
    # mesh, for 672 CPU s instead of 1802 + 56, but its soft modes moved 21 % (dft_split_mesh.md); under test on
    # more oxides before it becomes the default.
    small_gap_split: bool = False
    conv_thr_per_atom: float = 1e-12  # the SCF that ph.x starts from: DFPT wants a tight ground state
    relax_conv_thr_per_atom: float = 1e-10  # each relaxation step: forces and stress need far less
    relax: bool = True
    relax_cell: bool = True  # vc-relax; False relaxes positions only (cheap cutoffs give huge Pulay stress)
    forc_conv_thr: float = 1e-4  # Ry/bohr
    press_conv_thr: float = 0.2  # kbar
    relax_nstep: int = 100
    rerelax_volume_change: float = 0.05  # relax again when the cell volume changed by more than this
    extra_bands: int = 8
    band_spacing: float = 0.025  # Å⁻¹ (2π included) between points of the band-structure path (run electronic)
    mass_step: float = 0.03  # Å⁻¹ between the 3x3x3 k-points around a band edge that a band mass is fitted to
    # run electronic: a non-self-consistent run on this denser uniform mesh gives band edges off the SCF mesh and the
    # bands BoltzTraP2 interpolates for conductivity masses (at this temperature and carrier concentration)
    dense_kspacing: float = 0.2
    # False: no mass grid and no dense mesh (band edges from the path and the SCF mesh): a search on gaps alone
    masses: bool = True
    transport_temperature: float = 300.0  # K
    carrier_concentration: float = 1e18  # cm⁻³
    transport_lpfac: int = 20  # BoltzTraP2's interpolation: star functions per k-point
    # run electronic --optics: epsilon.x on a uniform mesh without symmetry (its requirement) at optics_kspacing, with
    # optics_band_factor × the occupied bands, from 0 to optics_max_ev eV. epsilon.x broadens each transition with
    # a Lorentzian of width optics_lorentzian (eV), kept narrow: its slow tails would put absorption below the gap;
    # tansaku then smooths ε2 with a Gaussian of standard deviation optics_broadening (eV)
    optics: bool = False
    optics_kspacing: float = 0.25
    optics_band_factor: float = 2.0
    optics_lorentzian: float = 0.01
    optics_broadening: float = 0.1
    optics_max_ev: float = 20.0
    absorption_threshold: float = 1e4  # cm⁻¹: the absorption onset is where α first reaches this
    # run electronic: hybrid gaps (HSE06 and the dielectric-dependent hybrid) as self-consistent pw.x runs ("scf"),
    # as hybrid eigenvalues of the PBE orbitals without self-consistency ("nsc", several times cheaper), both, or
    # not at all ("none"); the q-mesh of the exact exchange is the k-mesh divided by hybrid_q_divisor
    hybrid: str = "none"
    hybrid_functionals: str = "hse06,ddh"  # which hybrids: a campaign on the HSE06 gap need not pay for the DDH
    hybrid_q_divisor: int = 2
    # hybrid runs and the PBE SCF the nsc ones start from: converged far enough for a gap, not so far that pw.x's
    # restart check lowers the eigenvalue threshold below what Davidson reaches with exact exchange (1e-16 on MgO)
    hybrid_conv_thr_per_atom: float = 1e-9
    # ecutfock = factor × ecutwfc, between 1 and ecutrho_factor (pw.x refuses other values). 1: on MgO's HSE06 gap
    # (standard preset) 1, 2 and 4 agree to 2e-4 eV, and 1 costs a quarter of 4 (benchmarks/results/hybrid_levers.md)
    ecutfock_factor: float = 1.0
    # hybrid runs are refused before anything runs when their estimated memory (tansaku.dft.memory) exceeds this
    # (GB, all MPI processes together); None: this machine's memory (shared by the materials run at once) when
    # running locally, no check under SLURM
    max_memory_gb: float | None = None
    metal_gap_ev: float = 0.1
    electron_maxstep: int = 100
    mixing_beta: float = 0.7
    tr2_ph: float = 1e-14
    alpha_mix: float = 0.7
    niter_ph: int = 100  # ph.x's most linear-response iterations per perturbation (QE's own default)
    max_seconds: float | None = None  # pw.x/ph.x stop cleanly before this (walltime handling)
    max_attempts: int = 4
    standardize: bool = True  # standard primitive cell: QE then finds every symmetry (fewer k-points, stable ph.x)
    # Dudarev U (eV) on the d (4f: f) shell of these elements, the PBEsol+U convention of the reference database.
    hubbard_u: dict[str, float] = field(default_factory=dict)
    # auto: ferromagnetic high-spin run when a cation has an open d or f shell (Fe3+, Ni2+, Gd3+); off: never.
    spin: str = "auto"

    def __post_init__(self) -> None:
        check_spin_mode(self.spin)  # here, so that no preset, override or stored setting carries a bad mode
        if self.hybrid not in HYBRID_MODES:
            raise TansakuError(f"hybrid={self.hybrid!r}: choose scf (self-consistent HSE06 and DDH gaps), nsc (their "
                               "non-self-consistent eigenvalues on PBE orbitals), both, or none")
        unknown = sorted(set(self.hybrids()) - set(HYBRID_FUNCTIONALS)) or ([] if self.hybrids() else ["nothing"])
        if unknown:
            raise TansakuError(f"hybrid_functionals={self.hybrid_functionals!r}: {', '.join(unknown)} is not one of "
                               f"{', '.join(HYBRID_FUNCTIONALS)} (comma-separated)")
        if self.hybrid_q_divisor < 1:
            raise TansakuError(f"hybrid_q_divisor={self.hybrid_q_divisor}: it must be at least 1")
        if not 1 <= self.ecutfock_factor <= self.ecutrho_factor:
            raise TansakuError(f"ecutfock_factor={self.ecutfock_factor:g}: pw.x takes an exact-exchange cut-off "
                               f"between ecutwfc and ecutrho, a factor from 1 to {self.ecutrho_factor:g}")

    def hybrids(self) -> tuple[str, ...]:
        """The hybrid functionals to run, in hybrid_functionals' order."""
        return tuple(name.strip() for name in self.hybrid_functionals.split(",") if name.strip())

    def with_overrides(self, overrides: dict | None) -> DielectricSettings:
        if not overrides:
            return self
        known = {f.name: f for f in fields(self)}
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise TansakuError(f"unknown setting(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        if "hubbard_u" in overrides:
            overrides = {**overrides, "hubbard_u": parse_hubbard_u(overrides["hubbard_u"])}
        for name, value in overrides.items():
            _check_type(name, value, str(known[name].type))
        return replace(self, **overrides)

    def as_dict(self) -> dict:
        return asdict(self)

    def for_elements(self, elements) -> DielectricSettings:
        """The settings a material of these elements really runs with: a U on Zn leaves MgO's run unchanged."""
        return replace(self, hubbard_u={el: u for el, u in self.hubbard_u.items() if u and el in set(elements)})


def _check_type(name: str, value, annotation: str) -> None:
    """A setting's value of its declared kind (`masses=maybe` would otherwise pass as a true string)."""
    kinds = {part.strip() for part in annotation.split("|")}
    if value is None:
        ok = "None" in kinds
    elif isinstance(value, bool):
        ok = "bool" in kinds
    elif isinstance(value, int | float):
        ok = "float" in kinds or ("int" in kinds and isinstance(value, int))
        if ok and not is_finite_number(value):  # `--set kspacing=nan` reads as a float, and no mesh has nan points
            raise TansakuError(f"setting {name}: expected a finite number, got {value!r}")
    elif isinstance(value, str):
        ok = "str" in kinds
    else:
        ok = not kinds & {"bool", "int", "float", "str"}
    if not ok:
        wanted = " or ".join(sorted({"bool": "true or false"}.get(k, k) for k in kinds))
        raise TansakuError(f"setting {name}: expected {wanted}, got {value!r}")


PRESETS: dict[str, DielectricSettings] = {
    # Tiny and fast, for tests: MgO end to end in seconds; values only roughly right.
    "test": DielectricSettings(
        ecutwfc=55.0, kspacing=0.7, even_kmesh=True, conv_thr_per_atom=1e-10, forc_conv_thr=1e-3,
        relax_cell=False, relax_nstep=30, tr2_ph=1e-12, rerelax_volume_change=1.0, band_spacing=0.1,
        dense_kspacing=0.35, optics_kspacing=0.5,
        small_gap_ev=0.0,  # no k-mesh probes: tests and demos stay fast
    ),
    # Converged enough to compare with the reference database (see guides/dfpt-notes.md).
    "standard": DielectricSettings(),
}


# The Dudarev U (eV) of the relaxation set the reference database's authors use (Oba group; VASP, LDAUTYPE=2):
# d shells of Cr-Co 3, Ni-Zn 5, Eu 4f 5. `hubbard_u=reference` selects it, for results comparable with that data.
REFERENCE_HUBBARD_U: dict[str, float] = {
    "Cr": 3.0, "Mn": 3.0, "Fe": 3.0, "Co": 3.0, "Ni": 5.0, "Cu": 5.0, "Zn": 5.0, "Eu": 5.0,
}


def parse_hubbard_u(value: object) -> dict[str, float]:
    """'Zn:5,Cu:5' (as --set gives it), a mapping, 'reference', or None/''/'none' into {element: U in eV}."""
    if value in (None, "", "none"):
        return {}
    if value == "reference":
        return dict(REFERENCE_HUBBARD_U)
    if isinstance(value, str):
        items = []
        for part in value.split(","):
            symbol, sep, number = part.partition(":")
            if not sep:
                raise TansakuError(f"hubbard_u {value!r}: expected 'Element:U_eV,...', e.g. 'Zn:5,Cu:5'")
            items.append((symbol.strip(), number.strip()))
    elif isinstance(value, dict):
        items = list(value.items())
    else:
        raise TansakuError(f"hubbard_u: expected 'Element:U_eV,...' or a table, got {value!r}")
    out = {}
    for symbol, number in items:
        if not Element.is_valid_symbol(str(symbol)):
            raise TansakuError(f"hubbard_u: {symbol!r} is not an element")
        try:
            u = float(number)
        except (TypeError, ValueError):
            raise TansakuError(f"hubbard_u: U of {symbol} must be a number in eV, got {number!r}") from None
        if not is_finite_number(u) or u < 0:  # float('nan') and float('inf') parse
            raise TansakuError(f"hubbard_u: U of {symbol} must be a finite, non-negative number, got {u}")
        out[str(symbol)] = u
    return out


def preset(name: str, overrides: dict | None = None) -> DielectricSettings:
    if name not in PRESETS:
        raise TansakuError(f"unknown preset {name!r} (choose from {', '.join(PRESETS)})")
    return PRESETS[name].with_overrides(overrides)


def standard_frame(structure: Structure, symprec: float = 1e-3) -> tuple[Structure, np.ndarray]:
    """spglib's standardized primitive cell, symmetrized, and the rotation R that takes the input's Cartesian frame
    to it (r_standard = R r_input); the input and the identity when spglib gives up.

    pw.x looks for symmetry operations in its own Cartesian frame: a hexagonal or trigonal cell must have its
    c axis along z and a along x, a monoclinic one its unique axis along a Cartesian axis. spglib's standard
    orientation does both (pymatgen's Setyawan-Curtarolo primitive cell of a rhombohedral lattice does not: pw.x
    found 4 of NaInO2's 12 operations in it). Tensors computed in this frame go back with R^T T R.
    """
    cell = (structure.lattice.matrix, structure.frac_coords, [site.specie.Z for site in structure])
    try:
        dataset = spglib.get_symmetry_dataset(cell, symprec=symprec)
        lattice, positions, numbers = spglib.standardize_cell(cell, to_primitive=True, no_idealize=False,
                                                              symprec=symprec)
    except Exception:  # noqa: BLE001 - spglib gives up on some cells; run them as given
        return structure, np.eye(3)
    if dataset is None or lattice is None:
        return structure, np.eye(3)
    standard = Structure(Lattice(lattice), [Element.from_Z(int(z)) for z in numbers], positions)
    per_atom = standard.volume / len(standard) - structure.volume / len(structure)
    if len(standard) > len(structure) or abs(per_atom) > 1e-2 * structure.volume / len(structure):
        return structure, np.eye(3)
    rotation = dataset["std_rotation_matrix"] if isinstance(dataset, dict) else dataset.std_rotation_matrix
    return standard, np.asarray(rotation, dtype=float)  # spglib < 2.5 returns a dict


def standard_cell(structure: Structure, symprec: float = 1e-3) -> Structure:
    """The standardized primitive cell alone (`standard_frame` without the rotation)."""
    return standard_frame(structure, symprec)[0]


def to_input_frame(tensor, rotation: np.ndarray) -> np.ndarray:
    """A 3x3 tensor (or a stack of them, e.g. Born charges per atom) computed in the standard frame, expressed in
    the input structure's Cartesian frame: R^T T R."""
    return np.einsum("ji,...jk,kl->...il", rotation, np.asarray(tensor, dtype=float), rotation)


def irreducible_points(structure: Structure, mesh: tuple[int, int, int]) -> np.ndarray:
    """Fractional coordinates of the irreducible points of a Γ-centred mesh (spglib, time reversal included);
    the whole mesh when spglib gives up on the cell."""
    cell = (structure.lattice.matrix, structure.frac_coords, [site.specie.Z for site in structure])
    try:
        mapping, grid = spglib.get_ir_reciprocal_mesh(mesh, cell, is_shift=[0, 0, 0], symprec=1e-3)
    except Exception:  # noqa: BLE001 - spglib gives up on some cells
        grid = np.array(np.meshgrid(*(np.arange(n) for n in mesh), indexing="ij")).reshape(3, -1).T
        return grid / np.asarray(mesh, float)
    return grid[np.unique(mapping)] / np.asarray(mesh, float)


def exchange_q_mesh(k_mesh: tuple[int, int, int], divisor: int) -> list[int]:
    """The exact exchange's q-mesh: each k / divisor, or 1 where that does not divide k (pw.x needs it)."""
    def axis(k: int) -> int:
        q = max(1, k // divisor)
        return q if k % q == 0 else 1

    return [axis(k) for k in k_mesh]


def kmesh(structure: Structure, spacing: float, even: bool = True) -> tuple[int, int, int]:
    """Γ-centred mesh with at most `spacing` Å⁻¹ between points along each reciprocal vector (2π included)."""
    lengths = np.linalg.norm(structure.lattice.reciprocal_lattice.matrix, axis=1)
    mesh = []
    for length in lengths:
        n = max(1, math.ceil(length / spacing - 1e-9))
        if even and n % 2:
            n += 1
        mesh.append(n)
    return tuple(mesh)
