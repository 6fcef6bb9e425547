"""Writing pw.x and ph.x inputs from a structure, settings and per-attempt overrides."""

from __future__ import annotations

from pathlib import Path

from pymatgen.core import Element, Structure

from tansaku.dft.magnetism import SpinSetup, spin_setup
from tansaku.dft.pseudos import PseudoFamily
from tansaku.dft.settings import DielectricSettings, kmesh

Namelists = dict[str, dict[str, object]]


def _value(value: object) -> str:
    if isinstance(value, bool):
        return ".true." if value else ".false."
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, float):
        return f"{value:.10g}"
    return str(value)


def render_namelists(namelists: Namelists) -> str:
    out = []
    for name, values in namelists.items():
        out.append(f"&{name}")
        out.extend(f"  {key} = {_value(val)}" for key, val in values.items() if val is not None)
        out.append("/")
    return "\n".join(out) + "\n"


def merge(namelists: Namelists, overrides: dict[str, dict] | None) -> Namelists:
    """Overrides as {namelist: {key: value}} applied on top (handlers use this to record what they change)."""
    merged = {name: dict(values) for name, values in namelists.items()}
    for name, values in (overrides or {}).items():
        merged.setdefault(name, {}).update(values)
    return merged


def number_of_electrons(structure: Structure, pseudos: PseudoFamily) -> float:
    return sum(pseudos.valence(site.specie.symbol) for site in structure)


def pw_input(
    structure: Structure,
    calculation: str,
    settings: DielectricSettings,
    pseudos: PseudoFamily,
    prefix: str,
    outdir: Path,
    overrides: dict[str, dict] | None = None,
) -> str:
    """A pw.x input: '(vc-)relax' (smeared occupations, robust for unknown gaps) or 'scf' (fixed, empty bands)."""
    species = sorted({site.specie.symbol for site in structure})
    ecutwfc = ecutwfc_for(structure, settings, pseudos)
    nelec = number_of_electrons(structure, pseudos)
    control = {
        "calculation": calculation, "prefix": prefix, "outdir": str(outdir), "pseudo_dir": str(pseudos.directory),
        "tprnfor": True, "tstress": True, "disk_io": "low",
    }
    if settings.max_seconds:
        control["max_seconds"] = float(settings.max_seconds)
    system: dict[str, object] = {
        "ibrav": 0, "nat": len(structure), "ntyp": len(species), "ecutwfc": ecutwfc,
        "ecutrho": ecutwfc * settings.ecutrho_factor, "input_dft": settings.functional,
    }
    system.update(hubbard_namelist(species, settings.hubbard_u))
    spin = spin_setup(structure, settings.spin)
    if spin is not None:
        system.update(spin_namelist(species, spin))
    relaxing = calculation in ("vc-relax", "relax")
    conv_thr = settings.relax_conv_thr_per_atom if relaxing else settings.conv_thr_per_atom
    electrons = {
        "conv_thr": conv_thr * len(structure), "mixing_beta": settings.mixing_beta,
        "electron_maxstep": settings.electron_maxstep,
    }
    namelists: Namelists = {"control": control, "system": system, "electrons": electrons}
    if relaxing:
        control.update(forc_conv_thr=settings.forc_conv_thr, nstep=settings.relax_nstep, etot_conv_thr=1e-6)
        system.update(occupations="smearing", smearing="gaussian", degauss=0.005)
        namelists["ions"] = {"ion_dynamics": "bfgs"}
        if calculation == "vc-relax":
            namelists["cell"] = {"cell_dynamics": "bfgs", "press_conv_thr": settings.press_conv_thr}
    else:
        moment = spin.total_magnetization if spin is not None else 0
        system.update(occupations="fixed", nbnd=(int(round(nelec)) + moment) // 2 + settings.extra_bands)
    namelists = merge(namelists, overrides)
    lines = [render_namelists(namelists), "ATOMIC_SPECIES"]
    for symbol in species:
        lines.append(f"  {symbol} {float(Element(symbol).atomic_mass):.6f} {pseudos.file_for(symbol)}")
    lines.append("CELL_PARAMETERS angstrom")
    lines.extend("  " + " ".join(f"{x:.10f}" for x in row) for row in structure.lattice.matrix)
    lines.append("ATOMIC_POSITIONS crystal")
    lines.extend(f"  {site.specie.symbol} " + " ".join(f"{x:.10f}" for x in site.frac_coords) for site in structure)
    mesh = kmesh(structure, settings.kspacing, settings.even_kmesh)
    lines.append("K_POINTS automatic")
    lines.append(f"  {mesh[0]} {mesh[1]} {mesh[2]} 0 0 0")
    return "\n".join(lines) + "\n"


def spin_namelist(species: list[str], spin: SpinSetup) -> dict[str, object]:
    """Two spins with the total moment fixed (what ph.x needs for an insulator), open-shell species magnetized."""
    values: dict[str, object] = {"nspin": 2, "tot_magnetization": spin.total_magnetization}
    for i, symbol in enumerate(species, 1):
        if symbol in spin.magnetic_species:
            values[f"starting_magnetization({i})"] = 0.5
    return values


def hubbard_namelist(species: list[str], hubbard_u: dict[str, float]) -> dict[str, object]:
    """Simplified (Dudarev) DFT+U on the species that have a U; QE picks the d or f shell by element."""
    values = {f"Hubbard_U({i})": hubbard_u[symbol] for i, symbol in enumerate(species, 1)
              if hubbard_u.get(symbol)}
    if not values:
        return {}
    return {"lda_plus_u": True, "lda_plus_u_kind": 0, **values}


def ecutwfc_for(structure: Structure, settings: DielectricSettings, pseudos: PseudoFamily) -> float:
    if settings.ecutwfc is not None:
        return float(settings.ecutwfc)
    hint = pseudos.cutoff_hint({site.specie.symbol for site in structure})
    return float(hint) if hint else settings.ecutwfc_default


def ecutfock_for(structure: Structure, settings: DielectricSettings, pseudos: PseudoFamily) -> float:
    """The exact exchange's cutoff (Ry): ecutfock_factor × ecutwfc."""
    return settings.ecutfock_factor * ecutwfc_for(structure, settings, pseudos)


def ph_input(
    settings: DielectricSettings, prefix: str, outdir: Path, fildyn: str, overrides: dict[str, dict] | None = None
) -> str:
    """ph.x at Γ with the electric-field (epsil) and phonon (trans) perturbations."""
    inputph = {
        "prefix": prefix, "outdir": str(outdir), "fildyn": fildyn, "tr2_ph": settings.tr2_ph,
        "epsil": True, "trans": True, "alpha_mix(1)": settings.alpha_mix,
    }
    if settings.niter_ph != 100:  # written only when not QE's default: finished steps' inputs stay as they were
        inputph["niter_ph"] = settings.niter_ph
    if settings.max_seconds:
        inputph["max_seconds"] = float(settings.max_seconds)
    namelists = merge({"inputph": inputph}, overrides)
    return "phonons at Gamma\n" + render_namelists(namelists) + "0.0 0.0 0.0\n"


def epsilon_input(prefix: str, outdir: Path, broadening_ev: float, max_ev: float, points: int) -> str:
    """An epsilon.x input: ε(ω) in the independent-particle approximation from 0 to max_ev, Lorentzian width
    broadening_ev (its interband term is a sum of Lorentz oscillators; `smeartype` only concerns the JDOS)."""
    return (f"&inputpp\n  prefix = '{prefix}'\n  outdir = '{outdir}'\n  calculation = 'eps'\n/\n"
            f"&energy_grid\n  smeartype = 'gauss'\n  intersmear = {broadening_ev}\n  wmin = 0.0\n"
            f"  wmax = {max_ev}\n  nw = {points}\n/\n")
