"""The electronic workflow on real pw.x: the band path, the band structure from the SCF shared with the
dielectric workflow, and the edges and gaps it stores."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from sqlalchemy import select

from tansaku import TansakuError
from tansaku.dft.band_path import band_path
from tansaku.dft.memory import fft_grid, hybrid_memory, machine_memory_gb
from tansaku.dft.settings import standard_frame
from tansaku.store import Calculation, Property
from tansaku.workflows.dielectric import run_dielectric
from tansaku.workflows.electronic import run_electronic
from tansaku.workflows.many import run_many
from tests.cells import rocksalt, zinc_blende
from tests.test_dielectric_workflow import QUICK, QUICK_SET, make_ctx, mgo, set_options, store  # noqa: F401 - mgo is a fixture


def test_band_path_follows_the_standard_labels_and_lengths():
    rock_salt = standard_frame(rocksalt(4.21, "Mg", "O"))[0]
    path = band_path(rock_salt, 0.05)
    positions, names = path.ticks()
    assert names == ["Γ", "X", "U|K", "Γ", "L", "W", "X"]
    x = path.frac[path.labels.index("X")] @ rock_salt.lattice.reciprocal_lattice.matrix
    assert np.linalg.norm(x) == pytest.approx(2 * np.pi / 4.21)  # X of fcc at 2π/a
    assert np.all(np.diff(path.distance) >= 0) and np.all(np.diff(path.distance) <= 1.2 * 0.05)  # about the spacing
    wurtzite = standard_frame(Structure.from_spacegroup("P6_3mc", Lattice.hexagonal(3.25, 5.2), ["Zn", "O"],
                                                        [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.38]]))[0]
    _, names = band_path(wurtzite, 0.1).ticks()
    assert names[:4] == ["Γ", "M", "K", "Γ"] and "A" in names
    # Γ-A is along c*: its length is π/c
    hexagonal = band_path(wurtzite, 0.1)
    a_point = hexagonal.frac[hexagonal.labels.index("A")] @ wurtzite.lattice.reciprocal_lattice.matrix
    assert np.linalg.norm(a_point) == pytest.approx(np.pi / 5.2, rel=1e-3)


def test_band_path_of_a_cell_seekpath_turns_is_turned_back():
    """Zinc-blende SiC in spglib's standard cell: seekpath turns it 90° about x (the other setting of F-43m), which
    refused the whole material before; the path's points come back into the cell's frame. A cell in any
    orientation does too; a cell that is not primitive is refused."""
    from pymatgen.core.operations import SymmOp

    def lengths(cell: Structure, a: float) -> list[float]:
        path = band_path(cell, 0.05)
        assert path.ticks()[1] == ["Γ", "X", "U|K", "Γ", "L", "W", "X"]
        reciprocal = cell.lattice.reciprocal_lattice.matrix
        return [np.linalg.norm(path.frac[path.labels.index(p)] @ reciprocal) / (2 * np.pi / a) for p in "XLW"]

    fcc = [1.0, np.sqrt(3) / 2, np.sqrt(5) / 2]  # |X|, |L|, |W| in units of 2π/a
    sic = zinc_blende(4.36, "Si", "C")
    assert lengths(standard_frame(sic)[0], 4.36) == pytest.approx(fcc)
    turned = standard_frame(sic)[0]
    turned.apply_operation(SymmOp.from_axis_angle_and_translation([1, 2, 3], 17.0))
    assert lengths(turned, 4.36) == pytest.approx(fcc)
    with pytest.raises(TansakuError, match="SiC: the cell is not the standard primitive cell"):
        band_path(sic, 0.05)  # the 8-atom conventional cell


def test_mgo_bands_from_the_shared_scf_then_the_dielectric_run_reuses_relax_and_scf(tmp_path, mgo):  # noqa: F811
    # the preset's 55 Ry, not QUICK's 45: there MgO's valence band top drifts off Γ along the path
    ctx = make_ctx(tmp_path)
    material_id = store(ctx, mgo, "MgO")
    result = run_electronic(ctx, material_id)
    assert result.status == "done", result.reason
    edges = result.edges
    # MgO: direct gap at Γ; the path contains Γ, so path and SCF mesh agree on the edges
    assert edges["is_direct"] and edges["direct_at"] == "Γ" and edges["vbm_at"] == "Γ" == edges["cbm_at"]
    assert edges["gap"] == pytest.approx(edges["scf_gap"], abs=1e-3) and edges["gap"] == result.band_gap
    root = tmp_path / "runs" / f"{material_id}-MgO"
    bands = json.loads((root / "bands" / "state.json").read_text())["outputs"]
    energies = np.asarray(bands["eigenvalues_ev"])
    assert energies.shape == (len(bands["labels"]), len(energies[0])) and bands["labels"][0] == "Γ"
    occupied = int(round(bands["nelec"])) // 2
    assert energies[:, occupied].min() - energies[:, occupied - 1].max() == pytest.approx(edges["gap"], abs=1e-3)
    assert not (root / "bands-scratch").exists()
    relaxed = json.loads((root / "relax" / "state.json").read_text())["finished"]
    with ctx.db.session() as session:
        rows = {(c.workflow, c.step) for c in session.scalars(select(Calculation))}
        gap = session.scalar(select(Property).where(Property.name == "band_gap"))
        direct = session.scalar(select(Property.value).where(Property.name == "band_gap_direct"))
    assert rows == {("dielectric", "relax"), ("dielectric", "scf"), ("electronic", "bands"),
                    ("electronic", "masses"), ("electronic", "dense"), ("electronic", "analysis")}
    assert gap.value == pytest.approx(edges["gap"]) and gap.extra["k_sampling"].startswith("SCF mesh and band path")
    assert direct == pytest.approx(edges["direct_gap"])
    # band masses at Γ: MgO's Mg 3s-like conduction band is light and isotropic (PBE ≈ 0.35-0.4), the O 2p holes
    # are three bands, each fitted on its own, heavier than the electron
    electrons, holes = edges["masses"]["electrons"], edges["masses"]["holes"]
    (cbm_band,) = electrons["bands"]
    assert 0.25 < cbm_band["average"] < 0.6 and np.ptp(cbm_band["principal"]) < 0.02 * cbm_band["average"]
    assert len(holes["bands"]) == 3 and holes["dos_mass"] > 2 * electrons["dos_mass"]
    with ctx.db.session() as session:
        m_e = session.scalar(select(Property).where(Property.name == "m_e_band"))
    assert m_e.value == pytest.approx(electrons["dos_mass"]) and m_e.extra["at"] == "Γ" and m_e.unit == "m_e"
    # conductivity masses (BoltzTraP2 on the dense mesh, 300 K, 1e18 cm⁻³): MgO's conduction band is close to a
    # parabola, so its conductivity mass is its band mass; the holes mix three bands, mostly heavy ones
    dense = json.loads((root / "dense" / "state.json").read_text())["outputs"]
    assert dense["mesh"] == [8, 8, 8] and dense["k_points"] < 8 ** 3 and (root / "dense" / dense["xml"]).exists()
    assert not (root / "dense-scratch").exists()
    conductivity = edges["masses"]["conductivity"]
    assert conductivity["electrons"]["average"] == pytest.approx(cbm_band["average"], rel=0.1)
    hole_bands = sorted(b["average"] for b in holes["bands"])
    assert hole_bands[0] < conductivity["holes"]["average"] < 1.5 * hole_bands[-1]
    for side in ("electrons", "holes"):  # cubic: an isotropic tensor
        tensor = np.asarray(conductivity[side]["tensor"])
        assert np.allclose(tensor, conductivity[side]["average"] * np.eye(3), rtol=1e-3, atol=1e-4)
    with ctx.db.session() as session:
        stored = {p.name: p for p in session.scalars(select(Property).where(Property.name.in_(["m_e", "m_h"])))}
    assert stored["m_e"].value == pytest.approx(conductivity["electrons"]["average"])
    assert stored["m_h"].extra["temperature_k"] == 300 and stored["m_h"].extra["concentration_cm3"] == 1e18
    assert len(stored["m_h"].tensor) == 3 and stored["m_h"].unit == "m_e"
    # the dielectric workflow then relaxes and runs the SCF no more (the bands run left the SCF's save intact
    # for ph.x) and leaves the band-path gap in place
    dielectric = run_dielectric(ctx, material_id)
    assert dielectric.status == "done", dielectric.reason
    assert json.loads((root / "relax" / "state.json").read_text())["finished"] == relaxed
    with ctx.db.session() as session:
        steps = [c.step for c in session.scalars(select(Calculation).where(Calculation.step == "relax"))]
        kept = session.scalar(select(Property.value).where(Property.name == "band_gap"))
    assert steps == ["relax"] and kept == pytest.approx(edges["gap"])
    # a mass grid an older tansaku started (all 27 points: no symmetry) is finished as begun, not refused as made
    # from another input; its masses are those of the reduced grid
    import shutil

    from tansaku.workflows.electronic import MASSES, explicit_k_spec, mass_points
    from tansaku.workflows.steps import MADE_FROM, _made_from

    path = json.loads((root / "bands" / "state.json").read_text())["outputs"]
    reduced = json.loads((root / MASSES / "state.json").read_text())["outputs"]
    # VBM and CBM at Γ (two of the path's Γ points): 4 classes of Oh, computed once for both
    assert len(reduced["k_frac"]) == 4 and len(reduced["expand"]) == 27 * len(reduced["centres"]) == 54
    cell = standard_frame(mgo)[0]
    whole = explicit_k_spec(ctx, root, cell, "scf", MASSES, np.vstack([
        mass_points(cell, np.asarray(path["k_frac"][k]), 0.03)[0] for k in reduced["centres"]]), {})
    shutil.rmtree(root / MASSES)
    (root / MASSES).mkdir()
    (root / MASSES / MADE_FROM).write_text(_made_from(whole))
    again = run_electronic(ctx, material_id)
    assert again.status == "done", again.reason
    old = json.loads((root / MASSES / "state.json").read_text())["outputs"]
    assert len(old["k_frac"]) == 54 and "expand" not in old
    assert again.edges["masses"]["electrons"]["bands"] == result.edges["masses"]["electrons"]["bands"]
    assert again.edges["masses"]["holes"]["bands"] == result.edges["masses"]["holes"]["bands"]


def test_run_electronic_cli_on_a_file_and_a_bad_one(tmp_path, mgo):  # noqa: F811
    from pathlib import Path

    from tests.conftest import PSEUDOS, need_shared
    from tests.test_cli import invoke

    good = tmp_path / "MgO.cif"
    mgo.to(filename=str(good))
    bad = Path(__file__).parent / "data" / "fuzz" / "structures" / "unknown_element.cif"
    out = tmp_path / "out.json"
    result = invoke("--db", str(tmp_path / "run.db"), "run", "electronic", str(good), str(bad), "--preset", "test",
                    "--pseudo-dir", str(need_shared(PSEUDOS)), "--run-dir", str(tmp_path / "runs"), "--json", str(out),
                    "--plots", str(tmp_path / "plots"), *set_options(*QUICK_SET))
    assert result.exit_code == 1, result.output  # one done, one failed: the batch went on
    report = json.loads(out.read_text())
    assert report[str(good)]["status"] == "done" and report[str(good)]["edges"]["direct_at"] == "Γ"
    assert report[str(bad)]["status"] == "failed" and "'Xx'" in report[str(bad)]["reason"]
    assert "direct" in result.output and "VBM" in result.output  # the summary table of the electronic run
    (figure,) = (tmp_path / "plots").glob("*-MgO-bands.png")
    assert figure.stat().st_size > 10_000
    with pytest.raises(TansakuError, match="--plots, --hybrid, --functionals and --optics go with `tansaku run elec"):
        invoke("--db", str(tmp_path / "run.db"), "run", "dielectric", str(good), "--plots", str(tmp_path))
    with pytest.raises(TansakuError, match="hybrid='hf': choose scf"):
        invoke("--db", str(tmp_path / "run.db"), "run", "electronic", str(good), "--hybrid", "hf")
    with pytest.raises(TansakuError, match="hybrid_functionals='hse06,b3lyp': b3lyp is not one of hse06, ddh"):
        invoke("--db", str(tmp_path / "run.db"), "run", "electronic", str(good), "--hybrid", "nsc",
               "--functionals", "hse06,b3lyp")


def test_hybrid_runs_that_would_not_fit_in_memory_are_refused_before_anything_runs(tmp_path, mgo):  # noqa: F811
    from tansaku.workflows.executor import QECommands

    two = QECommands(mpi_procs=2)  # the estimate is per MPI process: 2 of them, however many the other tests use
    ctx = make_ctx(tmp_path, {"hybrid": "nsc", "max_memory_gb": 0.3}, commands=two)
    material_id = store(ctx, mgo, "MgO")
    result = run_electronic(ctx, material_id)
    assert result.status == "failed"
    # 4x4x4 k-mesh (8 irreducible points), 2x2x2 q-mesh: 40 distinct k+q points; ecutfock 55 Ry: 15³ points.
    # ecutfock_factor is already 1, the least pw.x takes: not offered
    assert ("the hybrid runs would need about 0.4 GB (0.2 GB in each of 2 MPI processes: the exact exchange holds "
            "8 occupied bands at 40 k+q points on a 15x15x15 FFT grid), more than the 0.3 GB max_memory_gb allows; "
            "lower it with --set hybrid_q_divisor=4 (0.4 GB), or set max_memory_gb") in result.reason
    with pytest.raises(TansakuError, match="ecutfock_factor=0.5: pw.x takes an exact-exchange cut-off between "
                                           "ecutwfc and ecutrho, a factor from 1 to 4"):
        make_ctx(tmp_path, {"ecutfock_factor": 0.5})
    assert not list((tmp_path / "runs").glob("*/relax"))  # refused before the relaxation
    # without max_memory_gb, the materials run at once share this machine's memory
    shared = make_ctx(tmp_path, {"hybrid": "nsc"}, commands=two)
    machine = machine_memory_gb()
    crowd = int(machine / 0.3)  # each gets less than 0.3 GB
    results = run_many(shared, {"MgO": material_id}, workers=crowd, runner=run_electronic)
    assert results["MgO"].status == "failed"
    assert (f"more than the {machine / crowd:.1f} GB each of the {crowd} materials run at once (--workers) has of "
            f"this machine's {machine:.1f} GB") in results["MgO"].reason
    assert not list((tmp_path / "runs").glob("*/relax"))
    # a finer q-mesh holds more k+q points: the estimate grows with them (2x2x2 q on the 2x2x2 k-mesh: all 8)
    standard = hybrid_memory(standard_frame(mgo)[0], replace(ctx.settings, kspacing=0.2), ctx.pseudos, 2)
    coarser = hybrid_memory(standard_frame(mgo)[0], replace(ctx.settings, kspacing=0.2, hybrid_q_divisor=4),
                            ctx.pseudos, 2)
    assert coarser.k_plus_q < standard.k_plus_q and coarser.total_gb < standard.total_gb


def test_hybrid_gaps_scf_and_nsc_and_the_absorption_scissored_to_them(tmp_path, mgo):  # noqa: F811
    # electron_maxstep 4 provokes non-convergence for real: every SCF, the hybrid ones included, stops unconverged
    # once, and the handler (mixing 0.3, 300 steps) gets it there
    # a short band path, no masses (other tests fit them) and a 4x4x4 optics mesh: CI minutes
    ctx = make_ctx(tmp_path, {**QUICK, "hybrid": "both", "relax": False, "hybrid_q_divisor": 4,  # q = 1x1x1: seconds
                              "optics": True, "electron_maxstep": 4, "band_spacing": 0.3, "masses": False,
                              "optics_kspacing": 0.7})
    material_id = store(ctx, mgo, "MgO")
    result = run_electronic(ctx, material_id)
    assert result.status == "done", result.reason
    hybrid = result.edges["hybrid"]
    hse, ddh = hybrid["hse06-scf"], hybrid["ddh-scf"]
    root = tmp_path / "runs" / f"{material_id}-MgO"
    field = json.loads((root / "epsilon-field" / "state.json").read_text())["outputs"]
    eps = float(np.trace(np.asarray(field["eps_electronic"])) / 3)  # cubic: the tensor average is the trace / 3
    assert ddh["exx_fraction"] == pytest.approx(1 / eps, rel=1e-5) and 0.2 < ddh["exx_fraction"] < 0.45
    # exact exchange opens MgO's gap well beyond PBEsol's; the unscreened DDH (α ≈ 1/3) beyond HSE06's
    assert hse["gap"] > result.band_gap + 1.5 and ddh["gap"] > hse["gap"]
    assert hse["q_mesh"] == ddh["q_mesh"] == [1, 1, 1]
    assert hse["edges_on_mesh"] == {"vbm": True, "cbm": True}  # Γ is on every Γ-centred mesh
    # one diagonalization with exact exchange on PBE orbitals: near self-consistency on MgO (0.11 eV below it on
    # this 1x1x1 q-mesh, 0.01 eV on 2x2x2), and a value of its own (the first hybrid iteration's eigenvalues, not
    # the last ones the run wrote)
    for name in ("hse06", "ddh"):
        nsc = hybrid[f"{name}-nsc"]
        assert not nsc["self_consistent"] and nsc["gap"] == pytest.approx(hybrid[f"{name}-scf"]["gap"], abs=0.25)
        log = (root / f"{name}-nsc" / "output.out").read_text()
        vbm, cbm = map(float, re.findall(r"lowest unoccupied level \(ev\):\s+(\S+)\s+(\S+)", log)[-1])
        assert abs((cbm - vbm) - nsc["gap"]) > 0.01  # the run's last iteration had moved on
        # it stopped there, unconverged on purpose (exit status 2), before building the exchange a second time
        assert "Calculation (EXX) stopped during iteration" in log and "est. exchange err" not in log
        state = json.loads((root / f"{name}-nsc" / "state.json").read_text())
        assert state["attempt"] == 1 and not state["handlers"]  # its stop after one EXX step is no SCF failure
    for step in ("hse06-scf", "ddh-scf"):
        state = json.loads((root / step / "state.json").read_text())
        assert state["attempt"] == 2 and [h["handler"] for h in state["handlers"]] == ["scf_not_converged"]
        assert state["handlers"][0]["changed"]["electrons"]["electron_maxstep"] == 300
    exx_grid = re.search(r"EXX grid:.*FFT dimensions: \(\s*(\d+),\s*(\d+),\s*(\d+)\)",
                         (root / "hse06-scf" / "output.out").read_text())
    ecutfock = ctx.settings.ecutwfc
    assert exx_grid and fft_grid(standard_frame(mgo)[0], ecutfock) == tuple(map(int, exx_grid.groups()))
    pbe = json.loads((root / "pbe-scf" / "state.json").read_text())["outputs"]
    assert abs(pbe["gap"] - result.band_gap) < 0.5  # the PBE orbitals' ground state, started from PBEsol's
    with ctx.db.session() as session:
        stored = {(p.name, p.method): p for p in session.scalars(select(Property).where(
            Property.name.like("band_gap_%")))}
    assert stored["band_gap_hse06", "dft:qe:test:scf"].value == pytest.approx(hse["gap"])  # the level a model
    assert stored["band_gap_hse06", "dft:qe:test:nsc"].value == pytest.approx(hybrid["hse06-nsc"]["gap"])  # asks for
    assert stored["band_gap_ddh", "dft:qe:test:nsc"].extra["self_consistent"] is False
    assert stored["band_gap_ddh", "dft:qe:test:scf"].extra["exx_fraction"] == pytest.approx(ddh["exx_fraction"])
    assert not (root / "hybrid-scratch").exists() and not (root / "field-scratch").exists()
    # absorption (epsilon.x on the full 4x4x4 mesh): MgO absorbs from about its gap, and the spectrum scissor-shifted
    # to the self-consistent DDH gap starts about that much higher
    optics = result.edges["optics"]
    nscf = json.loads((root / "optics-nscf" / "state.json").read_text())["outputs"]
    assert nscf["mesh"] == [4, 4, 4] and nscf["k_points"] == 64  # every k-point: epsilon.x's requirement
    assert optics["scissor_from"] == "ddh-scf" and optics["scissor_ev"] == pytest.approx(ddh["gap"] - result.band_gap,
                                                                                            abs=1e-3)
    assert result.band_gap - 1.0 < optics["onset_ev"] < result.band_gap + 1.0
    assert optics["scissored_onset_ev"] - optics["onset_ev"] == pytest.approx(optics["scissor_ev"], abs=0.3)
    # independent particles, no non-local commutator: ε1(0) is near, not at, DFPT's ε∞ of the same SCF
    assert 0.8 < optics["eps1_zero"] / optics["eps_electronic_dfpt"] < 1.6
    with ctx.db.session() as session:
        onsets = {p.method: p for p in session.scalars(select(Property).where(Property.name == "absorption_onset"))}
        spectra = session.scalar(select(Calculation).where(Calculation.step == "analysis",
                                                           Calculation.workflow == "electronic")).outputs["optics"]
    assert onsets["dft:qe:test"].value == pytest.approx(optics["onset_ev"])
    assert onsets["dft:qe:test:scf"].extra["scissor_to"] == "band_gap_ddh"
    assert len(spectra["energy_ev"]) == len(spectra["alpha_cm"]) == len(spectra["alpha_scissored_cm"]) == 1001
    assert not (root / "optics-scratch").exists()
    assert not (root / "scratch" / "_ph0").exists()  # the field-only ph.x left the SCF's scratch alone


def test_killed_electronic_run_resumes_from_the_step_it_was_in(tmp_path, mgo):  # noqa: F811
    import subprocess
    import sys

    from tests.conftest import MPI_PROCS, PSEUDOS, need_shared
    from tests.test_dielectric_workflow import kill_during

    mgo.to(filename=str(tmp_path / "MgO.json"))
    out = tmp_path / "out.json"
    argv = [sys.executable, "-c", "from tansaku.cli.app import main; main()", "--db", str(tmp_path / "cli.db"), "run",
            "electronic", str(tmp_path / "MgO.json"), "--preset", "test", "--mpi-procs", str(MPI_PROCS), "--pseudo-dir",
            str(need_shared(PSEUDOS)), "--run-dir", str(tmp_path / "runs"), "--json", str(out), "--set", "relax=false"]
    bands = tmp_path / "runs" / "1-MgO" / "bands"
    kill_during(argv, bands, lambda text: "Band Structure Calculation" in text)  # pw.x is diagonalizing the path
    scf_done = json.loads((tmp_path / "runs" / "1-MgO" / "scf" / "state.json").read_text())["finished"]
    finished = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    result = json.loads(out.read_text())[str(tmp_path / "MgO.json")]
    assert result["status"] == "done" and result["edges"]["vbm_at"] == "Γ" == result["edges"]["cbm_at"]
    state = json.loads((bands / "state.json").read_text())
    assert state["status"] == "done" and state["attempt"] == 2 and (bands / "attempt1.out").exists()
    assert json.loads((tmp_path / "runs" / "1-MgO" / "scf" / "state.json").read_text())["finished"] == scf_done


def test_spin_polarized_nio_has_masses_per_spin_channel_and_a_hybrid_gap(tmp_path):
    """Ferromagnetic NiO (high spin, 2 μB fixed, U 5 eV on Ni): the VBM is a spin-up state, the CBM a spin-down
    one. Each channel gets band and conductivity masses at its own edges; the stored masses are those of the
    channel holding the edge, and BoltzTraP2's two-channel result (one chemical potential) agrees with it."""
    from tansaku.plots.figures import band_structure

    ctx = make_ctx(tmp_path, {"hubbard_u": "reference", "ecutwfc": 40, "band_spacing": 0.3, "dense_kspacing": 0.5,
                              "hybrid": "nsc", "hybrid_functionals": "hse06"})
    nio = rocksalt(4.17, "Ni", "O")
    nio = nio.get_primitive_structure()
    # the exact exchange holds both channels' occupied orbitals: 13 up and 11 down of NiO's 24 electrons
    assert hybrid_memory(nio, ctx.settings, ctx.pseudos, 2).occupied == 24
    material_id = store(ctx, nio, "NiO")
    result = run_electronic(ctx, material_id)
    assert result.status == "done", result.reason
    edges = result.edges
    assert edges["magnetization"] == pytest.approx(2.0)
    assert [(c["name"], c["occupied"]) for c in edges["spin_channels"]] == [("up", 13), ("down", 11)]
    assert (edges["vbm_channel"], edges["cbm_channel"]) == ("up", "down")
    bands = json.loads((tmp_path / "runs" / f"{material_id}-NiO" / "bands" / "state.json").read_text())["outputs"]
    energies = np.asarray(bands["eigenvalues_ev"])
    up_cbm, down_cbm = energies[:, 13].min(), energies[:, 21 + 11].min()
    assert down_cbm < up_cbm - 0.2  # the spin-up conduction band lies far above: no carriers there at 300 K
    masses = edges["masses"]
    assert set(masses["channels"]) == {"up", "down"}
    assert masses["electrons"]["channel"] == "down" and masses["holes"]["channel"] == "up"
    assert masses["electrons"]["dos_mass"] == masses["channels"]["down"]["electrons"]["dos_mass"]
    conductivity = masses["conductivity"]
    both, alone = conductivity["electrons"]["average"], conductivity["channels"]
    # both channels under one chemical potential: the electrons sit in the spin-down band
    assert abs(both - alone["down"]["electrons"]["average"]) < 0.1 * both
    assert abs(both - alone["up"]["electrons"]["average"]) > 0.5 * both  # the other channel's mass is another
    with ctx.db.session() as session:
        stored = {p.name: p for p in session.scalars(select(Property).where(Property.material_id == material_id))}
    assert stored["m_e_band"].extra["spin_channel"] == "down"  # (on this coarse path the VBM lies off it: no m_h_band)
    assert stored["m_e"].value == pytest.approx(both) and set(stored["m_e"].extra["channels"]) == {"up", "down"}
    # the hybrid (nsc, from both channels' eigenvalues) opens NiO's gap by more than 2 eV
    assert stored["band_gap_hse06"].value > stored["band_gap"].value + 2.0
    plot = tmp_path / "bands.png"
    band_structure(bands, edges, plot, "NiO (ferromagnetic)")
    assert plot.stat().st_size > 20_000


def test_a_small_gap_gives_the_ddh_the_eps_of_a_converged_k_mesh(tmp_path, mgo):  # noqa: F811
    """Below small_gap_ev the DDH's ε∞ comes from the small-gap rule's k-mesh probes (the steps the dielectric
    workflow would run), not from a field-only ph.x on the SCF's too coarse mesh. MgO counts as small-gapped
    under small_gap_ev=10, from a 2x2x2 mesh at 1.5 Å⁻¹."""
    ctx = make_ctx(tmp_path, {**QUICK, "kspacing": 1.5, "small_gap_ev": 10.0, "small_gap_k_converge": 0.1,
                              "relax": False, "hybrid": "nsc", "hybrid_functionals": "ddh", "masses": False,
                              "band_spacing": 0.3})
    material_id = store(ctx, mgo, "MgO")
    result = run_electronic(ctx, material_id)
    assert result.status == "done", result.reason
    with ctx.db.session() as session:
        rows = {c.step: c for c in session.scalars(select(Calculation))}
    probes = rows["analysis"].outputs["k_convergence"]
    assert probes[0]["mesh"] == [2, 2, 2] and len(probes) >= 2 and "epsilon-field" not in rows
    measured = probes[-1]  # the finer of the two meshes that agree
    assert abs(probes[-2]["eps_electronic"] / measured["eps_electronic"] - 1) < 0.1
    assert abs(probes[0]["eps_electronic"] / measured["eps_electronic"] - 1) > 0.01  # the SCF's mesh was not enough
    ddh = rows["analysis"].outputs["hybrid"]["ddh-nsc"]
    assert ddh["exx_fraction"] == pytest.approx(1 / measured["eps_electronic"], rel=1e-5)
    assert all(rows[f"kmesh-{'x'.join(map(str, p['mesh']))}-eps"].status == "done" for p in probes)


def test_a_ddh_without_eps_is_skipped_with_its_reason_and_the_hse06_gap_stands(tmp_path, mgo):  # noqa: F811
    """When the DDH's ε∞ cannot be had, HSE06 (which needs none) still runs and is stored; the DDH is reported
    skipped, with why, in the analysis and the result's reason. Provoked for real: ph.x given 2 iterations per
    perturbation stops unconverged."""
    ctx = make_ctx(tmp_path, {**QUICK, "kspacing": 1.5, "small_gap_ev": 0.0, "relax": False, "masses": False,
                              "hybrid": "nsc", "niter_ph": 2, "max_attempts": 1})
    material_id = store(ctx, mgo, "MgO")
    result = run_electronic(ctx, material_id)
    assert result.status == "done", result.reason
    assert result.reason.startswith("no DDH gap: its ε∞ could not be had") and "epsilon-field" in result.reason
    with ctx.db.session() as session:
        rows = {c.step: c for c in session.scalars(select(Calculation))}
        gaps = {p.name: p.value for p in session.scalars(select(Property).where(Property.material_id == material_id))}
    assert rows["epsilon-field"].status == "failed" and "ddh-nsc" not in rows and rows["hse06-nsc"].status == "done"
    assert rows["analysis"].outputs["skipped"] == {"ddh": result.reason}
    assert set(rows["analysis"].outputs["hybrid"]) == {"hse06-nsc"}
    assert "band_gap_ddh" not in gaps and gaps["band_gap_hse06"] > gaps["band_gap"]
