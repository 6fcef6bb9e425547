"""The dielectric workflow with real pw.x and ph.x (the 'test' preset: tiny cutoff and k-mesh)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from sqlalchemy import func, select

from tansaku.active.cost import (
    DFPT_TRIPLE_IN_SCFS,
    FIELD_IN_TRIPLES,
    RELAX_IN_SCFS,
    ComputedCell,
    cpu_hours_by_material,
)
from tansaku.dft.ionic import ionic_dielectric, isotropic_born_charge
from tansaku.dft.pseudos import load_family
from tansaku.dft.qe.parsers import last_geometry, read_dyn_gamma
from tansaku.dft.settings import kmesh, preset
from tansaku.processes import pid_alive_in
from tansaku.sources.structures import FILE_SOURCE
from tansaku.store import Calculation, Material, Property, open_database
from tansaku.store.materials import ImportReport, add_structure_material
from tansaku.workflows.dielectric import DYN_FILE, relax_spec, run_dielectric, scf_spec
from tansaku.workflows.executor import LocalExecutor, QECommands
from tansaku.workflows.run import RunContext
from tansaku.workflows.state import StepState, seconds_since
from tansaku.workflows.steps import run_step
from tests.cells import rocksalt
from tests.conftest import MPI_PROCS, OXI_DB, PSEUDOS, need_quantum_espresso, need_shared
from tests.mgo_reference import REFERENCE, rerun_reaches_reference

MPI = QECommands(mpi_procs=MPI_PROCS)
# Tests of the workflow's mechanics (probes, kills, handlers), not of its values, run below the test preset's
# 55 Ry: MgO's FFT grid is 24³ instead of 27³ and its run takes about half the CPU time. 45 Ry still gives a
# stable MgO (ε_ion 9.4; 40 Ry gives 39, a soft mode). Comparisons with the stored reference keep the preset.
QUICK = {"ecutwfc": 45.0}
QUICK_SET = tuple(f"{key}={value:g}" for key, value in QUICK.items())  # the same, as --set arguments


@pytest.fixture(scope="module", autouse=True)
def quantum_espresso():
    need_quantum_espresso()


@pytest.fixture(scope="module")
def mgo() -> Structure:
    data = json.loads((need_shared(OXI_DB) / "data" / "mp-1265.json").read_text())
    return Structure.from_dict(data["structure"])


def make_ctx(tmp_path, overrides=None, name="test", commands: QECommands = MPI) -> RunContext:
    db = open_database(tmp_path / "wf.db")
    return RunContext(db, preset(name, overrides), name, load_family(need_shared(PSEUDOS)), LocalExecutor(), commands,
                      tmp_path / "runs", poll_seconds=0.2)


def store(ctx: RunContext, structure: Structure, label: str) -> int:
    with ctx.db.session() as session:
        material, _ = add_structure_material(session, structure, FILE_SOURCE, label, ImportReport())
        return material.id


def calculation_rows(ctx: RunContext) -> list[tuple[str, str]]:
    with ctx.db.session() as session:
        return sorted(session.execute(select(Calculation.step, Calculation.status)).all())


def test_mgo_end_to_end_and_rerun_skips_everything(tmp_path, mgo):
    ctx = make_ctx(tmp_path)
    material_id = store(ctx, mgo, "MgO")
    result = run_dielectric(ctx, material_id)
    assert result.status == "done", result.reason
    for key in ("band_gap", "eps_electronic", "eps_ionic"):
        assert getattr(result, key) == pytest.approx(REFERENCE[key], rel=0.02), key
    # loosely against the reference database (VASP PBEsol): ε∞ 3.16, ε_ion 6.81
    assert result.eps_electronic == pytest.approx(3.157, rel=0.25)
    assert result.eps_ionic == pytest.approx(6.810, rel=0.25)
    assert result.eps_total == pytest.approx(result.eps_electronic + result.eps_ionic)
    assert result.imaginary_modes == 0
    assert calculation_rows(ctx) == [("analysis", "done"), ("phonon", "done"), ("relax", "done"), ("scf", "done")]
    with ctx.db.session() as session:
        props = {p.name: p for p in session.scalars(select(Property).where(Property.method == "dft:qe:test"))}
        scf = session.scalar(select(Calculation).where(Calculation.step == "scf"))
        assert set(props) == {"band_gap", "eps_electronic", "eps_ionic", "eps_total", "born_charges",
                              "gamma_frequencies"}
        assert len(props["eps_ionic"].tensor) == 3 and props["eps_ionic"].calculation_id is not None
        # one definition for computed and imported Born charges: mean |Tr Z*| / 3 (the database's MgO: 1.962)
        born = props["born_charges"]
        assert born.value == pytest.approx(isotropic_born_charge(born.tensor)) and 1.7 < born.value < 2.3
        assert scf.inputs["pseudo_sha256"]["Mg"] and scf.inputs["kmesh"] == [4, 4, 4]
        assert scf.code_version.startswith("PWSCF")
        analysis = session.scalar(select(Calculation).where(Calculation.step == "analysis")).outputs
        assert analysis["symmetry_operations"] == 48 and analysis["k_points"] == 8 and analysis["kspacing"] == 0.7
        cpu = dict(session.execute(select(Calculation.step, Calculation.cpu_seconds)).all())
    scf_state = json.loads((tmp_path / "runs" / f"{material_id}-MgO" / "scf" / "state.json").read_text())
    assert 0 < scf_state["cpu_seconds"] < 2 * 2 * scf_state["seconds"] + 1  # QE's CPU figure × 2 processes
    assert cpu["scf"] == scf_state["cpu_seconds"] and cpu["phonon"] > cpu["scf"] and cpu["analysis"] is None
    # the cost model learns from QE's CPU times, not from wall clocks
    assert cpu_hours_by_material(ctx.db, "test", 2)[material_id] == pytest.approx(
        (cpu["relax"] + cpu["scf"] + cpu["phonon"]) / 3600)
    started = time.perf_counter()
    again = run_dielectric(ctx, material_id)
    assert time.perf_counter() - started < 5  # every step is read back from its state file
    assert again.eps_ionic == pytest.approx(result.eps_ionic, rel=1e-12)
    assert len(calculation_rows(ctx)) == 4
    # a wiped scratch (as clusters do) before ph.x ran: the SCF runs again, its earlier time and log kept
    material_dir = tmp_path / "runs" / f"{material_id}-MgO"
    shutil.rmtree(material_dir / "scratch")
    shutil.rmtree(material_dir / "phonon")
    wiped = run_dielectric(ctx, material_id)
    assert wiped.status == "done", wiped.reason
    assert wiped.eps_ionic == pytest.approx(result.eps_ionic, rel=1e-6)
    rerun = json.loads((material_dir / "scf" / "state.json").read_text())
    assert rerun["cpu_seconds"] > scf_state["cpu_seconds"] and rerun["attempt"] == 1
    assert (material_dir / "scf" / "before-rerun1.out").exists()
    assert calculation_rows(ctx) == [("analysis", "done"), ("phonon", "done"), ("relax", "done"), ("scf", "done")]
    # the same run directory with another cutoff: its steps were not computed with it, so none is taken
    other = make_ctx(tmp_path, {"ecutwfc": ctx.settings.ecutwfc + 5})
    refused = run_dielectric(other, material_id)
    assert refused.status == "failed" and "relax was computed from another input" in refused.reason
    assert f"- ecutwfc = {ctx.settings.ecutwfc:g};" in refused.reason  # what differs, both ways
    assert f"+ ecutwfc = {ctx.settings.ecutwfc + 5:g}" in refused.reason
    assert "Use another --run-dir" in refused.reason
    assert calculation_rows(ctx) == [("analysis", "done"), ("phonon", "done"), ("relax", "done"), ("scf", "done")]
    with ctx.db.session() as session:
        assert session.scalar(select(Property.value).where(Property.name == "eps_ionic")) == pytest.approx(
            result.eps_ionic, rel=1e-6)


def test_automatic_kmesh_refines_until_eps_settles_then_runs_on_the_coarser_mesh(tmp_path, mgo):
    ctx = make_ctx(tmp_path, {**QUICK, "k_converge": 0.1, "k_coarsest": 1.5, "relax": False})
    material_id = store(ctx, mgo, "MgO")
    result = run_dielectric(ctx, material_id)
    assert result.status == "done", result.reason
    with ctx.db.session() as session:
        rows = {c.step: c for c in session.scalars(select(Calculation))}
    probes = rows["analysis"].outputs["k_convergence"]
    assert len(probes) >= 2 and probes[0]["mesh"] == [2, 2, 2]  # 1.5 Å⁻¹ on MgO's primitive cell
    meshes = [p["mesh"] for p in probes]
    assert len({tuple(m) for m in meshes}) == len(meshes)  # each probe a new mesh
    last, before = probes[-1], probes[-2]
    assert abs(before["eps_electronic"] / last["eps_electronic"] - 1) < 0.1
    assert all(abs(a["eps_electronic"] / b["eps_electronic"] - 1) >= 0.1 or abs(a["band_gap"] - b["band_gap"]) >= 0.05
               for a, b in zip(probes[:-2], probes[1:-1], strict=True))  # it stopped at the first settled pair
    assert result.kspacing == before["spacing"] and rows["scf"].inputs["kmesh"] == before["mesh"]
    probe_rows = [step for step in rows if step.startswith("kmesh-")]
    assert len(probe_rows) == 2 * len(probes) and all(rows[s].status == "done" for s in probe_rows)
    assert rows[f"kmesh-{'x'.join(map(str, last['mesh']))}-scf"].inputs["kmesh"] == last["mesh"]
    assert not list((tmp_path / "runs" / f"{material_id}-MgO").glob("kmesh-*-scratch"))  # probes leave no wavefunctions
    # same cell, same mesh: the probe's ε∞ (from ph.x's log) is the full run's (from its dynamical matrix)
    assert result.eps_electronic == pytest.approx(before["eps_electronic"], rel=1e-4)


def test_a_gap_below_small_gap_ev_takes_eps_and_born_charges_from_the_mesh_they_need(tmp_path, mgo):
    """MgO's gap (~4.5 eV) counts as small under small_gap_ev=10; 1.5 Å⁻¹ (a 2x2x2 mesh) is far from converged.
    Its O is moved off centre and the cell strained so that no symmetry is left and Z* has nine distinct
    components: read from a field-only probe's log they must equal a whole ph.x's dynamical matrix."""
    from tansaku.workflows.kmesh_convergence import displacements_name

    cell = mgo.copy()
    cell.apply_strain([0.02, -0.03, 0.05])
    cell.translate_sites([1], [0.05, 0.09, 0.14])
    # odd meshes allowed: the probes go 2x2x2, 3x3x3, 4x4x4 on this cell without symmetry, not up to 6x6x6; ε∞
    # within 20 % settles at 4x4x4 (3x3x3 → 4x4x4: 15 %; a 5x5x5 probe and 4x4x4 displacements cost 100 s more)
    overrides = {"kspacing": 1.5, "small_gap_ev": 10.0, "small_gap_k_converge": 0.2, "relax": False,
                 "even_kmesh": False, **QUICK}
    ctx = make_ctx(tmp_path, overrides)
    material_id = store(ctx, cell, "MgO")
    root = tmp_path / "runs" / f"{material_id}-MgO"
    result = run_dielectric(ctx, material_id)
    assert result.status == "done", result.reason

    def stored() -> tuple[dict, dict, dict]:
        with ctx.db.session() as session:
            rows = {c.step: c for c in session.scalars(select(Calculation))}
            props = list(session.scalars(select(Property)))
            return rows, {p.name: p.tensor for p in props}, {p.name: p.value for p in props}

    def ph_input(step: str) -> str:
        return (root / step / "input.in").read_text().lower()

    rows, tensors, values = stored()
    probes = rows["analysis"].outputs["k_convergence"]
    assert probes[0]["mesh"] == [2, 2, 2] and probes[0]["spacing"] == 1.5  # measured from kspacing down
    # the two meshes that agreed: the finer gives ε∞, Z* and the gap, the coarser's SCF the displacements
    chosen, measured = probes[-2], probes[-1]
    tag, fine = ("x".join(map(str, p["mesh"])) for p in (chosen, measured))
    assert chosen["mesh"] != [2, 2, 2] and abs(measured["eps_electronic"] / chosen["eps_electronic"] - 1) < 0.2
    assert result.kspacing == measured["spacing"] and result.scf_step == f"kmesh-{fine}-scf"
    displacements = displacements_name(tuple(chosen["mesh"]))
    assert displacements == f"phonon-displacements-{tag}"  # the name the cost model parses back
    assert rows[displacements].status == "done"
    assert rows[displacements].inputs["settings"]["kspacing"] == chosen["spacing"]  # its row says which mesh
    assert f"prefix = 'kmesh-{tag}-scf'" in ph_input(displacements) and "epsil = .false." in ph_input(displacements)
    assert not {"phonon", f"phonon-{tag}", f"scf-{tag}", "kmesh-2x2x2-scf"} & set(rows)  # nothing ran twice
    assert "prefix = 'scf'" in ph_input("kmesh-2x2x2-eps")  # the fixed mesh's probe reads the workflow's SCF
    assert set(result.steps) >= {"scf", f"kmesh-{tag}-scf", f"kmesh-{tag}-eps", f"kmesh-{fine}-eps", displacements}
    assert rows["analysis"].outputs["force_constants_kspacing"] == chosen["spacing"]
    assert values["band_gap"] == pytest.approx(rows[f"kmesh-{fine}-scf"].outputs["gap"]) != rows["scf"].outputs["gap"]
    assert result.eps_electronic == pytest.approx(measured["eps_electronic"], rel=1e-6)
    assert list(root.glob("kmesh-*-scratch")) == [root / f"kmesh-{tag}-scratch"]  # the others' saves are gone
    again = run_dielectric(ctx, material_id)  # resumed: the same meshes, nothing recomputed
    assert again.scf_step == result.scf_step and again.eps_ionic == pytest.approx(result.eps_ionic, rel=1e-12)

    # small_gap_split: the displacements on the fixed mesh instead, ε∞ and the gap still the probe's
    split = run_dielectric(make_ctx(tmp_path, {**overrides, "small_gap_split": True}), material_id)
    assert split.status == "done" and split.eps_electronic == pytest.approx(result.eps_electronic, rel=1e-12)
    assert "prefix = 'scf'" in ph_input(displacements_name((2, 2, 2))) and split.eps_ionic != result.eps_ionic

    # settled on the fixed mesh itself (a loose tolerance): its displacements must give the force constants, and
    # its field-only probe (Z* read from the log) the ε∞ and Z* of one whole ph.x on that mesh (small_gap_ev=0)
    loose = run_dielectric(make_ctx(tmp_path, {**overrides, "small_gap_k_converge": 10, "k_converge_gap_ev": 9}),
                           material_id)
    second = "x".join(map(str, probes[1]["mesh"]))
    assert loose.scf_step == f"kmesh-{second}-scf" and loose.kspacing == probes[1]["spacing"], probes
    loose_rows, loose_tensors, _ = stored()
    assert loose_rows["analysis"].outputs["force_constants_kspacing"] == 1.5
    whole = run_dielectric(make_ctx(tmp_path, {**overrides, "small_gap_ev": 0.0}), material_id)
    assert whole.scf_step == "scf" and "epsil = .true." in ph_input("phonon")
    _, whole_tensors, _ = stored()
    assert loose_tensors["gamma_frequencies"] == pytest.approx(whole_tensors["gamma_frequencies"], abs=1e-6)
    dyn = read_dyn_gamma(root / "phonon" / DYN_FILE)
    field = StepState.load(root / "kmesh-2x2x2-eps", "kmesh-2x2x2-eps").outputs
    born = np.asarray(field["born_charges"])
    assert np.abs(born - born.transpose(0, 2, 1)).max() > 5e-4  # not symmetric: a transposition would show
    assert born == pytest.approx(dyn.born_charges, abs=2e-5)  # the log prints five decimals
    assert np.allclose(field["eps_electronic"], dyn.eps_electronic, atol=1e-6)
    assert ionic_dielectric(dyn.force_constants, born, dyn.masses_amu, dyn.volume_bohr3).average == pytest.approx(
        whole.eps_ionic, rel=1e-3)


def test_a_run_killed_in_a_later_probe_keeps_that_probes_scf(tmp_path, mgo):
    """Killed in the second k-mesh probe's field-only ph.x, then resumed: walking past the finished first probe
    must not remove the second probe's SCF save (it once did: a shared scratch, the SCF ran again)."""
    from tansaku.dft.settings import kmesh
    from tansaku.workflows.kmesh_convergence import probe_spacings

    mgo.to(filename=str(tmp_path / "MgO.json"))
    settings = ("kspacing=1.5", "small_gap_ev=10", "small_gap_k_converge=0.1", "relax=false", *QUICK_SET)
    argv = cli_argv(tmp_path, tmp_path / "MgO.json", *settings)
    second = "x".join(map(str, kmesh(mgo, probe_spacings(mgo, 1.5)[1], True)))
    root = tmp_path / "runs" / "1-MgO"
    kill_during(argv, root / f"kmesh-{second}-eps", lambda text: "Electric Fields Calculation" in text)
    finished = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    scf, eps = (StepState.load(root / f"kmesh-{second}-{kind}", f"kmesh-{second}-{kind}") for kind in ("scf", "eps"))
    assert eps.attempt == 2 and eps.status == "done"
    assert scf.attempt == 1 and not list((root / f"kmesh-{second}-scf").glob("before-rerun*"))


def test_automatic_kmesh_on_a_metal_stops_with_the_metal_reason_not_a_probe_failure(tmp_path):
    # rock-salt TiO spin-unpolarized: an even electron count, so only a calculation can tell it is metallic
    tio = rocksalt(4.18, "Ti", "O")
    ctx = make_ctx(tmp_path, {"k_converge": 0.1, "k_coarsest": 1.5, "spin": "off"})
    result = run_dielectric(ctx, store(ctx, tio, "TiO"))
    assert result.status == "metal" and "below the metal threshold" in result.reason, result.reason
    probes = sorted(p.name for p in (tmp_path / "runs").glob("*-TiO/kmesh-*"))
    assert probes and all(p.endswith("-scf") for p in probes)  # no electric-field ph.x on a metal


def cli_argv(tmp_path, structure_file, *settings: str) -> list[str]:
    argv = [sys.executable, "-c", "from tansaku.cli.app import main; main()", "--db", str(tmp_path / "cli.db"), "run",
            "dielectric", str(structure_file), "--preset", "test", "--mpi-procs", str(MPI_PROCS),
            "--pseudo-dir", str(PSEUDOS), "--run-dir", str(tmp_path / "runs"), "--json", str(tmp_path / "out.json")]
    return argv + set_options(*settings)


def set_options(*settings: str) -> list[str]:
    """'key=value' settings as the CLI's repeated --set options."""
    return [x for item in settings for x in ("--set", item)]


def kill_during(argv: list[str], step_dir, ready) -> float:
    """Start the CLI, wait until `ready(log text)` holds for the step's running job, then SIGKILL the controller
    and the job (which runs in its own process group), as a node failure would. Returns how long the killed
    attempt had run."""
    process = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state, log = step_dir / "state.json", step_dir / "output.out"
    deadline = time.time() + 300
    while not (state.exists() and json.loads(state.read_text())["status"] == "running"
               and log.exists() and ready(log.read_text())):
        assert process.poll() is None, f"the run ended before the moment to kill it in {step_dir.name}"
        assert time.time() < deadline, f"{step_dir.name} did not reach the moment to kill it in 300 s"
        time.sleep(0.05)
    job = json.loads(state.read_text())
    os.killpg(process.pid, signal.SIGKILL)
    os.killpg(int(job["job_id"]), signal.SIGKILL)
    process.wait()
    assert json.loads(state.read_text())["status"] == "running"
    return seconds_since(job["started"])


def test_killed_run_resumes_with_the_same_result(tmp_path, mgo):
    mgo.to(filename=str(tmp_path / "MgO.json"))
    db = tmp_path / "cli.db"
    argv = cli_argv(tmp_path, tmp_path / "MgO.json")
    phonon_state = tmp_path / "runs" / "1-MgO" / "phonon" / "state.json"
    log = phonon_state.parent / "output.out"
    # Kill once ph.x has finished its electric-field part (ε∞ and Born charges, checkpointed) and works on phonons.
    killed_after = kill_during(argv, phonon_state.parent, lambda text: "Representation #   1 modes" in text)
    assert not (tmp_path / "out.json").exists()

    rerun_reaches_reference(argv, tmp_path / "out.json", str(tmp_path / "MgO.json"))
    state = StepState.load(phonon_state.parent, "phonon")
    assert state.attempt == 2 and state.status == "done"
    # The second attempt went on from ph.x's checkpoint instead of starting over: no electric-field part again.
    assert [h["handler"] for h in state.handlers] == ["resume_interrupted"]
    assert "recover" in (phonon_state.parent / "input.in").read_text()
    assert "End of electric fields calculation" in (phonon_state.parent / "attempt1.out").read_text()
    assert "Electric Fields Calculation" not in log.read_text()
    last_attempt = (datetime.fromisoformat(state.finished) - datetime.fromisoformat(state.started)).total_seconds()
    # the killed attempt's time (its electric-field part, up to its log's last write) is counted too
    assert killed_after > 1 and state.seconds > last_attempt + killed_after - 1, (state.seconds, last_attempt)
    database = open_database(db)
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Calculation)) == 4
        assert session.scalar(select(func.count()).select_from(Material)) == 1


def test_failed_steps_fail_again_until_retry_failed_gives_them_new_attempts(tmp_path, mgo):
    mgo.to(filename=str(tmp_path / "MgO.json"))
    argv = cli_argv(tmp_path, tmp_path / "MgO.json", "relax=false", *QUICK_SET)
    broken = subprocess.run(argv + ["--ph-command", "false"], capture_output=True, text=True)  # a ph.x that fails
    assert broken.returncode != 0
    phonon = tmp_path / "runs" / "1-MgO" / "phonon"
    failed = StepState.load(phonon, "phonon")
    assert failed.status == "failed" and failed.attempt >= 1
    again = subprocess.run(argv, capture_output=True, text=True)  # the cause fixed, but not asked to retry
    assert again.returncode != 0 and StepState.load(phonon, "phonon").attempt == failed.attempt
    assert json.loads((tmp_path / "out.json").read_text())[str(tmp_path / "MgO.json")]["status"] == "failed"
    retried = subprocess.run(argv + ["--retry-failed"], capture_output=True, text=True)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    state = StepState.load(phonon, "phonon")
    assert state.status == "done" and state.attempt == 1 and (phonon / f"before-rerun{failed.attempt}.out").exists()
    out = json.loads((tmp_path / "out.json").read_text())[str(tmp_path / "MgO.json")]
    assert out["status"] == "done" and out["eps_ionic"] > 0


def test_a_qe_error_no_handler_knows_fails_at_once_instead_of_repeating(tmp_path, mgo):
    ctx = make_ctx(tmp_path, {"relax": False, "extra_bands": -6})  # 2 bands for 8 occupied ones: pw.x refuses
    material_id = store(ctx, mgo, "MgO")
    result = run_dielectric(ctx, material_id)
    assert result.status == "failed" and "QE says" in result.reason and "not retried" in result.reason, result.reason
    state = StepState.load(tmp_path / "runs" / f"{material_id}-MgO" / "scf", "scf")
    assert state.status == "failed" and state.attempt == 1


def test_killed_relaxation_continues_from_its_last_geometry(tmp_path, mgo):
    displaced = mgo.copy()
    displaced.translate_sites([1], [0.03, 0.03, 0.03])  # along the 3-fold axis: few k-points, several BFGS steps
    displaced.to(filename=str(tmp_path / "MgO.json"))
    settings = ["standardize=false", *QUICK_SET]
    relax_dir = tmp_path / "runs" / "1-MgO" / "relax"
    kill_during(cli_argv(tmp_path, tmp_path / "MgO.json", *settings), relax_dir,
                lambda text: text.count("ATOMIC_POSITIONS") >= 2 and "Begin final coordinates" not in text)
    killed_log = (relax_dir / "output.out").read_text()

    # Resume the relaxation step alone (the rest of the workflow is covered above).
    ctx = make_ctx(tmp_path, {**QUICK, "standardize": False})
    state = run_step(relax_spec(ctx, tmp_path / "runs" / "1-MgO", displaced, "relax"), relax_dir, ctx.executor,
                     ctx.commands, 4, 0.2)
    assert state.status == "done" and state.attempt == 2
    assert [(h["handler"], h["error"]) for h in state.handlers] == [("resume_interrupted", "interrupted")]
    assert state.handlers[0]["changed"]["structure"].startswith("continued from the last geometry")
    # The second attempt started from the geometry the killed one had reached, not from the input.
    reached = last_geometry(killed_log, displaced.lattice, len(displaced))
    assert reached is not None
    assert reached.frac_coords[1] != pytest.approx(displaced.frac_coords[1], abs=1e-3)
    block = (relax_dir / "input.in").read_text().split("ATOMIC_POSITIONS crystal\n")[1].splitlines()[:2]
    started = [[float(x) for x in line.split()[1:4]] for line in block]
    assert sum(started, []) == pytest.approx(reached.frac_coords.ravel().tolist(), abs=1e-6)
    relaxed = Structure.from_dict(state.outputs["structure"])
    offset = relaxed.frac_coords[1] - relaxed.frac_coords[0]
    assert offset == pytest.approx([0.5, 0.5, 0.5], abs=2e-3)  # back on the rock-salt site
    # A block cut short by the kill is passed over for the last whole one.
    cut = killed_log[: killed_log.rindex("ATOMIC_POSITIONS")] + "ATOMIC_POSITIONS (crystal)\nMg  0.1 0.1 0.1\n"
    before = last_geometry(cut, displaced.lattice, len(displaced))
    assert before is not None and len(before) == 2


def test_scf_not_converged_is_fixed_by_its_handler(tmp_path, mgo):
    ctx = make_ctx(tmp_path, {**QUICK, "electron_maxstep": 3, "relax": False})
    result = run_dielectric(ctx, store(ctx, mgo, "MgO"))
    assert result.status == "done", result.reason
    state = StepState.load(tmp_path / "runs" / "1-MgO" / "scf", "scf")
    assert state.attempt == 2
    assert state.handlers[0]["error"] == "scf_not_converged"
    assert state.handlers[0]["changed"] == {"electrons": {"mixing_beta": 0.3, "electron_maxstep": 300}}
    with ctx.db.session() as session:
        scf = session.scalar(select(Calculation).where(Calculation.step == "scf"))
        assert scf.attempts == 2 and scf.inputs["handlers"][0]["handler"] == "scf_not_converged"


def test_relaxation_out_of_steps_restarts_from_its_last_geometry(tmp_path, mgo):
    distorted = mgo.copy()
    distorted.translate_sites([1], [0.03, 0.01, 0.0])
    ctx = make_ctx(tmp_path, {**QUICK, "relax_nstep": 1, "standardize": False})
    spec = relax_spec(ctx, tmp_path / "runs" / "x", distorted, "relax")
    state = run_step(spec, tmp_path / "runs" / "x" / "relax", ctx.executor, ctx.commands, 6, 0.2)
    assert state.status == "done"
    assert state.handlers and all(h["handler"] == "relax_restart" for h in state.handlers)
    assert "continued from the last geometry" in state.handlers[0]["changed"]["structure"]
    assert Structure.from_dict(state.structure) != distorted  # the input moved on


def test_hubbard_u_on_zinc_d_opens_the_zno_gap(tmp_path):
    """DFT+U pushes the filled Zn 3d band down, away from the O 2p valence band: the gap must grow."""
    data = json.loads((need_shared(OXI_DB) / "data" / "mp-2133.json").read_text())
    zno = Structure.from_dict(data["structure"])
    gaps = {}
    for u in (0.0, 5.0):
        ctx = make_ctx(tmp_path / f"u{u:g}", {"hubbard_u": {"Zn": u}, "ecutwfc": 40.0})
        state = run_step(scf_spec(ctx, ctx.run_root, zno), ctx.run_root / "scf", ctx.executor, ctx.commands,
                         ctx.settings.max_attempts, ctx.poll_seconds)
        assert ("Hubbard_U(2) = 5" in (ctx.run_root / "scf" / "input.in").read_text()) == bool(u)
        gaps[u] = state.outputs["gap"]
    assert gaps[5.0] > gaps[0.0] + 0.2, gaps


def test_metals_and_bad_materials_get_clear_reasons(tmp_path):
    ctx = make_ctx(tmp_path)
    calcium = Structure(Lattice.cubic(5.58), ["Ca"] * 4, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    sodium = Structure(Lattice.cubic(4.23), ["Na", "Na"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    sodium_prim = sodium.get_primitive_structure()
    ca = run_dielectric(ctx, store(ctx, calcium, "Ca"))
    assert ca.status == "metal" and "below the metal threshold" in ca.reason
    na = run_dielectric(ctx, store(ctx, sodium_prim, "Na"))
    assert na.status == "metal" and "odd number of valence electrons" in na.reason
    assert "magnetic" not in na.reason + ca.reason
    coo = rocksalt(4.26, "Co", "O")
    ctx_off = RunContext(ctx.db, preset("test", {"spin": "off"}), "test", ctx.pseudos, ctx.executor, MPI,
                         ctx.run_root)
    co = run_dielectric(ctx_off, store(ctx, coo.get_primitive_structure(), "CoO"))
    assert co.status == "metal" and "Co2+ (d7) carries a magnetic moment" in co.reason, co.reason
    assert "spin=auto" in co.reason
    small = load_family(need_shared(PSEUDOS))
    small.files = {k: v for k, v in small.files.items() if k in ("Mg", "O")}
    ctx_small = RunContext(ctx.db, ctx.settings, "test", small, ctx.executor, MPI, ctx.run_root)
    cao = rocksalt(4.8, "Ca", "O")
    bad = run_dielectric(ctx_small, store(ctx, cao, "CaO"))
    assert bad.status == "failed" and "no pseudopotential for Ca in family" in bad.reason
    with ctx.db.session() as session:
        session.add(Material(formula="SrTiO3", reduced_formula="SrTiO3", elements="O,Sr,Ti", nelements=3,
                             source="csv:x", source_id="row 1"))
    with ctx.db.session() as session:
        comp_id = session.scalar(select(Material.id).where(Material.source == "csv:x"))
    assert "has no structure" in run_dielectric(ctx, comp_id).reason
    alloy = Structure(Lattice.cubic(4.5), [{"Mg": 0.5, "Ca": 0.5}, "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    mixed = run_dielectric(ctx, store(ctx, alloy, "MgCaO-alloy"))
    assert mixed.status == "failed" and "disordered or partially occupied structure (site Ca:0.5, Mg:0.5" in \
        mixed.reason and "DFT needs an ordered cell" in mixed.reason, mixed.reason
    assert not any(status == "done" for step, status in calculation_rows(ctx) if step == "phonon")


def test_ferromagnetic_insulator_scf_has_a_fixed_moment_and_a_gap(tmp_path):
    """LiCrO2 (Cr3+, d3) with U: two spins, 3 μB fixed per cell, a gap between the spin-up t2g and eg.

    Only the SCF here: DFPT+U with two spins takes minutes even at Γ-like meshes (see the issue notes for a
    full run). Spin-unpolarized, this cell has 29 electrons and is refused as a metal.
    """
    ctx = make_ctx(tmp_path, {"hubbard_u": "Cr:3", "ecutwfc": 30.0, "kspacing": 2.0, "even_kmesh": False})
    layered = Structure.from_spacegroup("R-3m", Lattice.hexagonal(2.90, 14.40), ["Li", "Cr", "O"],
                                        [[0, 0, 0.5], [0, 0, 0], [0, 0, 0.262]]).get_primitive_structure()
    state = run_step(scf_spec(ctx, ctx.run_root, layered), ctx.run_root / "scf", ctx.executor, ctx.commands,
                     ctx.settings.max_attempts, ctx.poll_seconds)
    text = (ctx.run_root / "scf" / "input.in").read_text()
    assert "nspin = 2" in text and "tot_magnetization = 3" in text and "Hubbard_U(1) = 3" in text
    assert state.outputs["magnetization"] == pytest.approx(3.0, abs=1e-6)
    assert state.outputs["gap"] > 1.0, state.outputs


def test_a_reused_process_number_is_not_mistaken_for_the_step_job(tmp_path):
    """After a reboot a step's recorded pid may belong to another process: only one working in the step's
    directory counts as the job to wait for."""
    step_dir, elsewhere = tmp_path / "phonon", tmp_path / "other"
    step_dir.mkdir()
    elsewhere.mkdir()
    process = subprocess.Popen(["sleep", "30"], cwd=elsewhere)
    try:
        assert pid_alive_in(process.pid, elsewhere)
        assert not pid_alive_in(process.pid, step_dir)
    finally:
        process.kill()
        process.wait()
    assert not pid_alive_in(process.pid, elsewhere)


def test_a_gap_run_is_estimated_from_gap_runs_and_a_whole_run_from_whole_runs(tmp_path, mgo):
    from tansaku.active.cost import CostEstimator, cost_size, prior_scale
    from tansaku.workflows.dielectric import run_gap

    ctx = make_ctx(tmp_path)
    material_id = store(ctx, mgo, "MgO")
    # before any run, each workflow's own prior: a gap run's relaxation and SCF cost less per unit at this
    # preset's cut-off than the whole workflow does (cost_prior.md)
    first = CostEstimator(ctx.db, ctx, gap_only=True)
    assert first.model.n_runs == 0 and first.estimate([material_id])[0] == pytest.approx(
        prior_scale("test", gap_only=True) * cost_size(mgo, ctx.settings, ctx.pseudos, gap_only=True), rel=1e-9)
    assert prior_scale("test", gap_only=True) < prior_scale("test")
    assert run_gap(ctx, material_id).status == "done"
    assert calculation_rows(ctx) == [("relax", "done"), ("scf", "done")]  # no ph.x for a gap

    def cpu_hours(*steps):
        with ctx.db.session() as session:
            return sum(session.scalars(select(Calculation.cpu_seconds).where(Calculation.step.in_(steps)))) / 3600

    gap_costs = CostEstimator(ctx.db, ctx, gap_only=True)
    assert gap_costs.model.n_runs == 1  # one run: the estimate for it is its own CPU time
    assert gap_costs.estimate([material_id])[0] == pytest.approx(cpu_hours("relax", "scf"), rel=1e-9)
    half = CostEstimator(ctx.db, ctx)
    assert half.model.n_runs == 0  # relaxation and SCF are not a dielectric run's cost
    plan = half.explain([material_id])[0]  # what `run dielectric --estimate` prints: a half-done run for its rest
    cell = ComputedCell.of(mgo, ctx.settings, ctx.pseudos)
    scf = cell.points(kmesh(cell.structure, ctx.settings.kspacing, ctx.settings.even_kmesh)) * cell.scf_work
    phonon = scf / cell.scf_work * cell.dfpt_work * DFPT_TRIPLE_IN_SCFS * (2 + FIELD_IN_TRIPLES)
    assert not plan["finished"] and plan["steps_done"] == ["relax", "scf"]
    assert plan["cpu_hours"] == pytest.approx(half.estimate([material_id])[0] * phonon / (
        scf * (RELAX_IN_SCFS + 1) + phonon), rel=1e-9)  # the ph.x it has left, not the relaxation and SCF again
    assert (plan["formula"], plan["atoms"], plan["probes"]) == ("MgO", 2, False)

    assert run_dielectric(ctx, material_id).status == "done"  # reuses both steps, adds the phonons
    whole = CostEstimator(ctx.db, ctx)
    assert whole.explain([material_id])[0] | {"stored_gap": None} == plan | {
        "finished": True, "cpu_hours": 0.0, "stored_gap": None,  # finished: nothing left to pay for
        "steps_done": ["analysis", "phonon", "relax", "scf"]}
    assert whole.model.n_runs == 1 and whole.weights.relax_runs == 0  # one run: the step weights stay the prior
    learned = CostEstimator(ctx.db, ctx, weights_min_runs=1).weights
    # ph.x moves 2 atoms and the field; its work per k-point is on the 8 occupied bands, the SCF's on all
    assert learned.relax == pytest.approx(cpu_hours("relax") / cpu_hours("scf"))
    assert learned.dfpt_triple == pytest.approx(
        cpu_hours("phonon") / cpu_hours("scf") * cell.scf_work / cell.dfpt_work / (2 + FIELD_IN_TRIPLES))
    assert whole.estimate([material_id])[0] == pytest.approx(cpu_hours("relax", "scf", "phonon"), rel=1e-9)
    assert CostEstimator(ctx.db, ctx, gap_only=True).estimate([material_id])[0] == pytest.approx(
        cpu_hours("relax", "scf"), rel=1e-9)
