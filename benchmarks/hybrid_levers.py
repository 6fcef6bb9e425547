"""What the exact exchange's q-mesh and cut-off cost and change in a hybrid gap (issue 31): the two levers
(`hybrid_q_divisor`, `ecutfock_factor`) before the standard electronic benchmark, whose hybrid steps cost
tens to hundreds of PBE SCFs each.

Per material (default MgO, the database's structure in spglib's standard frame, standard preset, 2 MPI
processes): the PBEsol SCF, the PBE SCF the nsc runs start from, then an HSE06 nsc run for each lever pair
given (q divisor : ecutfock factor; the q-mesh is the k-mesh divided by the divisor, ecutfock the factor ×
ecutwfc), cheapest first. Reported, for every pair run so far under --work: the gap, its change from the
densest pair, and QE's CPU seconds.
With --scf, the self-consistent HSE06 gap at the first pair too (nsc against scf at equal levers).

Run: nice .venv/bin/python benchmarks/hybrid_levers.py [--ids mp-1265] [--levers 8:1 4:2 2:4] [--scf]
Resumable: finished steps are kept under --work.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pymatgen.core import Structure  # noqa: E402

from _common import (  # noqa: E402
    REPO,
    SHARED,
    local_dft_context,
    run_number,
    run_of,
    runs_legend,
    step_runs,
    unrecorded_steps,
    write_results,
)
from tansaku.dft.settings import exchange_q_mesh, kmesh, preset, standard_frame  # noqa: E402
from tansaku.workflows.dielectric import scf_spec  # noqa: E402
from tansaku.workflows.hybrid import PBE_SCF, hybrid_spec, pbe_scf  # noqa: E402
from tansaku.workflows.run import Run, WorkflowResult  # noqa: E402
from tansaku.workflows.state import StepState  # noqa: E402
from tansaku.workflows.steps import StepFailed  # noqa: E402

LEVERS = ["8:1", "8:2", "4:2", "4:4", "2:2", "2:4"]  # q divisor : ecutfock factor; 2:4 is the standard preset's
HSE06 = {"input_dft": "hse"}


def lever_name(divisor: int, factor: float, kind: str = "nsc") -> str:
    return f"hse06-{kind}-q{divisor}-f{factor:g}"


def one_material(mp_id: str, levers: list[tuple[int, float]], with_scf: bool, ctx) -> dict:
    reference = json.loads((SHARED / "datasets" / "oxi_diel_db" / "data" / f"{mp_id}.json").read_text())
    structure = standard_frame(Structure.from_dict(reference["structure"]))[0]
    run = Run(ctx, 0, structure, ctx.run_root / mp_id, WorkflowResult(status="running"),
              lambda step, f=reference["formula"]: print(f"{f}: {step}", flush=True))
    run.step = unrecorded_steps(run)
    scf = scf_spec(ctx, run.root, structure)
    run.step("scf", scf)
    pbe = pbe_scf(run)
    run.needs_save(PBE_SCF, "scf", scf)
    run.step(PBE_SCF, pbe)
    scratch = run.root / "hybrid-scratch"
    mesh = kmesh(structure, ctx.settings.kspacing, ctx.settings.even_kmesh)
    for i, (divisor, factor) in enumerate(levers):
        lever_ctx = replace(ctx, settings=replace(ctx.settings, hybrid_q_divisor=divisor, ecutfock_factor=factor))
        for kind in ("nsc", "scf") if with_scf and i == 0 else ("nsc",):
            name = lever_name(divisor, factor, kind)
            if kind == "nsc":
                run.needs_save(name, PBE_SCF, pbe, scratch)
            with contextlib.suppress(StepFailed):  # the state keeps why; the other pairs still run
                run.step(name, hybrid_spec(lever_ctx, run.root, structure, name, HSE06,
                                           PBE_SCF if kind == "nsc" else None))
            shutil.rmtree(scratch / f"{name}.save", ignore_errors=True)
    rows = []  # every pair run under --work, this invocation's or an earlier one's
    for directory in sorted(run.root.glob("hse06-*-q*-f*")):
        match = re.fullmatch(r"hse06-(nsc|scf)-q(\d+)-f([\d.]+)", directory.name)
        state = StepState.load(directory, directory.name)
        if not match or state.status not in ("done", "failed"):
            continue
        kind, divisor, factor = match.group(1), int(match.group(2)), float(match.group(3))
        rows.append({"kind": kind, "divisor": divisor, "ecutfock_factor": factor,
                     "q_mesh": exchange_q_mesh(mesh, divisor), "status": state.status,
                     "gap": (state.outputs or {}).get("gap"), "cpu_seconds": state.cpu_seconds,
                     "reason": state.error, "run": step_runs(run.root).get(directory.name)})
    rows.sort(key=lambda r: (-r["divisor"], r["ecutfock_factor"], r["kind"]))
    return {"mp_id": mp_id, "formula": reference["formula"], "k_mesh": list(mesh),
            "gap_pbesol": run.steps["scf"].outputs["gap"], "pbe_scf_cpu_seconds": run.steps[PBE_SCF].cpu_seconds,
            "scf_cpu_seconds": run.steps["scf"].cpu_seconds, "rows": rows}


def report(materials: list[dict]) -> None:
    lines = ["# Hybrid levers: the exact exchange's q-mesh and cut-off against the HSE06 gap and its cost", "",
             "Standard preset, 2 MPI processes, QE's CPU time. nsc: one exact-exchange diagonalization on PBE "
             "orbitals; scf: self-consistent. Change: from the densest nsc pair run (smallest divisor, then "
             "largest factor).", "",
             "| oxide | kind | q-mesh (divisor) | ecutfock (× ecutwfc) | gap (eV) | change (eV) | CPU s | "
             "in PBEsol SCFs | run |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    runs, legend = runs_legend([run_of(r) for m in materials for r in m["rows"] if r.get("run")])
    for m in materials:
        done = [r for r in m["rows"] if r["kind"] == "nsc" and r["gap"] is not None]
        densest = min(done, key=lambda r: (r["divisor"], -r["ecutfock_factor"]), default=None)
        for r in m["rows"]:
            change = (f"{r['gap'] - densest['gap']:+.3f}" if densest and r["gap"] is not None and r["kind"] == "nsc"
                      else "–")
            gap = f"{r['gap']:.3f}" if r["gap"] is not None else f"{r['status']}: {(r['reason'] or '')[:60]}"
            run = run_number(runs, r["run"]) if r.get("run") else "–"
            lines.append(f"| {m['formula']} ({m['mp_id']}) | {r['kind']} | {'x'.join(map(str, r['q_mesh']))} "
                         f"({r['divisor']}) | {r['ecutfock_factor']:g} | {gap} | {change} | {r['cpu_seconds']:.0f} | "
                         f"{r['cpu_seconds'] / m['scf_cpu_seconds']:.0f} | {run} |")
        lines += ["", f"{m['formula']}: k-mesh {'x'.join(map(str, m['k_mesh']))}, PBEsol gap {m['gap_pbesol']:.3f} "
                  f"eV; PBEsol SCF {m['scf_cpu_seconds']:.0f} CPU s, PBE SCF {m['pbe_scf_cpu_seconds']:.0f}.", ""]
    lines += legend
    write_results("hybrid_levers", {"materials": materials}, "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ids", nargs="*", default=["mp-1265"])
    parser.add_argument("--levers", nargs="*", default=LEVERS, metavar="DIVISOR:FACTOR",
                        help="Pairs to run (none: only tabulate what --work holds).")
    parser.add_argument("--scf", action="store_true", help="The self-consistent HSE06 gap at the first pair too.")
    parser.add_argument("--mpi-procs", type=int, default=2)
    parser.add_argument("--work", type=Path, default=REPO / "benchmarks" / "work" / "hybrid_levers")
    args = parser.parse_args()
    levers = [(int(d), float(f)) for d, f in (pair.split(":") for pair in args.levers)]
    ctx = local_dft_context(None, preset("standard"), "standard", args.mpi_procs, args.work)
    materials = []
    for mp_id in args.ids:
        materials.append(one_material(mp_id, levers, args.scf, ctx))
        report(materials)


if __name__ == "__main__":
    main()
