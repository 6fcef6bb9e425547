"""Overhead of the SLURM executor against the local one on the same workflow (issue 7).

The MgO dielectric workflow ('test' preset, 2 MPI processes) runs once through each executor. Per step we
take the step's wall time seen by the workflow (submission to judged result) and subtract the time pw.x/ph.x
report for themselves (the WALL figure at the end of their output): what is left is the executor's overhead
(writing inputs, submission, queueing, polling, parsing).

Run (starts a single-node SLURM cluster on loopback, needs root):
    bash .ci/services.sh .venv/bin/python benchmarks/slurm_overhead.py
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pymatgen.core import Structure  # noqa: E402

from _common import SHARED, no_options, shared_pseudos, write_results  # noqa: E402
from tansaku.dft.settings import preset  # noqa: E402
from tansaku.sources.structures import FILE_SOURCE  # noqa: E402
from tansaku.store import open_database  # noqa: E402
from tansaku.store.materials import ImportReport, add_structure_material  # noqa: E402
from tansaku.workflows.dielectric import run_dielectric  # noqa: E402
from tansaku.workflows.executor import LocalExecutor, QECommands  # noqa: E402
from tansaku.workflows.run import RunContext  # noqa: E402
from tansaku.workflows.slurm import SlurmExecutor, SlurmProfile  # noqa: E402

STEPS = ("relax", "scf", "phonon")


def program_wall_seconds(log: str) -> float:
    """The last 'PWSCF/PHONON : ... WALL' figure of a QE output (formats like 1m23.45s and 1h 2m)."""
    matches = re.findall(r"(?:PWSCF|PHONON)\s*:.*CPU\s+(.+?)\s+WALL", log)
    if not matches:
        return float("nan")
    text = matches[-1].replace(" ", "")
    total = 0.0
    for value, unit in re.findall(r"([\d.]+)([hms])", text):
        total += float(value) * {"h": 3600, "m": 60, "s": 1}[unit]
    return total


def run_once(executor, label: str, structure: Structure) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix=f"overhead-{label}-"))
    db = open_database(tmp / "wf.db")
    ctx = RunContext(db, preset("test"), "test", shared_pseudos(),
                     executor, QECommands(launcher="mpirun --allow-run-as-root --oversubscribe -np {n}",
                                          mpi_procs=2), tmp / "runs", poll_seconds=0.5)
    with db.session() as session:
        material, _ = add_structure_material(session, structure, FILE_SOURCE, "MgO", ImportReport())
        material_id = material.id
    times: dict[str, float] = {}
    marks = [("start", time.perf_counter())]

    def report(step: str) -> None:
        marks.append((step, time.perf_counter()))

    result = run_dielectric(ctx, material_id, report)
    marks.append(("end", time.perf_counter()))
    assert result.status == "done", result.reason
    for (step, t0), (_, t1) in zip(marks[1:], marks[2:], strict=False):
        times[step] = t1 - t0
    root = tmp / "runs" / f"{material_id}-MgO"
    steps = {}
    for step in STEPS:
        program = program_wall_seconds((root / step / "output.out").read_text(errors="replace"))
        steps[step] = {"step_seconds": times[step], "program_seconds": program,
                       "overhead_seconds": times[step] - program}
    return {"steps": steps, "eps_electronic": result.eps_electronic, "eps_ionic": result.eps_ionic}


def main() -> None:
    no_options(__doc__)
    structure = Structure.from_dict(json.loads((SHARED / "datasets" / "oxi_diel_db" / "data" /
                                                "mp-1265.json").read_text())["structure"])
    profile = SlurmProfile(walltime="00:30:00", launcher="mpirun --allow-run-as-root -np {n}")
    runs = {"local": run_once(LocalExecutor(), "local", structure),
            "slurm": run_once(SlurmExecutor(profile), "slurm", structure)}
    md = ["# SLURM executor overhead against the local executor (MgO, 'test' preset, 2 MPI processes)", "",
          "Overhead = the step's wall time seen by the workflow − the WALL time pw.x/ph.x report for themselves. "
          "Single-node SLURM 22.05 on loopback (.ci/slurm.sh), polling every 0.5 s.", "",
          "| step | local: step / program / overhead (s) | SLURM: step / program / overhead (s) | extra overhead "
          "of SLURM (s) |", "| --- | --- | --- | --- |"]
    for step in STEPS:
        loc, sl = runs["local"]["steps"][step], runs["slurm"]["steps"][step]
        md.append(f"| {step} | {loc['step_seconds']:.1f} / {loc['program_seconds']:.1f} / "
                  f"{loc['overhead_seconds']:.1f} | {sl['step_seconds']:.1f} / {sl['program_seconds']:.1f} / "
                  f"{sl['overhead_seconds']:.1f} | {sl['overhead_seconds'] - loc['overhead_seconds']:.1f} |")
    mean_extra = sum(runs["slurm"]["steps"][s]["overhead_seconds"] - runs["local"]["steps"][s]["overhead_seconds"]
                     for s in STEPS) / len(STEPS)
    md += ["", f"Mean extra overhead per step through SLURM: **{mean_extra:.1f} s**. Same results both ways: "
           f"ε∞ {runs['local']['eps_electronic']:.3f} / {runs['slurm']['eps_electronic']:.3f}, ε_ion "
           f"{runs['local']['eps_ionic']:.3f} / {runs['slurm']['eps_ionic']:.3f}."]
    write_results("slurm_overhead", {"runs": runs, "mean_extra_overhead_seconds": mean_extra}, "\n".join(md))


if __name__ == "__main__":
    main()
