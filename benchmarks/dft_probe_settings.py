"""Can the k-mesh probes run cheaper than the calculation they choose the mesh for?

The small-gap rule (and the automatic k-mesh mode) runs an SCF and an electric-field ph.x on meshes of growing
density until ε∞ settles; on SnO2 these probes cost more CPU than the relaxation and SCF together. The probes
only decide which mesh the full calculation runs on, so they may not need its cutoff and ph.x threshold. This
benchmark reruns the probes that `dft_reproduction.py` made (standard preset, the relaxed cells, the same meshes)
under cheaper settings (`--set`, default ecutwfc=48 and tr2_ph=1e-12) and compares per mesh ε∞, the gap, the
change from the previous mesh (what the decision reads), the mesh the rule settles on, and CPU.

Run: nice .venv/bin/python benchmarks/dft_probe_settings.py --mpi-procs 2 [--runs benchmarks/work/dft_reproduction/runs]
Resumable; results are rewritten after every material.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pymatgen.core import Structure  # noqa: E402

from _common import REPO, local_dft_context, unrecorded_steps, write_results  # noqa: E402
from tansaku.cli.run_cmd import parse_overrides  # noqa: E402
from tansaku.dft.settings import kmesh, preset  # noqa: E402
from tansaku.store.materials import tensor_average  # noqa: E402
from tansaku.workflows.kmesh_convergence import probe, probe_spacings  # noqa: E402
from tansaku.workflows.run import Run, WorkflowResult  # noqa: E402

CHEAP = ["ecutwfc=48", "tr2_ph=1e-12"]


def reference_probes(material: Path) -> tuple[Structure | None, list[dict]]:
    """The cell and the finished probes of one material of a dft_reproduction run, coarsest first."""
    probes, structure = [], None
    for eps_dir in material.glob("kmesh-*-eps"):
        name = eps_dir.name.removesuffix("-eps")
        eps, scf = (json.loads((material / f"{name}-{kind}" / "state.json").read_text()) for kind in ("eps", "scf"))
        if eps["status"] != "done":
            continue
        probes.append({"mesh": [int(n) for n in name.removeprefix("kmesh-").split("x")],
                       "k_points": scf["outputs"]["k_points"], "band_gap": scf["outputs"]["gap"],
                       "eps_electronic": tensor_average(eps["outputs"]["eps_electronic"]),
                       "cpu_seconds": scf["cpu_seconds"] + eps["cpu_seconds"]})
        structure = Structure.from_dict(scf["structure"])
    return structure, sorted(probes, key=lambda p: p["k_points"])


def settled(probes: list[dict], tolerance: float = 0.01, gap_ev: float = 0.05) -> str | None:
    """The mesh the small-gap rule settles on (the coarser of the first two neighbours that agree), if any."""
    for coarse, fine in zip(probes, probes[1:], strict=False):
        if (abs(coarse["eps_electronic"] / fine["eps_electronic"] - 1) < tolerance
                and abs(coarse["band_gap"] - fine["band_gap"]) < gap_ev):
            return "x".join(map(str, coarse["mesh"]))
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, default=REPO / "benchmarks" / "work" / "dft_reproduction" / "runs")
    parser.add_argument("--set", dest="overrides", action="append", default=None, metavar="KEY=VALUE",
                        help=f"The probes' settings over the standard preset (default: {' '.join(CHEAP)}).")
    parser.add_argument("--mpi-procs", type=int, default=2)
    parser.add_argument("--work", type=Path, default=REPO / "benchmarks" / "work" / "dft_probe_settings")
    args = parser.parse_args()
    overrides = args.overrides or CHEAP
    settings = preset("standard", parse_overrides(overrides))
    ctx = local_dft_context(None, settings, "standard", args.mpi_procs,
                            args.work / "_".join(re.sub(r"[^A-Za-z0-9.]+", "-", o) for o in overrides))
    materials = []
    for material in sorted(args.runs.iterdir(), key=lambda p: int(p.name.split("-")[0])):
        structure, reference = reference_probes(material)
        if len(reference) < 2:
            continue
        run = Run(ctx, 0, structure, ctx.run_root / material.name, WorkflowResult(status="running"),
                  lambda step, f=material.name: print(f"{f}: {step}", flush=True))
        run.step = unrecorded_steps(run)
        spacing_of = {kmesh(structure, s, settings.even_kmesh): s  # the rule's own spacings, from kspacing down
                      for s in probe_spacings(structure, settings.kspacing, settings.even_kmesh)}
        cheap = [probe(run, structure, spacing_of[tuple(ref["mesh"])]).as_dict() for ref in reference]
        materials.append({"material": material.name, "atoms": len(structure), "reference": reference,
                          "cheap": cheap, "settled_reference": settled(reference), "settled_cheap": settled(cheap)})
        report(materials, overrides)


def report(materials: list[dict], overrides: list[str]) -> None:
    lines = [f"# k-mesh probes at cheaper settings ({', '.join(overrides)}) against the standard preset's", "",
             "The probes a dft_reproduction run made (standard preset: its cutoff, tr2_ph 1e-14) on the relaxed "
             "cells, run again under the cheaper settings on the same meshes. 'Step' is the change of ε∞ from the "
             "previous (coarser) mesh: the small-gap rule stops when it is below 1 % (and the gap moves by less "
             "than 0.05 eV), on the coarser mesh. CPU: SCF + field-only ph.x, all processes.", "",
             "| material | mesh | k-points | ε∞ standard | ε∞ cheap | cheap vs standard | step standard | step cheap "
             "| gap standard | gap cheap | CPU standard (s) | CPU cheap (s) | ratio |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    total_ref = total_cheap = 0.0
    for m in materials:
        previous = None
        for ref, cheap in zip(m["reference"], m["cheap"], strict=True):
            step = ("" if previous is None else
                    f"{ref['eps_electronic'] / previous[0]['eps_electronic'] - 1:+.2%} | "
                    f"{cheap['eps_electronic'] / previous[1]['eps_electronic'] - 1:+.2%}")
            lines.append(f"| {m['material']} | {'x'.join(map(str, ref['mesh']))} | {ref['k_points']} | "
                         f"{ref['eps_electronic']:.3f} | {cheap['eps_electronic']:.3f} | "
                         f"{cheap['eps_electronic'] / ref['eps_electronic'] - 1:+.2%} | {step or ' | '} | "
                         f"{ref['band_gap']:.3f} | {cheap['band_gap']:.3f} | {ref['cpu_seconds']:.0f} | "
                         f"{cheap['cpu_seconds']:.0f} | {cheap['cpu_seconds'] / ref['cpu_seconds']:.2f} |")
            previous = (ref, cheap)
            total_ref += ref["cpu_seconds"]
            total_cheap += cheap["cpu_seconds"]
    decided = [m for m in materials if m["settled_reference"] and m["settled_cheap"]]
    same = sum(m["settled_reference"] == m["settled_cheap"] for m in decided)
    pairs = [(r, c) for m in materials for r, c in zip(m["reference"], m["cheap"], strict=True)]
    eps_off = max(abs(c["eps_electronic"] / r["eps_electronic"] - 1) for r, c in pairs)
    gap_off = max(abs(c["band_gap"] - r["band_gap"]) for r, c in pairs)
    lines += ["", f"Largest difference cheap against standard: ε∞ {eps_off:.2%}, gap {gap_off:.3f} eV. "
              f"The rule settles on the same mesh for {same} of the {len(decided)} materials it has settled at "
              "both settings (" + "; ".join(f"{m['material']}: {m['settled_reference'] or 'none yet'} / "
                                f"{m['settled_cheap'] or 'none yet'}" for m in materials) + ", standard / cheap). "
              f"CPU of all probes: {total_cheap:.0f} s cheap against {total_ref:.0f} s standard "
              f"({total_cheap / total_ref:.2f}×; the standard probes ran in other sessions, some beside other work).",
              ""]
    write_results("dft_probe_settings", {"overrides": overrides, "materials": materials,
                                         "cpu_ratio": total_cheap / total_ref}, "\n".join(lines))


if __name__ == "__main__":
    main()
