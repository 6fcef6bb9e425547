"""Executors run one command (a pw.x or ph.x step) and report on it through submit / poll / cancel.

The workflow never blocks inside an executor: it submits, then polls. A batch scheduler's executor
(SLURM) implements the same three calls, so the workflow code does not change.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from contextlib import suppress
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from tansaku.processes import pid_alive, pid_alive_in


class JobState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"  # exited 0
    FAILED = "failed"  # exited non-zero or killed
    CANCELLED = "cancelled"


@dataclass
class CommandJob:
    """One program run: argv in a directory, stdin from a file, stdout+stderr to a file."""

    name: str
    argv: list[str]
    cwd: Path
    stdin: str
    stdout: str
    cpus: int = 1
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class JobStatus:
    state: JobState
    returncode: int | None = None
    message: str = ""
    reason: str = ""  # a known cause the handlers act on, e.g. "walltime" (the scheduler's time limit)


class Executor(Protocol):
    name: str

    def submit(self, job: CommandJob) -> str:
        """Start the job; returns an id that poll/cancel accept, also after a restart of the controller."""

    def poll(self, job_id: str) -> JobStatus: ...

    def cancel(self, job_id: str) -> None: ...

    def reattach(self, job_id: str, directory: Path, name: str, poll_seconds: float) -> JobStatus | None:
        """Wait for a job an earlier controller started; its final status, or None when its exit is unknown
        (the caller then judges the step by its log)."""


def wait_for(executor: Executor, job_id: str, poll_seconds: float) -> JobStatus:
    """Poll until the job has left the queue and stopped running."""
    while True:
        status = executor.poll(job_id)
        if status.state not in (JobState.RUNNING, JobState.PENDING):
            return status
        time.sleep(poll_seconds)


class LocalExecutor:
    """Runs jobs as child processes of this machine, each in its own process group."""

    name = "local"

    def __init__(self) -> None:
        self._children: dict[str, subprocess.Popen] = {}

    def submit(self, job: CommandJob) -> str:
        env = {**os.environ, "OMP_NUM_THREADS": "1", **job.env}
        with open(job.cwd / job.stdin, "rb") as stdin, open(job.cwd / job.stdout, "wb") as stdout:
            process = subprocess.Popen(
                job.argv, cwd=job.cwd, stdin=stdin, stdout=stdout, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,
            )
        job_id = str(process.pid)
        self._children[job_id] = process
        return job_id

    def poll(self, job_id: str) -> JobStatus:
        process = self._children.get(job_id)
        if process is None:  # started by an earlier controller: we can see it live, not its exit code
            return JobStatus(JobState.RUNNING if pid_alive(int(job_id)) else JobState.FAILED, None,
                             "process from an earlier run")
        code = process.poll()
        if code is None:
            return JobStatus(JobState.RUNNING)
        self._children.pop(job_id, None)
        if code == 0:
            return JobStatus(JobState.DONE, 0)
        return JobStatus(JobState.FAILED, code, f"exit status {code}")

    def cancel(self, job_id: str) -> None:
        kill_group(int(job_id))
        process = self._children.pop(job_id, None)
        if process is not None:
            process.wait()

    def reattach(self, job_id: str, directory: Path, name: str, poll_seconds: float) -> None:
        """The job died with its controller or lives on as an orphan; an orphan is waited for. Its exit code is
        lost with its parent: always None."""
        while pid_alive_in(int(job_id), directory):
            time.sleep(poll_seconds)


def kill_group(pid: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


@dataclass(frozen=True)
class QECommands:
    """How to start pw.x, ph.x and epsilon.x: executables and an optional MPI launcher with a process count."""

    pw: str = "pw.x"
    ph: str = "ph.x"
    launcher: str = "mpirun --allow-run-as-root --oversubscribe -np {n}"
    mpi_procs: int = 1
    epsilon: str = "epsilon.x"  # QE's independent-particle dielectric function (run electronic --optics)

    def argv(self, program: str, input_file: str) -> list[str]:
        exe = shlex.split({"pw": self.pw, "ph": self.ph, "epsilon": self.epsilon}[program])
        prefix = shlex.split(self.launcher.format(n=self.mpi_procs)) if self.mpi_procs > 1 else []
        return [*prefix, *exe, "-in", input_file]
