"""The electronic workflow (`run electronic`): the relaxation and SCF it shares with `run dielectric` (same
directories and states: a material is never relaxed twice for one set of settings); the PBEsol band structure
along the standard high-symmetry path; band masses from a small grid around the path's edges; a dense uniform mesh
for band edges off the path and BoltzTraP2's conductivity masses; hybrid gaps (HSE06 and the dielectric-dependent
hybrid, self-consistent or not); optionally epsilon.x's absorption. Every result is stored with its provenance.
"""

from __future__ import annotations

import importlib.util
import math
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
from pymatgen.core import Structure
from scipy.ndimage import gaussian_filter1d

from tansaku import TansakuError, __version__
from tansaku.dft.band_edges import BandEdges, SpinChannel, band_mass, channel_edges, edges_from, spin_channels
from tansaku.dft.band_path import CONVENTION, band_path
from tansaku.dft.conductivity_mass import conductivity_masses
from tansaku.dft.kpoint_symmetry import equivalent_offsets
from tansaku.dft.optics import absorption_coefficient, absorption_onset, kramers_kronig_eps1, scissor
from tansaku.dft.qe.inputs import epsilon_input, merge, pw_input
from tansaku.dft.qe.parsers import band_gap, read_epsilon, read_pw_xml
from tansaku.dft.settings import DielectricSettings, kmesh, to_input_frame
from tansaku.store.materials import set_property, tensor_average
from tansaku.store.tables import Material, utcnow
from tansaku.workflows.dielectric import check_insulator_setup, relax, scf_gap, with_scf_save
from tansaku.workflows.hybrid import NO_FORCES, check_hybrid_memory, hybrid_gaps
from tansaku.workflows.run import ELECTRONIC, Run, RunContext, Workflow, WorkflowResult, calculation_row, run_workflow
from tansaku.workflows.steps import StepSpec, started_from

BANDS = "bands"
MASSES = "masses"
DENSE = "dense"
OPTICS_NSCF, OPTICS_EPS, OPTICS_SCRATCH = "optics-nscf", "optics-eps", "optics-scratch"
OPTICS_POINTS = 4001  # energies from 0 to optics_max_ev (5 meV apart at 20 eV: finer than the Lorentzian)
OPTICS_STORED_EVERY = 4  # the stored spectra keep every 4th point (20 meV apart), after the Gaussian smoothing
SCISSOR_FROM = ("ddh-scf", "ddh-nsc", "hse06-scf", "hse06-nsc")  # the first hybrid gap found sets the scissor
DENSE_XML = "bands-xml"  # BoltzTraP2 reads the one pw.x XML file of a directory
SAME_EV = 1e-3  # edges closer than this in the SCF and on the path are the same edge
MASS_EXTRA_BANDS = 4  # empty bands in the band-mass run: room for a threefold CBM; Davidson's last bands are slowest


def _copy_density(source: Path, target: Path) -> None:
    """The SCF's charge density and data file into a scratch of the band run's own: a `bands` calculation
    rewrites the wavefunctions and data file of the save directory it reads, which ph.x still needs."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for item in source.iterdir():
        if item.is_file() and not item.name.startswith("wfc"):
            shutil.copy2(item, target / item.name)


def explicit_k_spec(ctx: RunContext, root: Path, structure: Structure, scf_step: str, name: str,
                    k_frac: np.ndarray, extra: dict, settings: DielectricSettings | None = None) -> StepSpec:
    """pw.x `bands` at the given k-points (the cell's reciprocal basis), from the SCF called `scf_step` (its prefix
    and density, copied into a scratch of the step's own); `extra` joins the outputs. `settings`: the run's unless
    given (the band-mass grid asks for fewer empty bands)."""
    scratch = root / f"{name}-scratch"
    settings = settings or ctx.settings

    def write(st: Structure | None, overrides: dict) -> str:
        text = pw_input(structure, "bands", settings, ctx.pseudos, scf_step, scratch, overrides)
        head = text[: text.index("K_POINTS automatic")]
        points = "".join(f"  {a:.10f} {b:.10f} {c:.10f} 1\n" for a, b, c in k_frac)
        return head + f"K_POINTS crystal\n  {len(k_frac)}\n" + points

    def parse(directory: Path, log: str) -> dict:
        if "JOB DONE" not in log:
            raise TansakuError(f"pw.x {name} did not finish")
        data = read_pw_xml(scratch / f"{scf_step}.xml")
        energies = data["eigenvalues_ev"]
        if len(energies) != len(k_frac):
            raise TansakuError(f"pw.x returned {len(energies)} k-points of {len(k_frac)}")
        return {**extra, "k_frac": np.asarray(k_frac).tolist(), "eigenvalues_ev": np.round(energies, 6).tolist(),
                "nelec": data["nelec"], "lsda": data["lsda"]}

    return StepSpec(name, "pw", write, parse, structure, prepare=_density_copier(root, scf_step, scratch))


def bands_spec(ctx: RunContext, root: Path, structure: Structure, scf_step: str) -> StepSpec:
    """pw.x `bands` on the standard path."""
    path = band_path(structure, ctx.settings.band_spacing)
    return explicit_k_spec(ctx, root, structure, scf_step, BANDS, path.frac,
                           {"labels": path.labels, "distance": path.distance.tolist(), "convention": CONVENTION})


def _density_copier(root: Path, scf_step: str, scratch: Path) -> Callable[[], None]:
    """A step's `prepare`: the SCF's density copied into the step's own scratch."""
    return lambda: _copy_density(root / "scratch" / f"{scf_step}.save", scratch / f"{scf_step}.save")


def _nscf_writer(ctx: RunContext, structure: Structure, scf_step: str, scratch: Path, settings, namelists: dict):
    """The input writer of a pw.x `nscf` on the SCF's density (in `scratch`: `_density_copier`), on `settings`'
    mesh."""
    def write(st: Structure | None, overrides: dict) -> str:
        return pw_input(structure, "nscf", settings, ctx.pseudos, scf_step, scratch,
                        merge(merge(NO_FORCES, namelists), overrides))

    return write


def dense_spec(ctx: RunContext, root: Path, structure: Structure, scf_step: str) -> StepSpec:
    """pw.x `nscf` on a Γ-centred mesh at dense_kspacing (symmetry-reduced) from the SCF's density: band edges off
    the SCF mesh, and the bands BoltzTraP2 interpolates. Its XML file is kept in the step directory."""
    scratch = root / f"{DENSE}-scratch"
    settings = replace(ctx.settings, kspacing=ctx.settings.dense_kspacing)
    mesh = kmesh(structure, settings.kspacing, settings.even_kmesh)

    def parse(directory: Path, log: str) -> dict:
        if "JOB DONE" not in log:
            raise TansakuError("pw.x dense-mesh run did not finish")
        data = read_pw_xml(scratch / f"{scf_step}.xml")
        (directory / DENSE_XML).mkdir(exist_ok=True)
        shutil.copy2(scratch / f"{scf_step}.xml", directory / DENSE_XML / "data-file-schema.xml")
        gap = band_gap(data["eigenvalues_ev"], data["nelec"], data["lsda"], data["magnetization"])
        return {"mesh": list(mesh), "k_points": len(data["kpoints"]), "gap": gap.gap, "vbm": gap.vbm,
                "cbm": gap.cbm, "direct": gap.direct, "xml": f"{DENSE_XML}/data-file-schema.xml"}

    return StepSpec(DENSE, "pw", _nscf_writer(ctx, structure, scf_step, scratch, settings, {}), parse,
                    structure, prepare=_density_copier(root, scf_step, scratch))


def dense_mesh(run: Run) -> bool:
    """The dense uniform mesh (after the SCF, whose density it reads); not with masses=false."""
    if not run.ctx.settings.masses:
        return True
    with_scf_save(run, DENSE)
    run.step(DENSE, dense_spec(run.ctx, run.root, run.structure, run.scf_step), workflow=ELECTRONIC)
    shutil.rmtree(run.root / f"{DENSE}-scratch", ignore_errors=True)
    return True


def optics_nscf_spec(ctx: RunContext, root: Path, structure: Structure, scf_step: str, occupied: int) -> StepSpec:
    """pw.x `nscf` for epsilon.x: a uniform mesh at optics_kspacing with every k-point (epsilon.x wants equal weights:
    no symmetry, no time reversal) and optics_band_factor × the occupied bands, from the SCF's density."""
    scratch = root / OPTICS_SCRATCH
    settings = replace(ctx.settings, kspacing=ctx.settings.optics_kspacing)
    mesh = kmesh(structure, settings.kspacing, settings.even_kmesh)
    bands = max(occupied + settings.extra_bands, math.ceil(settings.optics_band_factor * occupied))

    write = _nscf_writer(ctx, structure, scf_step, scratch, settings,
                         {"system": {"nosym": True, "noinv": True, "nbnd": bands}})

    def parse(directory: Path, log: str) -> dict:
        if "JOB DONE" not in log:
            raise TansakuError("pw.x optics run did not finish")
        data = read_pw_xml(scratch / f"{scf_step}.xml")
        return {"mesh": list(mesh), "k_points": len(data["kpoints"]), "bands": bands}

    return StepSpec(OPTICS_NSCF, "pw", write, parse, structure, prepare=_density_copier(root, scf_step, scratch))


def epsilon_spec(ctx: RunContext, root: Path, scf_step: str) -> StepSpec:
    """epsilon.x on the optics run: ε1 and ε2 (xx, yy, zz) from 0 to optics_max_ev."""
    s = ctx.settings

    def write(st: Structure | None, overrides: dict) -> str:
        return epsilon_input(scf_step, root / OPTICS_SCRATCH, s.optics_lorentzian, s.optics_max_ev, OPTICS_POINTS)

    def parse(directory: Path, log: str) -> dict:
        if "JOB DONE" not in log:
            raise TansakuError("epsilon.x did not finish")
        energy, eps1, eps2 = read_epsilon(directory, scf_step)
        return {"energy_ev": energy.round(4).tolist(), "eps1": eps1.round(5).tolist(), "eps2": eps2.round(5).tolist(),
                "lorentzian_ev": s.optics_lorentzian}

    return StepSpec(OPTICS_EPS, "epsilon", write, parse)


def optics(run: Run) -> bool:
    """With `optics`: the full-mesh pw.x run and epsilon.x (after the hybrid gaps, which the spectrum is
    scissor-shifted to in the analysis)."""
    if not run.ctx.settings.optics:
        return True
    scf = run.steps[run.scf_step].outputs
    occupied = math.ceil((scf["nelec"] + abs(scf.get("magnetization") or 0)) / 2)  # the fuller spin channel's
    nscf = optics_nscf_spec(run.ctx, run.root, run.structure, run.scf_step, occupied)
    with_scf_save(run, OPTICS_NSCF)
    run.step(OPTICS_NSCF, nscf, workflow=ELECTRONIC)
    run.needs_save(OPTICS_EPS, OPTICS_NSCF, nscf, run.root / OPTICS_SCRATCH, prefix=run.scf_step)
    run.step(OPTICS_EPS, epsilon_spec(run.ctx, run.root, run.scf_step), workflow=ELECTRONIC)
    shutil.rmtree(run.root / OPTICS_SCRATCH, ignore_errors=True)
    return True


def mass_points(structure: Structure, k0_frac: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """A 3x3x3 grid of k-points `step` Å⁻¹ apart (Cartesian) around k0: the points (reciprocal basis) and their
    Cartesian offsets from k0, for a parabola fit of each band there."""
    grid = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], float) * step
    return np.asarray(k0_frac) + grid @ structure.lattice.matrix.T / (2 * np.pi), grid


def bands(run: Run) -> bool:
    """The band structure along the standard path (after the SCF, whose density it reads)."""
    with_scf_save(run, BANDS)
    run.step(BANDS, bands_spec(run.ctx, run.root, run.structure, run.scf_step), workflow=ELECTRONIC)
    shutil.rmtree(run.root / f"{BANDS}-scratch", ignore_errors=True)
    return True



def channels_of(out: dict, magnetization: float | None) -> list[SpinChannel]:
    """The spin channels of a band run's eigenvalues (one unless spin-polarized); `magnetization` the SCF's total
    moment, which fixes how many bands each channel fills."""
    energies = np.asarray(out["eigenvalues_ev"])
    channels = spin_channels(energies.shape[1], out["nelec"], out.get("lsda", False), magnetization)
    if channels is None:
        raise TansakuError(f"{out['nelec']:g} electrons with a moment of {magnetization} μB fill no whole number "
                           "of bands: a metal has no band edges")
    return channels


def path_edges(run: Run) -> tuple[BandEdges, list[SpinChannel], str, str]:
    """The band path's edges over all spin channels, the channels, and the names of the channels holding the
    VBM and the CBM ("" when spin-unpolarized)."""
    out = run.steps[BANDS].outputs
    channels = channels_of(out, run.steps[run.scf_step].outputs.get("magnetization"))
    edges, vbm_channel, cbm_channel = channel_edges(np.asarray(out["eigenvalues_ev"]), channels)
    return edges, channels, vbm_channel, cbm_channel


def own_edges(energies: np.ndarray, channel: SpinChannel) -> BandEdges:
    """One channel's own edges (a spin-polarized material's other channel has edges of its own)."""
    block = channel.energies(energies)
    return edges_from(block[:, channel.occupied - 1], block[:, channel.occupied])


def mass_centres(energies: np.ndarray, channels: list[SpinChannel]) -> list[int]:
    """The band-path points the band masses are fitted around: each channel's VBM and CBM, each point once."""
    centres: list[int] = []
    for channel in channels:
        edges = own_edges(energies, channel)
        centres += [k for k in (edges.vbm_k, edges.cbm_k) if k not in centres]
    return centres


def reduced_mass_grid(structure: Structure, centres_frac: np.ndarray, grids: list[tuple[np.ndarray, np.ndarray]]
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The mass grids' points (`mass_points` of each centre) reduced to one per symmetry class, and once only where
    two centres are the same k-point (Γ twice on a path); and for each point of the whole grids, the row of the
    reduced list whose energies it takes. A spin-polarized cell keeps the classes too: its moments start alike on
    every atom of an element (magnetism.py), and each collinear channel has E(-k) = E(k)."""
    size = len(grids[0][1])
    classes = np.concatenate([size * i + equivalent_offsets(structure, k0, offsets)
                              for i, (k0, (_, offsets)) in enumerate(zip(centres_frac, grids, strict=True))])
    whole = np.vstack([points for points, _ in grids])
    reduced, expand = np.unique(np.round(whole[classes], 8), axis=0, return_inverse=True)
    return reduced, expand.ravel()


def masses(run: Run) -> bool:
    """Energies on a small grid around the path's VBM and CBM (one pw.x run), for the band masses; not with
    masses=false."""
    if not run.ctx.settings.masses:
        return True
    k_frac = np.asarray(run.steps[BANDS].outputs["k_frac"])
    _, channels, _, _ = path_edges(run)
    centres = mass_centres(np.asarray(run.steps[BANDS].outputs["eigenvalues_ev"]), channels)
    grids = [mass_points(run.structure, k_frac[k], run.ctx.settings.mass_step) for k in centres]
    points = np.vstack([points for points, _ in grids])
    extra: dict = {"offsets": grids[0][1].tolist(), "centres": centres}
    whole = explicit_k_spec(run.ctx, run.root, run.structure, run.scf_step, MASSES, points, dict(extra))
    if started_from(run.root / MASSES, whole):  # started before the grid used symmetry: kept, and finished as begun
        return _mass_step(run, whole)
    points, expand = reduced_mass_grid(run.structure, k_frac[centres], grids)
    extra["expand"] = expand.tolist()
    settings = run.ctx.settings
    if len(channels) == 1:  # spin-unpolarized: four empty bands (a spin-polarized run's channels are
        settings = replace(settings, extra_bands=min(settings.extra_bands, MASS_EXTRA_BANDS))  # counted by nbnd)
    return _mass_step(run, explicit_k_spec(run.ctx, run.root, run.structure, run.scf_step, MASSES, points, extra,
                                           settings))


def _mass_step(run: Run, spec: StepSpec) -> bool:
    """Run the mass grid on a copy of the SCF's save, which it then removes."""
    with_scf_save(run, MASSES)
    run.step(MASSES, spec, workflow=ELECTRONIC)
    shutil.rmtree(run.root / f"{MASSES}-scratch", ignore_errors=True)
    return True


def fitted_masses(masses_out: dict, path_energies: np.ndarray, channels: list[SpinChannel], vbm_channel: str,
                  cbm_channel: str) -> dict:
    """Band masses (electron masses) of the bands that meet at the VBM (holes) and at the CBM (electrons), each
    band on its own: degenerate bands such as heavy and light holes are fitted separately. `dos_mass` combines
    a side's bands as (Σ m_i^(3/2))^(2/3), m_i the geometric mean of a band's principal masses. Spin-polarized:
    each channel at its own edges (under "channels"); "holes" and "electrons" are the channels holding the
    material's VBM and CBM."""
    offsets = np.asarray(masses_out["offsets"])
    energies = np.asarray(masses_out["eigenvalues_ev"])
    if "expand" in masses_out:  # one point of each symmetry class was computed: every grid point takes its energies
        energies = energies[masses_out["expand"]]
    n = len(offsets)
    centres = masses_out.get("centres")
    if centres is None:  # a masses step from before spin channels: the path's VBM and CBM
        overall, _, _ = channel_edges(path_energies, channels)
        centres = [overall.vbm_k, overall.cbm_k]
    per_channel = {}
    for channel in channels:
        edges = own_edges(path_energies, channel)
        per_channel[channel.name] = {
            side: _side_masses(offsets, energies[n * centres.index(k): n * (centres.index(k) + 1)], channel, hole)
            for side, k, hole in (("holes", edges.vbm_k, True), ("electrons", edges.cbm_k, False))}
    if len(channels) == 1:
        return per_channel[channels[0].name]
    return {"holes": {**per_channel[vbm_channel]["holes"], "channel": vbm_channel},
            "electrons": {**per_channel[cbm_channel]["electrons"], "channel": cbm_channel}, "channels": per_channel}


def _side_masses(offsets: np.ndarray, block: np.ndarray, channel: SpinChannel, hole: bool) -> dict:
    """The masses of one channel's bands degenerate with its top valence (hole) or bottom conduction band at the
    centre of a 3x3x3 grid; `band` counts from 1 within the channel."""
    columns = channel.energies(block)
    centre = int(np.argmin(np.linalg.norm(offsets, axis=1)))
    first = channel.occupied - 1 if hole else channel.occupied
    direction = -1 if hole else +1
    bands, band = [], first
    while 0 <= band < columns.shape[1] and abs(columns[centre, band] - columns[centre, first]) < SAME_EV:
        try:
            fit = band_mass(offsets, columns[:, band], np.zeros(3), window_ev=10.0, hole=hole)
            bands.append({"band": band + 1, "principal": fit.principal.round(4).tolist(),
                          "average": round(fit.average, 4), "rms_error_ev": fit.rms_error_ev})
        except TansakuError as exc:  # a band that is no extremum here (a crossing): reported, not fitted
            bands.append({"band": band + 1, "error": str(exc)})
        band += direction
    fitted = [b for b in bands if "principal" in b]
    dos = (sum(np.prod(b["principal"]) ** 0.5 for b in fitted) ** (2 / 3)) if fitted else None
    return {"bands": bands, "dos_mass": dos}


def electronic_analysis(run: Run) -> bool:
    """Band edges from the path, the SCF mesh and the dense mesh together; band and conductivity masses; hybrid
    gaps: all stored with their provenance."""
    run.report("analysis")
    path_out, scf = run.steps[BANDS].outputs, run.steps[run.scf_step]
    on_path, channels, vbm_channel, cbm_channel = path_edges(run)
    # the same k-point in the SCF and the non-self-consistent band run differs by ~1e-4 eV (diagonalization)
    labels = path_out["labels"]
    meshes = {"SCF mesh": scf.outputs}
    if DENSE in run.steps:
        meshes["dense mesh"] = run.steps[DENSE].outputs
    vbm, vbm_at = _edge(on_path.vbm, labels[on_path.vbm_k] or f"path point {on_path.vbm_k}",
                        {name: out["vbm"] for name, out in meshes.items()}, higher=True)
    cbm, cbm_at = _edge(on_path.cbm, labels[on_path.cbm_k] or f"path point {on_path.cbm_k}",
                        {name: out["cbm"] for name, out in meshes.items()}, higher=False)
    result = run.result
    result.band_gap = cbm - vbm
    if result.band_gap < run.ctx.settings.metal_gap_ev:
        result.status, result.reason = "metal", f"band gap {result.band_gap:.3f} eV along the band path"
    else:
        result.status = "done"
    outputs = {"gap": cbm - vbm, "direct_gap": on_path.direct_gap, "vbm": vbm, "cbm": cbm,
               "vbm_at": vbm_at, "cbm_at": cbm_at,
               "direct_at": labels[on_path.direct_k] or f"path point {on_path.direct_k}",
               "is_direct": on_path.direct_gap - (cbm - vbm) <= 1e-4, "path_convention": CONVENTION,
               "scf_gap": scf.outputs["gap"]}
    if len(channels) > 1:
        outputs.update(vbm_channel=vbm_channel, cbm_channel=cbm_channel,
                       spin_channels=[c.__dict__ for c in channels], magnetization=scf.outputs["magnetization"])
    mass: dict = {}
    if MASSES in run.steps:
        mass = fitted_masses(run.steps[MASSES].outputs, np.asarray(path_out["eigenvalues_ev"]), channels,
                             vbm_channel, cbm_channel)
    if DENSE in run.steps:
        mass["conductivity"] = _conductivity(run)
    if mass:
        outputs["masses"] = mass
    if run.k_probes:  # the DDH's ε∞ came from measured k-meshes (a small gap)
        outputs["k_convergence"] = run.k_probes
    if run.skipped:
        outputs["skipped"] = dict(run.skipped)
        if result.status == "done":
            result.reason = "; ".join(run.skipped.values())
    if OPTICS_EPS in run.steps:
        outputs["optics"] = _optics_analysis(run)
    hybrids = {step: run.steps[step].outputs for step in (f"{name}-{kind}" for name in ("hse06", "ddh")
                                                            for kind in ("scf", "nsc")) if step in run.steps}
    if hybrids:
        mesh = next(iter(hybrids.values()))["k_mesh"]
        k_frac = np.asarray(path_out["k_frac"])
        # an edge only the dense mesh holds is off the SCF mesh (which would otherwise have held it)
        on_mesh = {edge: bool(outputs[f"{edge}_at"] == "on the SCF mesh" or (
            not outputs[f"{edge}_at"].startswith("on the ") and np.allclose(
                np.asarray(k_frac[k]) * mesh, np.round(np.asarray(k_frac[k]) * mesh), atol=1e-4)))
                   for edge, k in (("vbm", on_path.vbm_k), ("cbm", on_path.cbm_k))}
        outputs["hybrid"] = {step: {"gap": h["gap"], "direct": h["direct"], "q_mesh": h["q_mesh"],
                                    "exx_fraction": h.get("exx_fraction"), "edges_on_mesh": on_mesh,
                                    "self_consistent": h.get("self_consistent", True)}
                             for step, h in hybrids.items()}
    with run.ctx.db.session() as session:
        calc = calculation_row(session, run.ctx, run.material_id, "analysis", ELECTRONIC)
        calc.engine, calc.status, calc.outputs, calc.attempts = "tansaku", "done", outputs, 1
        calc.inputs = {"bands": str(run.root / BANDS), "scf": str(run.root / run.scf_step)}
        calc.work_dir, calc.code_version, calc.finished_at = str(run.root), f"tansaku {__version__}", utcnow()
        session.flush()
        material = session.get(Material, run.material_id)
        extra = {"preset": run.ctx.preset, "k_sampling": f"SCF mesh and band path ({CONVENTION})"}
        set_property(session, material, "band_gap", outputs["gap"], run.ctx.method, unit="eV",
                     extra={**extra, "is_direct": outputs["is_direct"], "vbm_at": outputs["vbm_at"],
                            "cbm_at": outputs["cbm_at"]}, calculation_id=calc.id)
        set_property(session, material, "band_gap_direct", on_path.direct_gap, run.ctx.method, unit="eV",
                     extra={**extra, "at": outputs["direct_at"]}, calculation_id=calc.id)
        for step, hybrid in outputs.get("hybrid", {}).items():
            name, kind = step.split("-")
            note = {} if all(hybrid["edges_on_mesh"].values()) else {
                "warning": "a PBEsol band edge is not on the hybrid k-mesh: the hybrid gap may be too wide"}
            how = ({"self_consistent": True} if kind == "scf" else
                   {"self_consistent": False, "orbitals": "PBE (one diagonalization with exact exchange)"})
            set_property(session, material, f"band_gap_{name}", hybrid["gap"], f"{run.ctx.method}:{kind}",
                         unit="eV", extra={"preset": run.ctx.preset, "is_direct": hybrid["direct"],
                                           "q_mesh": hybrid["q_mesh"], "exx_fraction": hybrid["exx_fraction"] or 0.25,
                                           **how, **note}, calculation_id=calc.id)
        for name, side, at in (("m_e_band", "electrons", "cbm_at"), ("m_h_band", "holes", "vbm_at")):
            if side in mass and mass[side]["dos_mass"] is not None and not outputs[at].startswith("on the "):
                spin = {"spin_channel": mass[side]["channel"]} if "channel" in mass[side] else {}
                set_property(session, material, name, mass[side]["dos_mass"], run.ctx.method, unit="m_e",
                             extra={"preset": run.ctx.preset, "at": outputs[at], "bands": mass[side]["bands"], **spin,
                                    "kind": "band mass (parabola fit, 3x3x3 grid), DOS combination of the bands"},
                             calculation_id=calc.id)
        conductivity = mass.get("conductivity")
        for name, side in (("m_e", "electrons"), ("m_h", "holes")):
            if conductivity and "skipped" not in conductivity:
                c = conductivity[side]
                set_property(session, material, name, c["average"], run.ctx.method, unit="m_e", tensor=c["tensor"],
                             extra={"preset": run.ctx.preset, "eigenvalues": c["eigenvalues"],
                                    "temperature_k": conductivity["temperature_k"],
                                    "concentration_cm3": conductivity["concentration_cm3"],
                                    "kind": "conductivity mass, BoltzTraP2 (constant relaxation time), eigenvalue "
                                            "average; tensor in the input structure's frame"
                                            + ("; both spin channels, one chemical potential (each channel's own "
                                               "under channels)" if "channels" in conductivity else ""),
                                    **({"channels": {name_: ch[side] for name_, ch in
                                                     conductivity["channels"].items()}}
                                       if "channels" in conductivity else {}),
                                    "dense_mesh": run.steps[DENSE].outputs["mesh"]}, calculation_id=calc.id)
        optic = outputs.get("optics")
        if optic:
            for onset_key, method, more in (
                    ("onset_ev", run.ctx.method, {}),
                    ("scissored_onset_ev", f"{run.ctx.method}:{optic.get('scissor_level')}",
                     {"scissor_ev": optic.get("scissor_ev"), "scissor_to": optic.get("scissor_to")})):
                if optic.get(onset_key) is not None:
                    set_property(session, material, "absorption_onset", optic[onset_key], method, unit="eV",
                                 extra={"preset": run.ctx.preset, "threshold_cm": optic["threshold_cm"],
                                        "broadening_ev": optic["broadening_ev"], "k_mesh": optic["k_mesh"],
                                        "approximation": optic["approximation"], **more}, calculation_id=calc.id)
    result.edges = {k: v for k, v in outputs.items() if k != "optics"} | (
        {"optics": {k: v for k, v in outputs["optics"].items() if not isinstance(v, list)}}
        if "optics" in outputs else {})
    return True


def _optics_analysis(run: Run) -> dict:
    """The absorption coefficient of the isotropic average of ε (PBEsol), its onset, and the same scissor-shifted
    to the first hybrid gap in SCISSOR_FROM: ε2 moved by the gap difference (f-sum kept), ε1 its Kramers-Kronig
    transform (plus the constant the transitions above optics_max_ev add). epsilon.x's narrow
    Lorentzians are smoothed first by a Gaussian (optics_broadening), whose tails, unlike a Lorentzian's, do not
    reach far below the gap."""
    s, eps = run.ctx.settings, run.steps[OPTICS_EPS].outputs
    energy = np.asarray(eps["energy_ev"])
    raw1, raw2 = np.asarray(eps["eps1"]).mean(axis=1), np.asarray(eps["eps2"]).mean(axis=1)
    eps2 = gaussian_filter1d(raw2, s.optics_broadening / (energy[1] - energy[0]), mode="nearest")
    # ε1 by Kramers-Kronig from the smoothed ε2, plus what lies beyond the window (transitions above
    # optics_max_ev, out of reach of the bands computed): a constant at these energies, read off at E = 0 where
    # epsilon.x's own ε1 has no sharp structure
    beyond = float(raw1[0] - kramers_kronig_eps1(energy, raw2)[0])
    eps1 = kramers_kronig_eps1(energy, eps2) + beyond
    alpha = absorption_coefficient(energy, eps1, eps2)
    kept = slice(None, None, OPTICS_STORED_EVERY)
    out = {"energy_ev": energy[kept].tolist(), "eps1": eps1[kept].round(5).tolist(),
           "eps2": eps2[kept].round(5).tolist(), "alpha_cm": alpha[kept].round(1).tolist(),
           "onset_ev": absorption_onset(energy, alpha, s.absorption_threshold),
           "threshold_cm": s.absorption_threshold, "broadening_ev": s.optics_broadening,
           "lorentzian_ev": eps.get("lorentzian_ev"), "eps1_zero": float(raw1[0]),
           "k_mesh": run.steps[OPTICS_NSCF].outputs["mesh"], "bands": run.steps[OPTICS_NSCF].outputs["bands"],
           "approximation": "independent particles (epsilon.x): no local fields, no excitons, local momentum "
                            "operator only"}
    if "epsilon-field" in run.steps:  # DFPT's ε∞ of the same SCF: how far the independent-particle ε1(0) is off
        out["eps_electronic_dfpt"] = tensor_average(np.asarray(run.steps["epsilon-field"].outputs["eps_electronic"]))
    source = next((step for step in SCISSOR_FROM if step in run.steps), None)
    if source is not None:
        shift = run.steps[source].outputs["gap"] - run.steps[run.scf_step].outputs["gap"]
        eps2_shifted = scissor(energy, eps2, shift)
        eps1_shifted = kramers_kronig_eps1(energy, eps2_shifted) + beyond
        alpha_shifted = absorption_coefficient(energy, eps1_shifted, eps2_shifted)
        name, level = source.split("-")  # ddh-nsc: the DDH gap, not self-consistent
        out.update(scissor_from=source, scissor_to=f"band_gap_{name}", scissor_level=level, scissor_ev=shift,
                   alpha_scissored_cm=alpha_shifted[kept].round(1).tolist(),
                   scissored_onset_ev=absorption_onset(energy, alpha_shifted, s.absorption_threshold))
    return out


def _edge(path_value: float, path_at: str, meshes: dict[str, float], higher: bool) -> tuple[float, str]:
    """A band edge and where it lies: the path's unless a mesh goes beyond it (by more than SAME_EV)."""
    value, at = path_value, path_at
    for name, mesh_value in meshes.items():
        if (mesh_value > value + SAME_EV) if higher else (mesh_value < value - SAME_EV):
            value, at = mesh_value, f"on the {name}"
    return value, at


def _conductivity(run: Run) -> dict:
    """Conductivity masses from the dense mesh, tensors turned into the input structure's frame; without the
    optional BoltzTraP2 a note of what to install, and the rest of the workflow's results stand."""
    if importlib.util.find_spec("BoltzTraP2") is None:
        run.report("conductivity masses skipped: BoltzTraP2 is not installed")
        return {"skipped": "BoltzTraP2 is not installed: pip install 'tansaku[transport]' (it compiles; Debian "
                           "needs cmake and libgtest-dev), then run again (nothing is recomputed)"}
    s, dense = run.ctx.settings, run.steps[DENSE].outputs
    masses = conductivity_masses(run.root / DENSE / DENSE_XML, dense["vbm"], dense["cbm"], s.transport_temperature,
                                 s.carrier_concentration, s.transport_lpfac,
                                 run.steps[run.scf_step].outputs.get("magnetization"))
    out = masses.as_dict()
    for name, part in ((None, masses), *masses.channels.items()):
        for side in ("electrons", "holes"):
            tensor = to_input_frame(getattr(part, side), run.rotation).round(5).tolist()
            (out if name is None else out["channels"][name])[side]["tensor"] = tensor
    return out


ELECTRONIC_WORKFLOW = Workflow(ELECTRONIC, (check_insulator_setup, check_hybrid_memory, relax, scf_gap, bands,
                                             masses, dense_mesh, hybrid_gaps, optics, electronic_analysis))


def run_electronic(ctx: RunContext, material_id: int, report: Callable[[str], None] | None = None
                   ) -> WorkflowResult:
    """The electronic workflow for one stored material; never raises for a material's failure."""
    return run_workflow(ELECTRONIC_WORKFLOW, ctx, material_id, report)
