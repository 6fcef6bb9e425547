"""The SLURM executor against a real single-node cluster (.ci/slurm.sh starts it in CI) and real pw.x/ph.x."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from pymatgen.core import Structure
from sqlalchemy import select

from tansaku.dft.pseudos import load_family
from tansaku.dft.settings import preset
from tansaku.sources.structures import FILE_SOURCE
from tansaku.store import Calculation, open_database
from tansaku.store.materials import ImportReport, add_structure_material
from tansaku.workflows.dielectric import run_dielectric
from tansaku.workflows.executor import CommandJob, JobState, QECommands
from tansaku.workflows.run import RunContext
from tansaku.workflows.slurm import SlurmExecutor, SlurmProfile, job_fields
from tests.conftest import MPI_PROCS, OXI_DB, PSEUDOS, need_shared
from tests.mgo_reference import REFERENCE, rerun_reaches_reference
from tests.serving import serving
from tests.test_serve import get_json

# one pytest-xdist worker runs these (make test): the jobs of one small SLURM cluster, one test at a time
pytestmark = pytest.mark.xdist_group("slurm")

LAUNCHER = "mpirun --allow-run-as-root -np {n}"  # Debian's OpenMPI QE cannot be direct-launched by srun
PROFILE = f'walltime = "00:10:00"\nlauncher = "{LAUNCHER}"\nsetup = ["export OMPI_MCA_rmaps_base_oversubscribe=1"]\n'


@pytest.fixture(scope="module", autouse=True)
def slurm_cluster():
    if not os.environ.get("TANSAKU_TEST_SLURM"):
        if os.environ.get("CI"):
            pytest.fail("TANSAKU_TEST_SLURM is not set: .ci/run starts a SLURM cluster and sets it")
        pytest.skip("no SLURM test cluster (run under .ci/run, or source .ci/slurm.sh)")
    if not (shutil.which("pw.x") and shutil.which("ph.x")):
        pytest.fail("pw.x/ph.x missing: 'make test' installs Quantum ESPRESSO")


@pytest.fixture(scope="module")
def mgo() -> Structure:
    data = json.loads((need_shared(OXI_DB) / "data" / "mp-1265.json").read_text())
    return Structure.from_dict(data["structure"])


def wait_for(predicate, timeout=300.0, every=0.3):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("timed out waiting")


def state_of(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def make_ctx(tmp_path, profile: SlurmProfile, commands: QECommands, overrides=None) -> RunContext:
    db = open_database(tmp_path / "wf.db")
    return RunContext(db, preset("test", overrides), "test", load_family(need_shared(PSEUDOS)),
                      SlurmExecutor(profile), commands, tmp_path / "runs", poll_seconds=0.3)


def store(ctx: RunContext, structure: Structure) -> int:
    with ctx.db.session() as session:
        material, _ = add_structure_material(session, structure, FILE_SOURCE, "MgO", ImportReport())
        return material.id


def test_mgo_through_slurm_survives_a_killed_controller_without_resubmitting(tmp_path, mgo):
    mgo.to(filename=str(tmp_path / "MgO.json"))
    (tmp_path / "profile.toml").write_text(PROFILE)
    db = tmp_path / "cli.db"
    argv = [sys.executable, "-c", "from tansaku.cli.app import main; main()", "--db", str(db), "run", "dielectric",
            str(tmp_path / "MgO.json"), "--preset", "test", "--mpi-procs", str(MPI_PROCS), "--pseudo-dir", str(PSEUDOS),
            "--run-dir", str(tmp_path / "runs"), "--executor", "slurm", "--slurm-profile",
            str(tmp_path / "profile.toml"), "--json", str(tmp_path / "out.json")]
    process = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    phonon = tmp_path / "runs" / "1-MgO" / "phonon" / "state.json"
    before = wait_for(lambda: (s := state_of(phonon)) and s["status"] == "running" and s)
    os.killpg(process.pid, signal.SIGKILL)  # the controller dies; the batch job lives on in SLURM
    process.wait()
    assert job_fields(before["job_id"])["JobState"] in ("PENDING", "RUNNING", "COMPLETING", "COMPLETED")
    with serving(db) as url:  # the web page's Jobs view asks SLURM too
        step = next(s for s in get_json(f"{url}/api/jobs") if s["step"] == "phonon")
    assert step["executor"] == "slurm" and step["job_id"] == before["job_id"]
    assert step["scheduler_state"] in ("PENDING", "RUNNING", "COMPLETING", "COMPLETED")

    rerun_reaches_reference(argv, tmp_path / "out.json", str(tmp_path / "MgO.json"))
    after = state_of(phonon)
    assert after["job_id"] == before["job_id"] and after["attempt"] == 1  # reattached, not resubmitted
    assert len(list(phonon.parent.glob("phonon.slurm-*.out"))) == 1
    listed = subprocess.run([*argv[:5], "jobs", "--all", "--json"], capture_output=True, text=True, timeout=60)
    jobs = json.loads(listed.stdout)
    assert {j["step"] for j in jobs} >= {"relax", "scf", "phonon"}
    assert all(j["executor"] == "slurm" and j["status"] == "done" for j in jobs)


def test_cancelled_job_is_marked_cancelled_not_retried(tmp_path, mgo):
    ctx = make_ctx(tmp_path, SlurmProfile(walltime="00:10:00"), QECommands(), {"relax": False})
    material_id = store(ctx, mgo)
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(r=run_dielectric(ctx, material_id)))
    worker.start()
    scf = tmp_path / "runs" / f"{material_id}-MgO" / "scf" / "state.json"
    job_id = wait_for(lambda: (s := state_of(scf)) and s["status"] == "running" and s["job_id"])
    subprocess.run(["scancel", job_id], check=True)
    worker.join(timeout=120)
    assert result["r"].status == "cancelled", result["r"].reason
    assert state_of(scf)["attempt"] == 1 and state_of(scf)["status"] == "cancelled"
    with ctx.db.session() as session:
        calc = session.scalar(select(Calculation).where(Calculation.step == "scf"))
        assert calc.status == "cancelled" and calc.job_id == job_id


def test_walltime_kill_is_restarted_by_the_handler(tmp_path, mgo):
    # pw.x behind a wrapper that is too slow the first time: SLURM kills it at the 1-minute limit.
    wrapper = tmp_path / "slow-once-pw.sh"
    wrapper.write_text("#!/bin/bash\nif [ ! -e slow.done ]; then touch slow.done; sleep 600; fi\nexec pw.x \"$@\"\n")
    wrapper.chmod(0o755)
    ctx = make_ctx(tmp_path, SlurmProfile(walltime="00:01:00"), QECommands(pw=str(wrapper), mpi_procs=MPI_PROCS),
                   {"relax": False})
    material_id = store(ctx, mgo)
    result = run_dielectric(ctx, material_id)
    assert result.status == "done", result.reason
    scf = state_of(tmp_path / "runs" / f"{material_id}-MgO" / "scf" / "state.json")
    assert scf["attempt"] == 2
    assert [h["handler"] for h in scf["handlers"]] == ["walltime"]
    assert result.band_gap == pytest.approx(REFERENCE["band_gap"], rel=0.05)


def test_request_the_cluster_cannot_satisfy_fails_with_slurms_message(tmp_path, mgo):
    job = CommandJob("big", ["true"], tmp_path, "in", "out", cpus=1)
    (tmp_path / "in").write_text("")
    with pytest.raises(Exception, match="More processors requested than permitted"):
        SlurmExecutor(SlurmProfile(cpus_per_task=64)).submit(job)
    ctx = make_ctx(tmp_path, SlurmProfile(mem="100T"), QECommands())
    result = run_dielectric(ctx, store(ctx, mgo))
    assert result.status == "failed" and "SLURM refused relax" in result.reason
    assert "Batch job submission failed" in result.reason, result.reason  # the scheduler's own words


def test_executor_reports_states_and_exit_codes(tmp_path):
    (tmp_path / "in").write_text("")
    executor = SlurmExecutor(SlurmProfile(walltime="00:05:00"))
    ok = executor.submit(CommandJob("ok", ["true"], tmp_path, "in", "ok.log"))
    bad = executor.submit(CommandJob("bad", ["bash", "-c", "exit 3"], tmp_path, "in", "bad.log"))
    done = wait_for(lambda: (s := executor.poll(ok)).state not in (JobState.PENDING, JobState.RUNNING) and s)
    failed = wait_for(lambda: (s := executor.poll(bad)).state not in (JobState.PENDING, JobState.RUNNING) and s)
    assert done.state == JobState.DONE and done.returncode == 0
    assert failed.state == JobState.FAILED and failed.returncode == 3
    fresh = SlurmExecutor()  # a restarted controller that knows only the job id and the step directory
    assert fresh.reattach(bad, tmp_path, "bad", 0.1).returncode == 3


def test_slurm_states_map_to_job_states():
    from tansaku.workflows.slurm import judge, sacct_fields

    assert judge({"JobState": "PENDING"}).state == JobState.PENDING
    assert judge({"JobState": "COMPLETED", "ExitCode": "0:0"}).state == JobState.DONE
    timeout = judge({"JobState": "TIMEOUT", "ExitCode": "0:15"})
    assert timeout.state == JobState.FAILED and timeout.reason == "walltime" and timeout.returncode == 143
    assert judge({"JobState": "CANCELLED"}).state == JobState.CANCELLED
    assert judge({"JobState": "OUT_OF_MEMORY", "ExitCode": "0:9"}).state == JobState.FAILED
    assert sacct_fields("1") is None  # this cluster has no accounting database: fall back, do not fail


def test_run_electronic_through_slurm_with_epsilon_x(tmp_path, mgo):
    from tansaku.workflows.electronic import run_electronic

    # a short band path, coarse dense and optics meshes: every step through SLURM in CI minutes
    ctx = make_ctx(tmp_path, SlurmProfile(walltime="00:10:00"), QECommands(mpi_procs=MPI_PROCS),
                   {"relax": False, "optics": True, "band_spacing": 0.3, "dense_kspacing": 0.5, "optics_kspacing": 0.7})
    material_id = store(ctx, mgo)
    result = run_electronic(ctx, material_id)
    assert result.status == "done", result.reason
    root = tmp_path / "runs" / f"{material_id}-MgO"
    for step in ("scf", "bands", "masses", "dense", "optics-nscf", "optics-eps"):
        state = state_of(root / step / "state.json")
        assert state["executor"] == "slurm" and state["status"] == "done" and state["attempt"] == 1, step
        assert list((root / step).glob(f"{step}.slurm-*.out")), step
    assert 3 < result.edges["optics"]["onset_ev"] < 6
    with ctx.db.session() as session:
        engines = dict(session.execute(select(Calculation.step, Calculation.engine)).all())
    assert engines["optics-eps"] == "qe:epsilon.x" and engines["bands"] == "qe:pw.x"
