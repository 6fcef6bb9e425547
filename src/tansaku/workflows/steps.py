"""Running one program step to completion: submit, poll, detect known errors, apply handlers, retry."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pymatgen.core import Structure

from tansaku import TansakuError
from tansaku.dft.qe.parsers import code_version, cpu_seconds, detect_errors, qe_error_message
from tansaku.workflows.executor import CommandJob, Executor, JobState, LocalExecutor, QECommands, wait_for
from tansaku.workflows.handlers import HANDLERS, handler_name
from tansaku.workflows.state import StepState, now, seconds_since

INPUT, OUTPUT = "input.in", "output.out"
# The input a step is made from (its first attempt's, before any handler changed it), kept beside its state: a
# later run that would make another input from its own settings and structure must not take this step's result.
MADE_FROM = "made-from.in"
RUN_LOCATION = re.compile(r"\s*outdir\s*=")  # where the run directory lies, not what is computed


class StepFailed(TansakuError):
    """A step that could not be brought to a good end; the message says why."""


class StepCancelled(StepFailed):
    """The step's job was cancelled (scancel, or by hand): not retried, and the material is marked cancelled."""


@dataclass
class StepSpec:
    """What a step runs and how its result is read."""

    name: str
    program: str  # "pw" or "ph"
    # (input structure, overrides) → input text; no side effects: it is also called to check a finished step
    write_input: Callable[[Structure | None, dict], str]
    parse: Callable[[Path, str], dict]  # (step dir, log) → outputs; raises TansakuError when incomplete
    structure: Structure | None = None  # input structure, if the step takes one
    expected: tuple[str, ...] = ()  # error codes its log shows by design (a run stopped on purpose)
    prepare: Callable[[], None] | None = None  # puts the files it reads in place (a copied save) before each attempt


def run_step(
    spec: StepSpec,
    directory: Path,
    executor: Executor,
    commands: QECommands,
    max_attempts: int,
    poll_seconds: float = 0.5,
    on_change: Callable[[StepState], None] | None = None,
) -> StepState:
    """Bring the step to 'done' (or raise StepFailed), resuming from its state file when there is one."""
    directory.mkdir(parents=True, exist_ok=True)
    state = StepState.load(directory, spec.name)
    made_from = _made_from(spec)
    _check_made_from(directory, made_from)
    if state.status == "done":
        return state
    if state.attempt == 0:
        (directory / MADE_FROM).write_text(made_from)
    if state.structure is None and spec.structure is not None:
        state.structure = spec.structure.as_dict()

    def save() -> None:
        state.save(directory)
        if on_change:
            on_change(state)

    if state.status == "running" and state.job_id:
        state = _reattach(state, executor, directory, spec, poll_seconds, save, commands.mpi_procs)
        if state.status == "done":
            return state
    while True:
        if state.attempt >= max_attempts:
            state.status = "failed"
            state.error = state.error or f"gave up after {state.attempt} attempts"
            state.finished = now()
            save()
            raise StepFailed(f"{spec.name}: {state.error}")
        if (directory / OUTPUT).exists() and state.attempt:  # keep every attempt's log for the audit trail
            (directory / OUTPUT).rename(directory / f"attempt{state.attempt}.out")
        state.attempt += 1
        structure = Structure.from_dict(state.structure) if state.structure else None
        if spec.prepare:
            spec.prepare()
        (directory / INPUT).write_text(spec.write_input(structure, state.overrides))
        job = CommandJob(spec.name, commands.argv(spec.program, INPUT), directory, INPUT, OUTPUT, commands.mpi_procs)
        state.job_id = executor.submit(job)
        state.executor = executor.name
        state.status, state.started, state.error = "running", now(), None
        save()
        status = wait_for(executor, state.job_id, poll_seconds)
        _charge(state, directory, seconds_since(state.started), commands.mpi_procs)
        if _finish(state, status, directory, spec, save):
            return state


def _made_from(spec: StepSpec) -> str:
    text = spec.write_input(spec.structure, {})
    return "".join(line + "\n" for line in text.splitlines() if not RUN_LOCATION.match(line))


def started_from(directory: Path, spec: StepSpec) -> bool:
    """Whether the step directory was started from `spec`'s input (so that a workflow whose input for a step has
    changed can keep a directory an older version started, rather than have it refused)."""
    path = directory / MADE_FROM
    return path.exists() and path.read_text() == _made_from(spec)


def _check_made_from(directory: Path, made_from: str) -> None:
    """A step directory made from another input (the settings or the structure of another run, e.g. another
    preset or cutoff in the same run directory) is refused, naming what differs, rather than its result being
    stored under this run's method. Directories from before this record was kept are not checked."""
    path = directory / MADE_FROM
    if not path.exists() or (before := path.read_text()) == made_from:
        return
    diff = [line for line in difflib.unified_diff(before.splitlines(), made_from.splitlines(), lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    shown = "; ".join(" ".join(line.split()) for line in diff[:6]) + ("; …" if len(diff) > 6 else "")
    raise StepFailed(f"{directory} was computed from another input than this run makes ({shown}): other "
                     "settings or another structure. Use another --run-dir, or delete that directory to compute "
                     "it again")


def _charge(state: StepState, directory: Path, wall: float, processes: int) -> None:
    """Add one attempt's wall and CPU time (the cost model and the cost benchmarks read both)."""
    state.seconds += wall
    log = directory / OUTPUT
    cpu = cpu_seconds(log.read_text(errors="replace")) if log.exists() else None
    state.cpu_seconds += (cpu if cpu is not None else wall) * max(1, processes)


def _reattach(state, executor, directory, spec, poll_seconds, save, processes: int) -> StepState:
    """A controller died while this step ran: wait for a job that still runs, else judge its log."""
    status = None
    if state.executor == executor.name:
        status = executor.reattach(state.job_id, directory, spec.name, poll_seconds)
    elif state.executor == LocalExecutor.name:  # an orphan of a local run, now controlled by another executor
        LocalExecutor().reattach(state.job_id, directory, spec.name, poll_seconds)
    # The attempt's last sign of life is its log's last write (its controller was not there to see it end).
    log = directory / OUTPUT
    _charge(state, directory, seconds_since(state.started, datetime.fromtimestamp(log.stat().st_mtime, UTC)
                                            if log.exists() else None), processes)
    try:  # a job that left no result and no known error was cut off with its controller: "interrupted"
        _finish(state, status, directory, spec, save, unexplained="interrupted")
    except StepFailed:
        state.status = "retry"  # the interrupted attempt failed; the caller starts a new one
    return state


def _finish(state, status, directory, spec, save, unexplained: str = "crash") -> bool:
    """Judge a finished attempt (status None: exit code unknown, judge by the log).

    True when done; False when a handler (or a crash retry) has prepared the next attempt. `unexplained` is the
    error code given to an attempt that ended without a result and without a known error.
    """
    log_path = directory / OUTPUT
    log = log_path.read_text(errors="replace") if log_path.exists() else ""
    state.code_version = state.code_version or code_version(log)
    found = detect_errors(log)
    errors = [code for code in found if code not in spec.expected]
    if status is not None and status.reason and status.reason not in errors:
        errors = [status.reason, *errors]  # e.g. killed by the scheduler at its time limit: no QE message
    # a run stopped on purpose may say so in its exit status too (pw.x exits 2 when it stops unconverged)
    stopped_on_purpose = any(code in spec.expected for code in found)
    if not errors and (status is None or status.state == JobState.DONE
                       or (stopped_on_purpose and status.state == JobState.FAILED)):
        try:
            state.outputs = spec.parse(directory, log)
        except TansakuError as exc:
            errors = [unexplained]
            state.error = str(exc)
        else:
            state.status, state.finished, state.error = "done", now(), None
            save()
            return True
    if status is not None and status.state == JobState.CANCELLED:
        state.status, state.error, state.finished = "cancelled", "cancelled", now()
        save()
        raise StepCancelled(f"{spec.name}: cancelled")
    for code in errors or [unexplained]:
        handler = HANDLERS.get(code)
        if handler is None:
            continue
        change = handler(state, log)
        if change is not None:
            state.handlers.append({"handler": handler_name(code), "error": code, "attempt": state.attempt,
                                   "changed": change})
            state.status = "retry"
            save()
            return False
    qe_message = qe_error_message(log)
    if errors and errors != [unexplained]:
        detail = f": {qe_message}" if qe_message else ""
        state.error = f"{', '.join(errors)}{detail}; no handler has anything left to try"
    elif qe_message and set(errors) <= {unexplained}:
        # QE stopped on an error of its own that no handler knows: the same input would stop the same way
        reason = status.message if status is not None and status.message else "no result"
        state.error = (f"{spec.program}.x ended without a result ({reason}); QE says: {qe_message}; no handler "
                       "knows this error, and the same input would fail the same way, so it is not retried")
    else:
        tail = "\n".join(log.strip().splitlines()[-8:])
        reason = status.message if status is not None and status.message else "no result"
        detail = f"QE says: {qe_message}" if qe_message else f"log tail:\n{tail}"
        state.error = state.error or f"{spec.program}.x ended without a result ({reason}); {detail}"
        state.status = "retry"  # a crash is retried until max_attempts
        save()
        return False
    state.status, state.finished = "failed", now()
    save()
    raise StepFailed(f"{spec.name}: {state.error}")
