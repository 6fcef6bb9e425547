"""Helpers for benchmark scripts: where shared data is, and writing results as Markdown plus JSON."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TANSAKU_SHARED", REPO.parent / "shared"))
RESULTS = REPO / "benchmarks" / "results"
PSEUDO_FAMILY = SHARED / "pseudos" / "pseudodojo-nc-sr-pbe-v0.4"  # the reference database's family


def _commit() -> str:
    """The commit checked out, with '+changes' when tracked files other than results and Markdown differ from it
    (the code that ran is not it; a results file another benchmark is rewriting does not count)."""
    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO).stdout.strip()

    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)benchmarks/results",
                  ":(exclude)*.md")
    return git("rev-parse", "--short", "HEAD") + ("+changes" if changed else "")


# Read when the benchmark starts: a run of hours must name the code it started with, not a commit made meanwhile.
STARTED_AT_COMMIT = _commit()
STARTED = datetime.now(UTC).isoformat(timespec="seconds")


def machine() -> dict:
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "started": STARTED,
        "commit": STARTED_AT_COMMIT,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


def this_run() -> dict:
    """What a results row records of the run that made it (rows carried over from other runs keep theirs): its
    commit, command, when the run started and when the row was made, and the platform (CPU times of two machines
    do not compare: QE ran 1.8-2.9x slower on one than on the other, dft_reproduction_same_machine.md)."""
    return {key: machine()[key] for key in ("commit", "command", "started", "date", "platform")}


def run_of(row: dict, fallback: dict | None = None) -> dict:
    """A row's own run, else `fallback` (the header of the file it came from, for rows written before rows
    carried their run)."""
    return row.get("run") or {key: (fallback or {}).get(key) for key in ("commit", "command", "date")}


def _marker(run: dict) -> tuple:
    """One invocation, however many rows it made: its start (rows made before runs recorded it: their date)."""
    return (run.get("commit"), run.get("command"), run.get("started") or run.get("date"), run.get("note"),
            run.get("platform"))


def runs_legend(runs: list[dict]) -> tuple[list[tuple], list[str]]:
    """The distinct runs among the rows' `runs`, in order of appearance, and Markdown lines naming each: a
    table's "run" column holds the 1-based index of its row's run in the first list."""
    markers: list[tuple] = []
    for run in runs:
        if _marker(run) not in markers:
            markers.append(_marker(run))
    lines = ["Runs (each row's own: commit, start or date, command, and the platform where recorded):", ""]
    lines += [f"{i}. {commit}, {date}: `{command}`" + (f" ({note})" if note else "")
              + (f", on {platform}" if platform else "")
              for i, (commit, command, date, note, platform) in enumerate(markers, 1)]
    return markers, lines


def run_number(markers: list[tuple], run: dict) -> int:
    return markers.index(_marker(run)) + 1


def write_results(name: str, data: dict, markdown: str, compact: bool = False) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    data = {"machine": machine(), **data}
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=None if compact else 2, default=float) + "\n")
    header = (f"<!-- produced by: {data['machine']['command']} at commit {data['machine']['commit']} on "
              f"{data['machine']['date']} -->\n")
    (RESULTS / f"{name}.md").write_text(header + markdown.rstrip() + "\n")
    print(markdown)


def code_fingerprint(*modules) -> str:
    """SHA-256 (16 hex digits) of the source files of the modules whose code decides a result."""
    import hashlib
    import inspect

    digest = hashlib.sha256()
    for module in modules:
        digest.update(Path(inspect.getfile(module)).read_bytes())
    return digest.hexdigest()[:16]


def data_fingerprint(*arrays) -> str:
    import hashlib

    import numpy as np

    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def stored_result(path: Path, key: dict):
    """The result a checkpoint holds when it was made with this key (data, settings and the code that decides
    it), else None (and says why when a checkpoint is there): a curve made by other code is never reused."""
    if not path.exists():
        return None
    stored = json.loads(path.read_text())
    if stored.get("key") == key:
        return stored["result"]
    print(f"{path.name}: made with other code, data or settings ({stored.get('commit', 'no commit recorded')});"
          " computing it again", flush=True)
    return None


def save_checkpoint(path: Path, key: dict, result) -> None:
    """Written whole or not at all (a killed run leaves no half file), with the key and the commit that made it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"key": key, "commit": STARTED_AT_COMMIT, "result": result}, default=float))
    tmp.replace(path)


def checkpointed(path: Path, key: dict, compute):
    """A result from its checkpoint when made with this key (`stored_result`), else computed and saved."""
    result = stored_result(path, key)
    if result is None:
        result = compute()
        save_checkpoint(path, key, result)
    return result


def shared_pseudos():
    """The pseudopotential family every DFT benchmark runs with."""
    from tansaku.dft.pseudos import load_family

    return load_family(PSEUDO_FAMILY)


def local_dft_context(db, settings, preset_name: str, mpi_procs: int, run_root: Path, **options):
    """The RunContext of a DFT benchmark: QE on this machine with `mpi_procs` processes, the shared pseudopotentials,
    a 2 s poll (runs of minutes to hours), `options` as RunContext takes them."""
    from tansaku.workflows.executor import LocalExecutor, QECommands
    from tansaku.workflows.run import RunContext

    return RunContext(db, settings, preset_name, shared_pseudos(), LocalExecutor(), QECommands(mpi_procs=mpi_procs),
                      run_root, poll_seconds=2.0, **options)


def no_options(doc: str | None) -> None:
    """For a benchmark that takes no options: `--help` prints its docstring instead of starting the run, and an
    unknown option is refused."""
    argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()


RUNS = "runs.json"  # beside the step directories: step name → the run (commit, command, date) that finished it


def unrecorded_steps(run):
    """Run.step without the database rows (a benchmark that keeps its record in the step directories); the
    invocation that finishes a step is recorded in RUNS, for the tables' per-row provenance."""
    from tansaku.workflows.state import StepState
    from tansaku.workflows.steps import run_step

    def step(name, spec, ctx=None):
        ctx = ctx or run.ctx
        run.report(name)
        was_done = StepState.load(run.root / name, name).status == "done"
        run.steps[name] = run_step(spec, run.root / name, ctx.executor, ctx.commands, ctx.settings.max_attempts,
                                   ctx.poll_seconds)
        if not was_done:
            runs = step_runs(run.root)
            runs[name] = this_run()
            (run.root / RUNS).write_text(json.dumps(runs, indent=1))
        return run.steps[name]

    return step


def step_runs(root: Path) -> dict:
    return json.loads((root / RUNS).read_text()) if (root / RUNS).exists() else {}
