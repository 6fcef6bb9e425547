"""Running workflow steps as SLURM batch jobs, behind the same submit / poll / cancel interface as local runs.

Each step becomes one `sbatch` script written into its directory. Job state comes from `scontrol show job`
(no accounting database assumed), and the script leaves the program's exit status in a file, so a job that
SLURM has already forgotten (MinJobAge) is still judged correctly. A controller that stops and starts again
polls the job ids stored in the step state files instead of submitting twice.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from tansaku import TansakuError
from tansaku.workflows.executor import CommandJob, JobState, JobStatus, wait_for

EXIT_SUFFIX = ".exitcode"
STATES = {
    "PENDING": JobState.PENDING, "CONFIGURING": JobState.PENDING, "REQUEUED": JobState.PENDING,
    "RESV_DEL_HOLD": JobState.PENDING, "REQUEUE_HOLD": JobState.PENDING,
    "RUNNING": JobState.RUNNING, "COMPLETING": JobState.RUNNING, "SUSPENDED": JobState.RUNNING,
    "STAGE_OUT": JobState.RUNNING, "SIGNALING": JobState.RUNNING,
    "COMPLETED": JobState.DONE, "CANCELLED": JobState.CANCELLED,
}


@dataclass
class SlurmProfile:
    """Batch settings (a TOML file's keys have the same names): where and how large each job is."""

    partition: str | None = None
    account: str | None = None
    nodes: int = 1
    ntasks: int | None = None  # default: the step's MPI process count
    cpus_per_task: int = 1
    mem: str | None = None  # e.g. "4G"
    walltime: str = "01:00:00"
    qos: str | None = None
    setup: list[str] = field(default_factory=list)  # lines run before the program: module load, source ...
    launcher: str = "srun -n {n}"  # MPI launcher inside the job, {n} = tasks
    extra: list[str] = field(default_factory=list)  # further '#SBATCH' options, e.g. "--constraint=avx2"

    @classmethod
    def load(cls, path: Path | None) -> SlurmProfile:
        if path is None:
            return cls()
        try:
            data = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise TansakuError(f"{path}: cannot read the SLURM profile ({exc})") from exc
        data = data.get("slurm", data)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TansakuError(f"{path}: unknown SLURM profile keys {', '.join(unknown)} "
                               f"(known: {', '.join(sorted(known))})")
        return cls(**data)


def _run(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError as exc:
        raise TansakuError(f"{argv[0]} not found: is this a SLURM login node (slurm-client installed)?") from exc
    except subprocess.TimeoutExpired as exc:
        raise TansakuError(f"{' '.join(argv)} did not answer in {timeout:.0f} s (slurmctld or munged down?)") from exc


def job_fields(job_id: str) -> dict[str, str] | None:
    """`scontrol show job` as key → value, or None when SLURM no longer knows the job."""
    proc = _run(["scontrol", "show", "job", "-o", job_id])
    if proc.returncode != 0 or "JobId=" not in proc.stdout:
        return None
    return dict(re.findall(r"(\w+)=(\S*)", proc.stdout))


class SlurmExecutor:
    """Submits CommandJobs with sbatch; poll reads scontrol and the exit-status file the script writes."""

    name = "slurm"

    def __init__(self, profile: SlurmProfile | None = None):
        self.profile = profile or SlurmProfile()
        self._exit_files: dict[str, Path] = {}

    def script(self, job: CommandJob) -> str:
        p = self.profile
        lines = ["#!/bin/bash", f"#SBATCH --job-name=tansaku-{job.name}", f"#SBATCH --nodes={p.nodes}",
                 f"#SBATCH --ntasks={p.ntasks or job.cpus}", f"#SBATCH --cpus-per-task={p.cpus_per_task}",
                 f"#SBATCH --time={p.walltime}", f"#SBATCH --chdir={job.cwd}",
                 f"#SBATCH --output={job.cwd / job.name}.slurm-%j.out"]
        lines += [f"#SBATCH --{key}={value}" for key, value in
                  (("partition", p.partition), ("account", p.account), ("mem", p.mem), ("qos", p.qos)) if value]
        lines += [f"#SBATCH {option}" for option in p.extra]
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in {"OMP_NUM_THREADS": "1", **job.env}.items())
        command = shlex.join(job.argv)
        return "\n".join(lines) + "\n" + exports + "\n".join(p.setup) + (
            f"\ncd {shlex.quote(str(job.cwd))}\n"
            f"rm -f {shlex.quote(job.name + EXIT_SUFFIX)}\n"
            f"{command} < {shlex.quote(job.stdin)} > {shlex.quote(job.stdout)} 2>&1\n"
            f"status=$?\necho $status > {shlex.quote(job.name + EXIT_SUFFIX)}\nexit $status\n")

    def submit(self, job: CommandJob) -> str:
        path = job.cwd / f"{job.name}.sbatch"
        path.write_text(self.script(job))
        proc = _run(["sbatch", "--parsable", str(path)])
        if proc.returncode != 0:
            message = (proc.stderr or proc.stdout).strip()
            raise TansakuError(f"SLURM refused {job.name} ({path}): {message}")
        job_id = proc.stdout.strip().split(";")[0]
        self._exit_files[job_id] = job.cwd / (job.name + EXIT_SUFFIX)
        return job_id

    def poll(self, job_id: str) -> JobStatus:
        info = job_fields(job_id)
        if info is None:  # SLURM forgot the job (MinJobAge): the accounting database, if any, still knows it
            info = sacct_fields(job_id)
        if info is not None:
            return judge(info)
        exit_file = self._exit_files.get(job_id)
        if exit_file is not None and exit_file.exists():
            code = int(exit_file.read_text().strip() or 1)
            return JobStatus(JobState.DONE if code == 0 else JobState.FAILED, code, f"exit status {code}")
        return JobStatus(JobState.FAILED, None, f"SLURM no longer knows job {job_id} and it left no exit status")

    def cancel(self, job_id: str) -> None:
        proc = _run(["scancel", job_id])
        if proc.returncode != 0:
            raise TansakuError(f"scancel {job_id}: {(proc.stderr or proc.stdout).strip()}")

    def reattach(self, job_id: str, directory: Path, name: str, poll_seconds: float) -> JobStatus:
        """A job from an earlier controller: learn where it writes its exit status, then wait for it."""
        self._exit_files[job_id] = directory / (name + EXIT_SUFFIX)
        return wait_for(self, job_id, poll_seconds)


def judge(info: dict[str, str]) -> JobStatus:
    """A JobStatus from SLURM's JobState and ExitCode ('code:signal'); TIMEOUT is the walltime."""
    state = info.get("JobState", "UNKNOWN")
    mapped = STATES.get(state)
    if mapped in (JobState.PENDING, JobState.RUNNING, JobState.CANCELLED):
        return JobStatus(mapped, None, f"SLURM {state}")
    code = _exit_code(info.get("ExitCode", ""))
    if state == "COMPLETED":
        return JobStatus(JobState.DONE, code or 0)
    reason = "walltime" if state == "TIMEOUT" else ""
    return JobStatus(JobState.FAILED, code, f"SLURM {state} {info.get('Reason', '')}".strip(), reason)


def sacct_fields(job_id: str) -> dict[str, str] | None:
    """JobState and ExitCode from sacct when an accounting database answers; None otherwise."""
    if shutil.which("sacct") is None:
        return None
    proc = _run(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "State,ExitCode"])
    lines = proc.stdout.strip().splitlines() if proc.returncode == 0 else []
    if not lines or "|" not in lines[0]:
        return None
    state, code = lines[0].split("|", 1)
    return {"JobState": state.split()[0] if state else "UNKNOWN", "ExitCode": code}


def _exit_code(text: str) -> int | None:
    match = re.match(r"(\d+):(\d+)", text)
    if not match:
        return None
    code, signal = int(match.group(1)), int(match.group(2))
    return code if code else (128 + signal if signal else 0)
