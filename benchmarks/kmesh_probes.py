"""How the small-gap k-mesh probes of finished DFT runs converged: ε∞ against the number of k-points.

Run: .venv/bin/python benchmarks/kmesh_probes.py [RUN_DIR ...]
(default: the DFT benchmark's run directories, plain-PBEsol ZnO's probes kept in benchmarks/work/dft_zno_plain and
the electronic benchmark's, written to benchmarks/results; other directories are only printed).
Computes nothing: it reads the probes' step directories (SCF and field-only ph.x per mesh) that
`dft_reproduction.py` left. For each material, per mesh: the k-points of the full mesh N_k, ε∞, its change from
the mesh before, and ε∞'s limit extrapolated from this mesh and the one before assuming the error falls as 1/N_k
(a + b/N_k through the two points). Why: the workflow settles on the coarser of two meshes whose ε∞ agree within
`small_gap_k_converge` (1 %); where the error falls as 1/N_k, that rule is slow (each probe doubles N_k and only
halves the change) and the mesh it keeps sits above the limit by about the change it saw. The table shows how
far the chosen ε∞ and the finest probe's are from the extrapolated limit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, write_results  # noqa: E402
from tansaku.store.materials import tensor_average  # noqa: E402
from tansaku.workflows.kmesh_convergence import DISPLACEMENTS_STEP, mesh_from_label, refines  # noqa: E402
from tansaku.workflows.state import StepState  # noqa: E402

WORK = REPO / "benchmarks" / "work"
DEFAULT_DIRS = [*sorted((WORK / "dft_reproduction" / "runs").glob("*")), *sorted((WORK / "dft_zno_plain").glob("*")),
                # the DDH's ε∞ of a small gap comes from the same probes
                *sorted((WORK / "electronic_reproduction" / "runs").glob("*"))]


def probes(run_dir: Path) -> list[dict]:
    """The finished probes of one run directory, coarsest first: mesh, N_k, ε∞, gap, CPU seconds."""
    found = []
    for eps_dir in run_dir.glob("kmesh-*-eps"):
        label = eps_dir.name.removeprefix("kmesh-").removesuffix("-eps")
        try:
            eps = StepState.load(eps_dir, eps_dir.name)
            scf = StepState.load(run_dir / f"kmesh-{label}-scf", f"kmesh-{label}-scf")
            own = scf.status == "done"
            if not own:  # the fixed mesh's probe reads the workflow's own SCF, which the probe does not pay for
                scf = StepState.load(run_dir / "scf", "scf")
        except (ValueError, TypeError) as exc:  # a state file cut short or of another layout
            print(f"{eps_dir}: skipped, its state cannot be read ({exc})", file=sys.stderr)
            continue
        if eps.status != "done" or not eps.outputs:
            continue
        found.append({"mesh": label, "n_k": int(np.prod(mesh_from_label(label))),
                      "eps_electronic": tensor_average(eps.outputs["eps_electronic"]),
                      "gap": (scf.outputs or {}).get("gap"),
                      "cpu_seconds": eps.cpu_seconds + (scf.cpu_seconds if own else 0.0)})
    return sorted(found, key=lambda p: p["n_k"])


def extrapolate(coarse: dict, fine: dict) -> float:
    """ε∞'s limit through two meshes if its error falls as 1/N_k."""
    return ((fine["eps_electronic"] * fine["n_k"] - coarse["eps_electronic"] * coarse["n_k"])
            / (fine["n_k"] - coarse["n_k"]))


def chosen_mesh(run_dir: Path) -> str | None:
    """The mesh the workflow settled on: the one its displacements ran on (none while it is still probing); where
    an older rule's displacements are kept beside them (ZnO's 10x10x6 before the every-direction rule), the last
    to finish."""
    states = [StepState.load(d, d.name) for d in run_dir.glob(f"{DISPLACEMENTS_STEP}*")]
    done = sorted((s.finished or "", s.step.removeprefix(DISPLACEMENTS_STEP)) for s in states if s.status == "done")
    return done[-1][1] if done else None


def analyse(run_dir: Path) -> dict | None:
    found = probes(run_dir)
    if len(found) < 2:
        return None
    for i, (before, this) in enumerate(zip(found, found[1:], strict=False), start=1):
        this["change"] = this["eps_electronic"] / before["eps_electronic"] - 1
        this["limit"] = extrapolate(before, this)
        # the workflow's own comparison (refined_from): with the last mesh this one refines in every direction
        mesh = mesh_from_label(this["mesh"])
        if base := next((p for p in reversed(found[:i]) if refines(mesh, mesh_from_label(p["mesh"]))), None):
            this["compared_with"] = base["mesh"]
            this["rule_change"] = this["eps_electronic"] / base["eps_electronic"] - 1
    limit = found[-1]["limit"]
    chosen = chosen_mesh(run_dir)
    pick = next((p for p in found if p["mesh"] == chosen), None)
    name = run_dir.name.split("-", 1)[-1]  # "3-ZnO": the workflow's <material id>-<formula>
    where = run_dir.parent.name if run_dir.parent.name != "runs" else run_dir.parents[1].name
    if where != "dft_reproduction":  # another benchmark's run, or one kept apart, e.g. plain-PBEsol ZnO
        name += f" ({where})"
    return {"material": name, "run_dir": str(run_dir.relative_to(REPO)), "probes": found,
            "chosen": chosen, "limit": limit,
            "chosen_above_limit": pick["eps_electronic"] / limit - 1 if pick else None,
            "finest_above_limit": found[-1]["eps_electronic"] / limit - 1,
            "limits_last_change": (found[-1]["limit"] / found[-2]["limit"] - 1) if "limit" in found[-2] else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="*", type=Path,
                        help="run directories to read (default: the DFT benchmark's); given, the table is printed "
                             "and the committed results are left as they are")
    args = parser.parse_args()
    for missing in [d for d in args.run_dirs if not d.is_dir()]:
        print(f"{missing}: not a run directory, skipped", file=sys.stderr)
    materials = [m for m in (analyse(d.resolve()) for d in args.run_dirs or DEFAULT_DIRS if d.is_dir()) if m]
    lines = ["# k-mesh probes of small-gap runs: ε∞ against the k-points of the mesh", "",
             "Read from finished runs' step directories (nothing computed). N_k: k-points of the full mesh. Limit: "
             "a + b/N_k through this mesh and the one before. CPU: the probe's SCF and field-only ph.x (QE's CPU "
             "time × processes; 0 for an SCF shared with the workflow's own).", "",
             "Change: from the mesh before; rule: from the last mesh this one refines in every direction, the "
             "comparison the workflow settles by.", "",
             "| material | mesh | N_k | gap (eV) | ε∞ | change | rule | 1/N_k limit | CPU (s) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]

    def f(x, fmt):
        return "–" if x is None else format(x, fmt)

    def pct(x):
        return "–" if x is None else f"{x * 100:+.1f} %"

    def rule(p):
        return f"{pct(p['rule_change'])} from {p['compared_with']}" if "compared_with" in p else "–"

    for m in materials:
        for p in m["probes"]:
            mark = " (chosen)" if p["mesh"] == m["chosen"] else ""
            lines.append(f"| {m['material']} | {p['mesh']}{mark} | {p['n_k']} | {f(p['gap'], '.2f')} | "
                         f"{p['eps_electronic']:.3f} | {pct(p.get('change'))} | {rule(p)} | "
                         f"{f(p.get('limit'), '.3f')} | {p['cpu_seconds']:.0f} |")
    lines += ["", "| material | settled on | chosen ε∞ above the last limit | finest probe above it | "
              "last two limits apart |", "| --- | --- | --- | --- | --- |"]
    for m in materials:
        lines.append(f"| {m['material']} | {m['chosen'] or 'no displacements done yet'} | "
                     f"{pct(m['chosen_above_limit'])} | {pct(m['finest_above_limit'])} | "
                     f"{pct(m['limits_last_change'])} |")
    if args.run_dirs:
        print("\n".join(lines))
    else:
        write_results("kmesh_probes", {"materials": materials}, "\n".join(lines))


if __name__ == "__main__":
    main()
