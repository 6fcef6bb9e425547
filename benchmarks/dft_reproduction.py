"""Reproduce the reference database's dielectric constants with our Quantum ESPRESSO workflow.

Run: nice .venv/bin/python benchmarks/dft_reproduction.py --preset standard --mpi-procs 2
Resumable: run the same command again and finished steps are skipped. Results are rewritten after every
material, so a partial run still reports what it finished.
Geometry or physics apart: `--set relax=false` computes on the database's own (VASP-relaxed) cell, e.g.
`--ids mp-2133 --set relax=false --set hubbard_u=Zn:5 --work benchmarks/work/dft_db_cell` separates ZnO's cell
from its Hubbard-U treatment; each override set writes its own results file.
An override that touches one element need not recompute the others: `--ids mp-2133 --set hubbard_u=Zn:12 --reuse
benchmarks/results/dft_reproduction.json` computes ZnO and takes the other oxides from the plain run, after
checking that the settings they run with (the U restricted to their elements) are the same; such rows are marked.
Targets (issue 4): MAPE of ε∞ ≤ 3 %, of ε_ion ≤ 10 % (materials with imaginary Γ modes left out of ε_ion).
Cost (issue 34): `--before benchmarks/results/dft_reproduction_before.json` compares with the run before the cost
work, material by material: processor time (wall × MPI processes, the one measure both runs have), k-points,
symmetry operations pw.x found against spglib's, ε∞ and ε_ion; and checks the cost model's leave-one-out estimate
of every material's CPU hours. With `--before-work`, a material the before run was stopped on counts the CPU its
logs show it had used: a lower bound on its cost, so the ratio reported for it is an upper bound (the before run
at the old settings costs tens of CPU hours; stopping each material once it has used 2.5× what the new run
needs proves the 0.4× target for it without paying the rest).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    REPO,
    SHARED,
    local_dft_context,
    run_number,
    run_of,
    runs_legend,
    shared_pseudos,
    this_run,
    write_results,
)
from tansaku.cli.run_cmd import parse_overrides  # noqa: E402
from tansaku.dft.settings import preset  # noqa: E402
from tansaku.sources.oxi_diel_db import import_oxi_diel_db  # noqa: E402
from tansaku.store import Material, open_database  # noqa: E402
from tansaku.workflows.dielectric import run_dielectric  # noqa: E402
from tansaku.workflows.run import material_dir  # noqa: E402

DATA_DIR = SHARED / "datasets" / "oxi_diel_db" / "data"
DEFAULT_IDS = ["mp-1265", "mp-2605", "mp-2472", "mp-1960", "mp-1342", "mp-2542", "mp-2133", "mp-5020",
               # non-cubic, 4-10 atoms: α-NaFeO2-type NaScO2, delafossite CuAlO2, rutile SnO2, corundum Al2O3
               "mp-7914", "mp-3748", "mp-856", "mp-1143"]
# Settings every run of this benchmark has, before any --set: the database's Zn 3d carry a Hubbard U, and QE's U
# that gives its gap was fitted on K2ZnO2, outside this set (hubbard_u_fit.md: 14.6 eV). Without it ZnO's PBEsol
# gap is 0.66 eV, where ε∞ converges with the mesh only as 1/k-points (5.61 on 14x14x8, about 5.36 extrapolated).
# The U is restricted to a material's elements, so it touches ZnO alone.
FIXED = ["hubbard_u=Zn:14.6"]


def step_times(root: Path, key: str = "seconds", steps: Iterable[str] | None = None) -> dict[str, float]:
    """Wall seconds (or with key="cpu_seconds" QE's CPU seconds × processes) per finished step, every attempt
    counted (a killed and resumed step included); only `steps` when given (the directory may hold steps an
    earlier setting ran that these results do not come from)."""
    times = {}
    keep = set(steps) if steps is not None else None
    for state_file in sorted(root.glob("*/state.json")):
        if keep is not None and state_file.parent.name not in keep:
            continue
        state = json.loads(state_file.read_text())
        if state.get("started") and state.get("finished"):
            if key != "seconds":
                times[state["step"]] = state.get(key, 0.0)
                continue
            start = datetime.fromisoformat(state["started"])
            last_attempt = (datetime.fromisoformat(state["finished"]) - start).total_seconds()
            times[state["step"]] = max(state.get("seconds", 0.0), last_attempt)  # older state files: last only
    return times


def staged_database(work: Path, name: str, ids: list[str]):
    """A database in `work` holding the reference database's entries `ids` (copied into work/input first); with no
    ids, an empty one (a run of prototypes only)."""
    work.mkdir(parents=True, exist_ok=True)
    db = open_database(work / name)
    if not ids:
        return db
    staging = work / "input" / "data"
    staging.mkdir(parents=True, exist_ok=True)
    for mp_id in ids:
        (staging / f"{mp_id}.json").write_bytes((SHARED / "datasets" / "oxi_diel_db" / "data" / f"{mp_id}.json")
                                                .read_bytes())
    import_oxi_diel_db(db, staging.parent)
    return db


def spglib_operations(structure) -> int:
    """Operations of the cell's space group that map its primitive cell onto itself (what pw.x can find)."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    return len(SpacegroupAnalyzer(structure, symprec=1e-3).get_symmetry_operations())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="standard")
    parser.add_argument("--ids", nargs="*", default=DEFAULT_IDS)
    parser.add_argument("--mpi-procs", type=int, default=2)
    parser.add_argument("--work", type=Path, default=REPO / "benchmarks" / "work" / "dft_reproduction")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="Override a setting as `tansaku run dielectric --set` does; the results file is then "
                             "named after the overrides so the plain preset's results stay.")
    parser.add_argument("--reuse", type=Path, metavar="RESULTS.json",
                        help="An earlier run's results: its materials not in --ids are taken from it, provided the "
                             "settings they run with are this run's (checked per material, U restricted to its "
                             "elements); the table marks them.")
    parser.add_argument("--before", type=Path, metavar="RESULTS.json",
                        help="The results of the same benchmark before a change: adds the cost and accuracy "
                             "comparison, material by material.")
    parser.add_argument("--before-work", type=Path, metavar="DIR",
                        help="The --work directory of the --before run: k-points and symmetry operations of runs "
                             "that did not record them are read from their SCF logs there.")
    parser.add_argument("--note", dest="notes", action="append", default=[], metavar="TEXT",
                        help="A line for the Notes of the results (what the table cannot show, such as wall times "
                             "that include a pause or a shared machine); repeatable.")
    parser.add_argument("--results-name", metavar="NAME",
                        help="Write benchmarks/results/NAME.{md,json} instead of the name the preset and --set give "
                             "(e.g. the same-machine after run that dft_before_pairs.sh pairs with the before run).")
    parser.add_argument("--retry-failed", action="store_true",
                        help="Give steps that failed in an earlier run new attempts (as `tansaku run --retry-failed`).")
    parser.add_argument("--report-only", action="store_true",
                        help="Rewrite the results of --reuse's file without computing anything: every row as it was, "
                             "with its own run, sized by today's cost model (after a change to the model).")
    args = parser.parse_args()
    if args.report_only:
        return rewrite_report(args)
    db = staged_database(args.work, "dft.db", args.ids)
    ctx = local_dft_context(db, benchmark_settings(args.preset, args.overrides), args.preset, args.mpi_procs,
                            args.work / "runs", retry_failed=args.retry_failed)
    reused = reused_rows(args.reuse, ctx.settings, args.ids) if args.reuse else []
    for row in reused:  # sized by today's cost model, not the one of the run that made the row
        row["cost_size"] = _size(ctx, json.loads((DATA_DIR / f"{row['mp_id']}.json").read_text()))
    rows = []
    for mp_id in args.ids:
        reference = json.loads((DATA_DIR / f"{mp_id}.json").read_text())
        with db.session() as session:
            material = session.query(Material).filter_by(source_id=mp_id).one()
            material_id, formula, root = material.id, material.reduced_formula, material_dir(ctx, material)
        start = time.perf_counter()
        result = run_dielectric(ctx, material_id, lambda step, f=formula: print(f"{f}: {step}", flush=True))
        used = result.steps if result.status == "done" else None  # a failure's cost: every step it tried
        relaxed = root / result.scf_step / "state.json"
        volume_change = None
        if relaxed.exists() and json.loads(relaxed.read_text()).get("outputs"):
            from pymatgen.core import Structure

            ours = Structure.from_dict(json.loads(relaxed.read_text())["outputs"]["structure"])
            ref = Structure.from_dict(reference["structure"])
            volume_change = ours.volume / len(ours) / (ref.volume / len(ref)) - 1
        rows.append({
            "mp_id": mp_id, "formula": formula, "status": result.status, "reason": result.reason,
            "eps_electronic": result.eps_electronic, "eps_electronic_db": reference["dielectric"]["epsilon_electronic_avg"],
            "eps_ionic": result.eps_ionic, "eps_ionic_db": reference["dielectric"]["epsilon_ionic_avg"],
            "band_gap": result.band_gap, "band_gap_db": reference["band_gap"],
            "imaginary_modes": result.imaginary_modes, "volume_change": volume_change,
            "step_seconds": step_times(root, steps=used), "step_cpu_seconds": step_times(root, "cpu_seconds", used),
            "seconds_this_invocation": time.perf_counter() - start, "kspacing": result.kspacing,
            **scf_facts(root / result.scf_step, result.kspacing or ctx.settings.kspacing, ctx.settings.even_kmesh),
            "cost_size": _size(ctx, reference), "run": this_run(),
        })
        report(rows + reused, args)


def scf_facts(scf_dir: Path, spacing: float, even: bool) -> dict:
    """k-mesh, irreducible k-points and symmetry operations of the SCF the results come from, with spglib's count
    for the same cell."""
    from pymatgen.core import Structure

    from tansaku.dft.settings import kmesh

    state = scf_dir / "state.json"
    outputs = json.loads(state.read_text()).get("outputs") if state.exists() else None
    if not outputs:
        return {}
    structure = Structure.from_dict(outputs["structure"])
    return {"kmesh": list(kmesh(structure, spacing, even)), "k_points": outputs.get("k_points"),
            "symmetry_operations": outputs.get("symmetry_operations"),
            "spglib_operations": spglib_operations(structure)}


def _size(ctx, reference: dict) -> float:
    """The cost model's size of a database entry, with the database's gap telling it whether the small-gap rule
    runs (what a user who imported the database would know before running)."""
    from pymatgen.core import Structure

    from tansaku.active.cost import cost_size

    return cost_size(Structure.from_dict(reference["structure"]), ctx.settings, ctx.pseudos, reference["band_gap"])


def benchmark_settings(preset_name: str, overrides: list[str], fixed: list[str] | None = None):
    """The preset with the benchmark's FIXED settings (or a results file's own, `fixed`), then --set on top."""
    return preset(preset_name, parse_overrides([*(FIXED if fixed is None else fixed), *overrides]))


def rewrite_report(args) -> None:
    """The results of an earlier run, re-sized and re-reported (the cost model's check is the part that changes)."""
    if args.reuse is None:
        sys.exit("--report-only rewrites the results of --reuse RESULTS.json: give that file")
    earlier = json.loads(args.reuse.read_text())
    if earlier["preset"] != args.preset or earlier.get("overrides", []) != args.overrides:
        sys.exit(f"{args.reuse} holds the {earlier['preset']} preset with {earlier.get('overrides', [])}: "
                 "give the same --preset and --set")
    args.fixed = earlier.get("fixed", [])  # files written before FIXED: none
    ctx = SimpleNamespace(settings=benchmark_settings(args.preset, args.overrides, args.fixed),
                          pseudos=shared_pseudos())
    rows = [{**row, "cost_size": _size(ctx, json.loads((DATA_DIR / f"{row['mp_id']}.json").read_text()))}
            for row in earlier["materials"]]
    args.ids = [r["mp_id"] for r in rows if not r.get("reused_from")]
    args.planned = earlier.get("planned")
    args.notes = [*earlier.get("notes", []), *(n for n in args.notes if n not in earlier.get("notes", []))]
    report(rows, args)


def reused_rows(path: Path, settings, computed_ids: list[str]) -> list[dict]:
    """Rows of an earlier results file whose calculations this run's settings would repeat exactly."""
    from pymatgen.core import Composition

    earlier = json.loads(path.read_text())
    then = benchmark_settings(earlier["preset"], earlier.get("overrides", []), earlier.get("fixed", []))
    rows = []
    for row in earlier["materials"]:
        if row["mp_id"] in computed_ids:
            continue
        elements = {el.symbol for el in Composition(row["formula"]).elements}
        if then.for_elements(elements) != settings.for_elements(elements):
            sys.exit(f"{path}: {row['formula']} ({row['mp_id']}) ran with other settings than this run would use; "
                     "compute it here (add it to --ids) instead of reusing it")
        rows.append({**row, "reused_from": path.name, "run": run_of(row, earlier["machine"])})
    return rows


def report(rows: list[dict], args) -> None:
    def ape(ours, ref):
        return None if ours is None else abs(ours / ref - 1) * 100

    # without overrides the set is the default one, whichever part this invocation computed (or an earlier file,
    # written before "planned" was recorded, holds)
    total = max(getattr(args, "planned", None) or 0,
                len({*args.ids, *(r["mp_id"] for r in rows), *(DEFAULT_IDS if not args.overrides else [])}))
    order = {mp_id: i for i, mp_id in enumerate(DEFAULT_IDS)}
    rows = sorted(rows, key=lambda r: order.get(r["mp_id"], len(order)))
    done = [r for r in rows if r["status"] == "done"]
    e_err = [ape(r["eps_electronic"], r["eps_electronic_db"]) for r in done]
    i_err = [ape(r["eps_ionic"], r["eps_ionic_db"]) for r in done if not r["imaginary_modes"]]
    mape_e = sum(e_err) / len(e_err) if e_err else None
    mape_i = sum(i_err) / len(i_err) if i_err else None
    lines = [
        f"# DFT reproduction of the oxide dielectric database ({args.preset} preset"
        + "".join(f", {o}" for o in [*getattr(args, "fixed", FIXED), *args.overrides]) + ")", "",
        f"{len(done)} of {total} materials finished so far; pending ones are not in the table.", "",
        "| oxide | status | ε∞ ours / DB | ε_ion ours / DB | gap ours / DB (eV) | volume vs DB | "
        "CPU time per step (s) | run |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    runs, legend = runs_legend([run_of(r) for r in rows])

    def f(x, fmt=".2f"):
        return "–" if x is None else format(x, fmt)

    for r in rows:
        mark = " †" if r.get("reused_from") else ""
        # QE's CPU time × processes, every attempt: wall time would count a run paused to time another benchmark
        times = ", ".join(f"{k} {v:.0f}" for k, v in (r.get("step_cpu_seconds") or r["step_seconds"]).items())
        lines.append(
            f"| {r['formula']} ({r['mp_id']}){mark} | {r['status']} | {f(r['eps_electronic'])} / {r['eps_electronic_db']:.2f} "
            f"| {f(r['eps_ionic'])} / {r['eps_ionic_db']:.2f} | {f(r['band_gap'])} / {r['band_gap_db']:.2f} "
            f"| {f(r['volume_change'] * 100 if r['volume_change'] is not None else None, '+.1f')} % | {times} "
            f"| {run_number(runs, run_of(r))} |"
        )
    lines += ["", f"MAPE ε∞: **{f(mape_e, '.1f')} %** (target ≤ 3 %) over {len(e_err)} materials; "
              f"MAPE ε_ion: **{f(mape_i, '.1f')} %** (target ≤ 10 %) over {len(i_err)} materials without imaginary modes."]
    comparison: dict = {}
    if args.before:
        comparison = compare(rows, json.loads(args.before.read_text()), args.mpi_procs, args.before_work)
        lines += ["", *comparison.pop("lines")]
    fixed = getattr(args, "fixed", FIXED)
    cost = cost_model_check(done, benchmark_settings(args.preset, args.overrides, fixed),
                            shared_pseudos(), args.preset)
    if cost:
        lines += ["", *cost.pop("lines")]
    lines += ["", *legend]
    sources = sorted({r["reused_from"] for r in rows if r.get("reused_from")})
    if sources:
        lines += ["", f"† taken from {', '.join(sources)} (`--reuse`): the settings these materials run with are the "
                  "same in both runs (checked per material), so recomputing them would repeat the same calculation."]
    notes = [f"- {r['formula']}: {r['reason']}" for r in rows if r["reason"]] + [f"- {n}" for n in args.notes]
    if notes:
        lines += ["", "Notes:", *notes]
    name = getattr(args, "results_name", None) or results_name(args.preset, args.overrides)
    write_results(name,
                  {"preset": args.preset, "fixed": fixed, "overrides": args.overrides, "notes": args.notes,
                   "planned": total,
                   "materials": rows,
                   "mape_eps_electronic": mape_e, "mape_eps_ionic": mape_i, "before": comparison,
                   "cost_model": cost},
                  "\n".join(lines))


def results_name(preset_name: str, overrides: list[str]) -> str:
    """The results file's name (without suffix): the plain preset's, or one per set of --set overrides."""
    name = "dft_reproduction" + (f"_{preset_name}" if preset_name != "standard" else "")
    return name + "".join("_" + re.sub(r"[^A-Za-z0-9.]+", "-", o) for o in overrides)


def compare(rows: list[dict], before: dict, procs: int, before_work: Path | None = None) -> dict:
    """Before against now on the materials both runs finished: processor time (wall × processes, the one measure
    the older run has), k-points, symmetry and accuracy against the database."""
    then = {r["mp_id"]: r for r in before["materials"] if r["status"] == "done"}
    both = [(then[r["mp_id"]], _paired(then[r["mp_id"]], r)) for r in rows
            if r["status"] == "done" and r["mp_id"] in then]
    if not both:
        return {"lines": []}
    olds = [o for o, _ in both]
    before_procs = _procs(olds[0].get("before_command") or before["machine"]["command"])
    for old, _ in both:
        old.update({k: v for k, v in _logged_then(before_work, old["formula"], before_procs).items()
                    if not old.get(k)})

    def hours(row, p):  # None for a paired after row whose ledger kept no wall times
        return sum(row["step_seconds"].values()) * p / 3600 if row.get("step_seconds") is not None else None

    def cpu_hours(row):
        return sum(row.get("step_cpu_seconds", {}).values()) / 3600 or None

    def mape(pairs, key, skip_imaginary=False):
        errors = [abs(r[key] / r[f"{key}_db"] - 1) * 100 for r in pairs
                  if r[key] is not None and not (skip_imaginary and r["imaginary_modes"])]
        return sum(errors) / len(errors) if errors else None

    made_by = (f"`{before['machine']['command']}` at {before['machine']['commit']}" if "before_commit" not in olds[0]
               else f"each material's own run of the code at {', '.join(sorted({o['before_commit'] for o in olds}))}"
               f", collected by `{before['machine']['command']}`")
    lines = [f"## Before and after (before: {made_by})", "",
             *(["CPU hours after: the after run repeated on the before run's machine where the ledger holds one "
                "(`dft_before_pairs.sh`), this file's own otherwise.", ""]
               if any(o.get("after_same_machine") for o in before["materials"]) else []),
             "| oxide | CPU hours before → after | ratio | wall × processes (h) before → after | k-points before → "
             "after | symmetry pw.x before → after / spglib | ε∞ before → after / DB | ε_ion before → after / DB |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for old, new in both:
        h0, h1 = hours(old, before_procs), hours(new, procs)
        c0, c1 = cpu_hours(old), cpu_hours(new)
        cpu = f"{c0:.3f} → {c1:.3f} | {c1 / c0:.2f}" if c0 and c1 else "– | –"
        wall = f"{h0:.2f} → {h1:.2f}" if h0 is not None and h1 is not None else "–"
        lines.append(f"| {new['formula']} ({new['mp_id']}) | {cpu} | {wall} | "
                     f"{old.get('k_points') or '–'} → {new.get('k_points') or '–'} | "
                     f"{old.get('symmetry_operations') or '–'} → {new.get('symmetry_operations')} / "
                     f"{new.get('spglib_operations')} | "
                     f"{old['eps_electronic']:.2f} → {new['eps_electronic']:.2f} / {new['eps_electronic_db']:.2f} | "
                     f"{old['eps_ionic']:.2f} → {new['eps_ionic']:.2f} / {new['eps_ionic_db']:.2f} |")
    # accuracy also over materials the before run was stopped on but whose ε an earlier complete run of the same
    # physics gave (the ledger's eps_from): ε does not depend on the machine
    borrowed = {r["mp_id"]: r for r in before["materials"] if r["status"] == "stopped"
                and r.get("eps_electronic") is not None}
    news = [n for _, n in both]
    also = [r for r in rows if r["status"] == "done" and r["mp_id"] in borrowed]
    eps_olds, eps_news = olds + [borrowed[r["mp_id"]] for r in also], news + also
    with_wall = [(o, n) for o, n in both if hours(o, before_procs) is not None and hours(n, procs) is not None]
    total0 = sum(hours(o, before_procs) for o, _ in with_wall)
    total1 = sum(hours(n, procs) for _, n in with_wall)
    with_cpu = [(o, n) for o, n in both if cpu_hours(o) and cpu_hours(n)]
    cpu0 = sum(cpu_hours(o) for o, _ in with_cpu)
    cpu1 = sum(cpu_hours(n) for _, n in with_cpu)
    out = {"materials": [n["mp_id"] for n in news], "processor_hours_before": total0, "processor_hours_after": total1,
           "wall_ratio": total1 / total0 if total0 else None, "wall_materials": [n["mp_id"] for _, n in with_wall],
           "cpu_hours_before": cpu0, "cpu_hours_after": cpu1,
           "ratio": cpu1 / cpu0 if cpu0 else None, "cpu_materials": [n["mp_id"] for _, n in with_cpu],
           "mape_eps_electronic": [mape(eps_olds, "eps_electronic"), mape(eps_news, "eps_electronic")],
           "mape_eps_ionic": [mape(eps_olds, "eps_ionic", True), mape(eps_news, "eps_ionic", True)],
           "mape_materials": [n["mp_id"] for n in eps_news],
           "symmetry_complete": all(n.get("symmetry_operations") == n.get("spglib_operations") for n in rows
                                    if n["status"] == "done")}
    f = (lambda x: "–" if x is None else f"{x:.1f}")  # noqa: E731
    wall_total = (f"{total0:.2f} → {total1:.2f} h ({out['wall_ratio']:.2f}×, over the {len(with_wall)} materials "
                  "with wall times of one machine)" if with_wall else "–")
    cpu_total = (f"**{cpu0:.2f} → {cpu1:.2f} CPU hours ({out['ratio']:.2f}×)** (QE's CPU time × processes, over the "
                 f"{len(with_cpu)} materials both runs logged it; target ≤ 0.4×); wall × processes {wall_total}"
                 if with_cpu else f"**wall × processes {wall_total}** (target ≤ 0.4×)")
    eps_over = (f" over the {len(eps_news)} materials with ε from both codes ({len(eps_news) - len(both)} of them "
                "from an earlier complete run of the old code, ledger's eps_from)" if len(eps_news) > len(both) else "")
    lines += ["", f"Total over the {len(both)} materials both runs finished: {cpu_total}. MAPE{eps_over} ε∞ "
              f"{f(out['mape_eps_electronic'][0])} → "
              f"{f(out['mape_eps_electronic'][1])} %, ε_ion {f(out['mape_eps_ionic'][0])} → "
              f"{f(out['mape_eps_ionic'][1])} % (target: within 0.5 points of before, or better). Every finished "
              f"material's symmetry count equals spglib's: **{out['symmetry_complete']}**."]
    stopped = stopped_before(rows, before, before_procs, before_work)
    if stopped:
        low0 = cpu0 + sum(used for _, used, _ in stopped)
        now1 = cpu1 + sum(cpu_hours(n) or 0.0 for n, _, _ in stopped)
        out["stopped_before"] = {n["mp_id"]: {"cpu_hours_before_at_least": used, "cpu_hours_after": cpu_hours(n)}
                                 for n, used, _ in stopped}
        out["ratio_at_most"] = now1 / low0
        lines += ["", "Materials the before run was stopped on (CPU it had used by then: a lower bound on its cost, so "
                  "the ratio is an upper bound):", "",
                  "| oxide | CPU hours before (at least) → after | ratio (at most) | k-points before → after | "
                  "symmetry pw.x before → after / spglib |", "| --- | --- | --- | --- | --- |"]
        for new, used, logged in stopped:
            lines.append(f"| {new['formula']} ({new['mp_id']}) | ≥ {used:.3f} → {cpu_hours(new):.3f} | "
                         f"≤ {cpu_hours(new) / used:.2f} | {logged.get('k_points') or '–'} → {new.get('k_points')} | "
                         f"{logged.get('symmetry_operations') or '–'} → {new.get('symmetry_operations')} / "
                         f"{new.get('spglib_operations')} |")
        lines += ["", f"Over {len(with_cpu) + len(stopped)} materials ({len(with_cpu)} both runs finished with CPU "
                  f"logged, {len(stopped)} the before run was stopped on): **≥ {low0:.2f} → {now1:.2f} CPU hours, "
                  f"ratio ≤ {out['ratio_at_most']:.2f}×** (target ≤ 0.4×)."]
    out["lines"] = lines
    return out


def _logged_then(work: Path | None, formula: str, procs: int) -> dict:
    """k-points, symmetry operations and QE's CPU seconds per step (every attempt's log, × processes) from the
    logs an older run left in its work directory; a step stopped before its end counts the CPU it had used
    (`cpu_seconds_so_far`), so a run stopped early gives a lower bound on its cost."""
    from tansaku.dft.qe.parsers import cpu_seconds_so_far, irreducible_k_points, symmetry_operations

    roots = sorted(work.glob(f"runs/*-{formula}")) if work else []
    if len(roots) != 1:
        return {}
    steps = sorted(p for p in roots[0].iterdir() if (p / "output.out").exists())
    if not steps:
        return {}
    first = next((roots[0] / name / "output.out" for name in ("scf", "relax") if (roots[0] / name).is_dir()),
                 steps[0] / "output.out")
    log = first.read_text(errors="replace") if first.exists() else ""
    cpu = {}
    for step in steps:
        logs = [step / "output.out", *sorted(step.glob("attempt*.out"))]
        cpu[step.name] = sum(cpu_seconds_so_far(x.read_text(errors="replace")) or 0.0 for x in logs) * procs
    return {"k_points": irreducible_k_points(log), "symmetry_operations": symmetry_operations(log),
            "step_cpu_seconds": cpu}


def stopped_before(rows: list[dict], before: dict, procs: int, before_work: Path | None
                   ) -> list[tuple[dict, float, dict]]:
    """(row now, CPU hours the older run had used, what its logs say) for the materials finished now that the
    older run was stopped on: what it had used is a lower bound on its cost, so now/then bounds the ratio above."""
    finished = {r["mp_id"] for r in before["materials"] if r["status"] == "done"}
    stopped = {r["mp_id"]: r for r in before["materials"] if r["status"] == "stopped"}  # dft_before_ledger.py's
    out = []
    for row in rows:
        if row["status"] != "done" or row["mp_id"] in finished:
            continue
        logged = stopped.get(row["mp_id"]) or _logged_then(before_work, row["formula"], procs)
        if used := sum(logged.get("step_cpu_seconds", {}).values()) / 3600:
            out.append((_paired(logged, row), used, logged))
    return out


def _paired(before_row: dict, row: dict) -> dict:
    """The after row with the CPU times of the after run that ran beside the before run on its machine
    (dft_before_pairs.sh), when there is one: QE's CPU times of two machines do not compare."""
    pair = before_row.get("after_same_machine")  # wall times too, or none: the file's own are another machine's
    return {**row, "step_cpu_seconds": pair["step_cpu_seconds"], "step_seconds": pair.get("step_seconds")} if pair \
        else row


def _procs(command: str) -> int:
    match = re.search(r"--mpi-procs[ =](\d+)", command)
    return int(match.group(1)) if match else 2


def cost_model_check(done: list[dict], settings, pseudos, preset_name: str) -> dict:
    """The cost model's estimate of each material's CPU hours when it learns from all the others (leave one out):
    their step weights (`StepWeights.learn` on their per-step CPU times) and then their scale."""
    from dataclasses import asdict

    import numpy as np
    from pymatgen.core import Structure

    from tansaku.active.cost import CostModel, StepWeights, cost_size, prior_scale, step_ratios
    from tansaku.workflows.dielectric import GAP_STEPS

    rows = [r for r in done if r.get("cost_size") and sum(r.get("step_cpu_seconds", {}).values())]
    if len(rows) < 3:
        return {}
    hours = {r["mp_id"]: sum(r["step_cpu_seconds"].values()) / 3600 for r in rows}
    references = {r["mp_id"]: json.loads((DATA_DIR / f"{r['mp_id']}.json").read_text()) for r in rows}
    structures = {k: Structure.from_dict(v["structure"]) for k, v in references.items()}
    ratios = {r["mp_id"]: step_ratios(r["step_cpu_seconds"], structures[r["mp_id"]], settings, pseudos)
              for r in rows}
    estimates = {}
    for r in rows:
        others = [o["mp_id"] for o in rows if o is not r]
        weights = StepWeights.learn([ratios[o] for o in others])

        def size(mp_id: str, w: StepWeights = weights) -> float:
            return cost_size(structures[mp_id], settings, pseudos, references[mp_id]["band_gap"], weights=w)

        model = CostModel.calibrate([size(o) for o in others], [hours[o] for o in others])
        estimates[r["mp_id"]] = float(model.hours(size(r["mp_id"])))
    everyone = StepWeights.learn(list(ratios.values()))
    in_sample = float(np.median([hours[k] / cost_size(structures[k], settings, pseudos, references[k]["band_gap"],
                                                      weights=everyone) for k in hours]))
    gap_hours = {r["mp_id"]: sum(v for k, v in r["step_cpu_seconds"].items() if k in GAP_STEPS) / 3600
                 for r in rows}
    gap_scale = float(np.median([gap_hours[k] / cost_size(structures[k], settings, pseudos, gap_only=True,
                                                          weights=everyone) for k in hours]))
    errors = {k: estimates[k] / hours[k] - 1 for k in hours}
    total_error = sum(estimates.values()) / sum(hours.values()) - 1
    lines = ["## Cost model (leave one out: step weights and scale learned from the other materials' QE CPU hours)",
             "",
             "| oxide | CPU hours measured | estimated | error |", "| --- | --- | --- | --- |"]
    lines += [f"| {r['formula']} ({r['mp_id']}) | {hours[r['mp_id']]:.3f} | {estimates[r['mp_id']]:.3f} | "
              f"{errors[r['mp_id']]:+.0%} |" for r in rows]
    median = float(sorted(abs(e) for e in errors.values())[len(errors) // 2])
    within = sum(abs(e) <= 0.3 for e in errors.values())
    lines += ["", f"Total: estimated {sum(estimates.values()):.2f} vs measured {sum(hours.values()):.2f} CPU hours "
              f"({total_error:+.0%}); per material, median |error| {median:.0%}, {within} of {len(errors)} within "
              "30 % (target: within 30 %).",
              "", f"Step weights from all {len(rows)}: relaxation {everyone.relax:.2f} SCFs, ph.x "
              f"{everyone.dfpt_triple:.2f} per displacement triple, the field {everyone.field:.2f} triples; scale "
              f"(median CPU hours per size) {in_sample:.2e}, against the {preset_name} preset's prior "
              f"{prior_scale(preset_name):.2e} in active/cost.py; of the relaxation and SCF alone (a gap run) "
              f"{gap_scale:.2e}, against {prior_scale(preset_name, gap_only=True):.2e}."]
    return {"estimates": estimates, "measured": hours, "total_error": total_error, "median_abs_error": median,
            "within_30_percent": within, "weights": asdict(everyone), "scale": in_sample, "gap_scale": gap_scale,
            "lines": lines}


if __name__ == "__main__":
    main()
