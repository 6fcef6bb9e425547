"""The before run of issue 34, kept material by material in a committed results file that outlives its machine.

`dft_before_capped.sh` runs the DFT workflow as it was before issue 34 (a git worktree) one material at a time,
each stopped at a cap; its step directories and logs live on the machine that ran them, and a session may end
(and the machine go) before the whole set is done. After each material the script calls this one, which reads
what the worktree left and merges it into `benchmarks/results/dft_reproduction_before_clean.json`:

- a material the old workflow finished: ε∞, ε_ion, gap and wall time per step from the worktree's results file;
- every material, finished or stopped at its cap: QE's CPU time per step (every attempt's log, × processes; a
  step stopped before its end counts what it had used), irreducible k-points and symmetry operations from the logs.

Rows of earlier invocations (other machines, other sessions) stay unless this one has the same material. Then
`dft_reproduction.py --report-only --reuse benchmarks/results/dft_reproduction.json --before
benchmarks/results/dft_reproduction_before_clean.json` compares, a stopped material counting as a lower bound.

A material stopped at its cap has no ε of its own. `--eps-from RESULTS.json` gives such rows the ε of an earlier
complete run of the same physics (the old workflow's own results file, from another machine or session: ε does not
depend on the machine, CPU time does), recorded as `eps_from` with that file's commit, so that the accuracy half of
the comparison covers them too.

Run: python benchmarks/dft_before_ledger.py --before /work/before --ids mp-1265 [--cap 234]
     python benchmarks/dft_before_ledger.py --eps-from benchmarks/results/dft_reproduction_2026-11-24.json --ids mp-1265
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, machine, run_of, this_run, write_results  # noqa: E402
from dft_reproduction import DATA_DIR, FIXED, _logged_then, _procs, results_name  # noqa: E402

NAME = "dft_reproduction_before_clean"


# the old script has no FIXED settings: dft_before_capped.sh passes them as --set, which names its results file
RESULTS_FILE = results_name("standard", FIXED) + ".json"


def ledger_row(before: Path, mp_id: str, cap: int | None, after: dict | None = None) -> dict | None:
    """What the worktree at `before` knows of one material: a finished row from the results file its run wrote,
    else the CPU its logs show (status "stopped"); None when it never started."""
    work = before / "benchmarks" / "work"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=before).stdout.strip()
    formula = _formula(mp_id)
    finished, command = None, None
    path = before / "benchmarks" / "results" / RESULTS_FILE
    results = json.loads(path.read_text()) if path.exists() else {"materials": []}
    if results["materials"] and results["machine"]["commit"] != commit:  # a file of other code than the worktree's
        sys.exit(f"{path} was written at {results['machine']['commit']}, the worktree is at {commit}")
    for row in results["materials"]:
        if row["mp_id"] == mp_id and row["status"] == "done":
            finished, command = row, results["machine"]["command"]
    procs = _procs(command or "")
    logged = _logged_then(work / "dft_reproduction", formula, procs)
    if not logged.get("step_cpu_seconds"):
        return None
    used = work / f"cap-used-{mp_id}"
    row = {"mp_id": mp_id, "formula": formula, "status": "done" if finished else "stopped",
           **({k: finished[k] for k in ("eps_electronic", "eps_electronic_db", "eps_ionic", "eps_ionic_db",
                                        "band_gap", "band_gap_db", "imaginary_modes", "volume_change",
                                        "step_seconds")} if finished else {}),
           **logged, "cap_wall_seconds": cap,
           "wall_seconds_used": int(used.read_text()) if used.exists() else None,
           "before_commit": commit,
           "before_command": command or "python benchmarks/dft_reproduction.py --preset standard --mpi-procs 2 "
                                        + "".join(f"--set {o} " for o in FIXED) + f"--ids {mp_id}",
           "platform": machine()["platform"], "run": this_run()}
    paired = next((r for r in (after or {}).get("materials", []) if r["mp_id"] == mp_id and r["status"] == "done"),
                  None)
    if paired:  # the after run on this machine, this session: CPU times of two machines do not compare
        row["after_same_machine"] = {"step_cpu_seconds": paired["step_cpu_seconds"],
                                     "step_seconds": paired["step_seconds"],
                                     "platform": after["machine"]["platform"], "run": run_of(paired, after["machine"])}
    return row


EPS_KEYS = ("eps_electronic", "eps_electronic_db", "eps_ionic", "eps_ionic_db", "imaginary_modes")


def with_earlier_eps(rows: list[dict], ids: list[str], earlier: dict, name: str) -> list[dict]:
    """The ledger with the stopped rows of `ids` given ε from `earlier` (a complete run's results), each saying
    where it came from; a row that is not stopped, or a material `earlier` did not finish, is an error."""
    done = {r["mp_id"]: r for r in earlier["materials"] if r["status"] == "done"}
    by_id = {r["mp_id"]: r for r in rows}
    for mp_id in ids:
        row = by_id.get(mp_id)
        if row is None or row["status"] != "stopped":
            sys.exit(f"{mp_id}: {'not in the ledger' if row is None else 'finished in the ledger, with its own ε'}")
        if mp_id not in done:
            sys.exit(f"{mp_id}: {name} did not finish it")
        row.update({k: done[mp_id][k] for k in EPS_KEYS},
                   eps_from={"file": name, "commit": earlier["machine"]["commit"],
                             "command": earlier["machine"]["command"]})
    return rows


def _formula(mp_id: str) -> str:
    from pymatgen.core import Structure

    path = DATA_DIR / f"{mp_id}.json"
    if not path.exists():
        sys.exit(f"{mp_id}: not in the reference database ({path} missing)")
    structure = Structure.from_dict(json.loads(path.read_text())["structure"])
    return structure.composition.reduced_formula


def merge(earlier: list[dict], new: list[dict]) -> list[dict]:
    """Earlier rows, each replaced by this invocation's row of the same material, then the new materials."""
    fresh = {r["mp_id"]: r for r in new}
    rows = [fresh.pop(r["mp_id"], r) for r in earlier]
    return rows + list(fresh.values())


def _machine(row: dict) -> str:
    """The machine a pair ran on, short: the kernel build in the platform string (…-fc-v1300)."""
    platform = row.get("platform") or ""
    return next((part for part in platform.split("-") if part.startswith("v") and part[1:].isdigit()), platform or "–")


def on_reference_machine(pairs: list[dict]) -> tuple[float, float, str] | None:
    """(after, before, file) in CPU hours of the after table's machine: each pair's before scaled by the ratio of
    its material's CPU there to its same-machine after run. None when a material is missing from that table."""
    path = RESULTS / "dft_reproduction.json"
    reference = {r["mp_id"]: sum(r["step_cpu_seconds"].values()) for r in json.loads(path.read_text())["materials"]
                 if r["status"] == "done" and r.get("step_cpu_seconds")}
    if any(r["mp_id"] not in reference for r in pairs):
        return None
    after = sum(reference[r["mp_id"]] for r in pairs) / 3600
    before = sum(sum(r["step_cpu_seconds"].values()) * reference[r["mp_id"]]
                 / sum(r["after_same_machine"]["step_cpu_seconds"].values()) for r in pairs) / 3600
    return after, before, path.name


def report(rows: list[dict]) -> str:
    lines = ["# The DFT workflow before issue 34, material by material (the before run of `dft_reproduction.py`)",
             "", "Each material ran alone on the 2 cores (`benchmarks/dft_before_capped.sh`), from a git worktree at "
             "the commit named, and was stopped once it had run its cap of wall time (1.25-2.6 × the after run's CPU "
             "seconds on the same machine, i.e. about 2.4-5 × its CPU time on 2 processes): a stopped material's CPU is "
             "a lower bound on its cost. CPU is QE's own time × processes, every attempt.", "",
             "| oxide | status | CPU s per step | CPU h | after, same machine (CPU h) | after / before | k-points | "
             "symmetry ops | ε∞ / DB | ε_ion / DB | cap (wall s) | machine | commit | recorded |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        cpu = r["step_cpu_seconds"]
        steps = ", ".join(f"{k} {v:.0f}" for k, v in cpu.items())
        mark = " ᵉ" if r.get("eps_from") else ""
        eps = (f"{r['eps_electronic']:.2f} / {r['eps_electronic_db']:.2f}{mark} | {r['eps_ionic']:.2f} / "
               f"{r['eps_ionic_db']:.2f}{mark}" if r.get("eps_electronic") is not None else "– | –")
        bound = "≥ " if r["status"] == "stopped" else ""
        then = sum(cpu.values()) / 3600
        now = sum(r["after_same_machine"]["step_cpu_seconds"].values()) / 3600 if r.get("after_same_machine") else None
        pair = f"{now:.3f} | {'≤ ' if bound else ''}{now / then:.2f}" if now else "– | –"
        lines.append(f"| {r['formula']} ({r['mp_id']}) | {r['status']} | {steps} | {bound}"
                     f"{then:.3f} | {pair} | {r.get('k_points') or '–'} | "
                     f"{r.get('symmetry_operations') or '–'} | {eps} | {r.get('cap_wall_seconds') or '–'} | "
                     f"{_machine(r)} | {r['before_commit']} | {r['run']['date']} |")
    pairs = [r for r in rows if r.get("after_same_machine")]
    if pairs:
        then = sum(sum(r["step_cpu_seconds"].values()) for r in pairs) / 3600
        now = sum(sum(r["after_same_machine"]["step_cpu_seconds"].values()) for r in pairs) / 3600
        stopped = sum(r["status"] == "stopped" for r in pairs)
        lines += ["", f"Over the {len(pairs)} materials with both runs on one machine: before "
                  f"{'≥ ' if stopped else ''}{then:.3f}, after {now:.3f} CPU hours, **after / before "
                  f"{'≤ ' if stopped else ''}{now / then:.2f}** (target ≤ 0.4){f'; {stopped} stopped at their cap' if stopped else ''}."]
        if len({_machine(r) for r in pairs}) > 1 and (scaled := on_reference_machine(pairs)):
            ref_now, ref_then, name = scaled
            lines += ["", f"The pairs come from {len({_machine(r) for r in pairs})} machines, so that total weighs each "
                      "material by its machine's speed. On one scale, the after table's (`" + name + "`: each "
                      "material's before run multiplied by its after-table CPU over its same-machine after CPU, which "
                      f"keeps its ratio): before {'≥ ' if stopped else ''}{ref_then:.3f}, after {ref_now:.3f} CPU "
                      f"hours, **after / before {'≤ ' if stopped else ''}{ref_now / ref_then:.2f}**."]
    borrowed = sorted({(r["eps_from"]["file"], r["eps_from"]["commit"]) for r in rows if r.get("eps_from")})
    if borrowed:
        lines += ["", "ᵉ ε of a material stopped at its cap: from an earlier complete run of the old workflow with the "
                  "same physics (" + "; ".join(f"{f} at {c}" for f, c in borrowed) + "), added with `--eps-from`."]
    lines += ["", "Commands: `BEFORE=/work/before bash benchmarks/dft_before_pairs.sh ID ...` runs each material's "
              "after run on this machine, then `dft_before_capped.sh ID:CAP` with the cap from it (each material's "
              "old-workflow command is in the JSON, `before_command`), which calls `python "
              "benchmarks/dft_before_ledger.py --before /work/before --ids ID --cap CAP` after each material."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", type=Path, help="The git worktree the before run ran in.")
    parser.add_argument("--ids", nargs="+", required=True)
    parser.add_argument("--cap", type=int, help="The wall-time cap (s) the material ran under, if any.")
    parser.add_argument("--after-results", type=Path, metavar="RESULTS.json",
                        help="The after run of the same materials on this machine (dft_before_pairs.sh): its CPU "
                             "times are kept beside the before run's, the pair the ratio is taken from.")
    parser.add_argument("--eps-from", type=Path, metavar="RESULTS.json",
                        help="Instead of reading a worktree: give the ledger's stopped rows of --ids the ε of this "
                             "complete run of the old workflow (same physics; check that first).")
    args = parser.parse_args()
    path = RESULTS / f"{NAME}.json"
    if args.eps_from:
        if not path.exists():
            sys.exit(f"{path}: no ledger yet")
        try:
            earlier = json.loads(args.eps_from.read_text())
        except (OSError, ValueError) as exc:
            sys.exit(f"{args.eps_from}: cannot be read as JSON ({exc})")
        if not isinstance(earlier, dict) or "materials" not in earlier or "commit" not in earlier.get("machine", {}):
            sys.exit(f"{args.eps_from}: not a results file of dft_reproduction.py (no materials or no commit)")
        rows = with_earlier_eps(json.loads(path.read_text())["materials"], args.ids, earlier, args.eps_from.name)
        write_results(NAME, {"materials": rows}, report(rows))
        return
    if args.before is None:
        sys.exit("give --before (the worktree to collect from) or --eps-from")
    if not (args.before / ".git").exists():
        sys.exit(f"{args.before}: not a git worktree of the code before the change (git worktree add DIR de39de8)")
    earlier = json.loads(path.read_text())["materials"] if path.exists() else []
    after = json.loads(args.after_results.read_text()) if args.after_results else None
    new = [row for mp_id in args.ids if (row := ledger_row(args.before, mp_id, args.cap, after))]
    missing = set(args.ids) - {r["mp_id"] for r in new}
    if missing:
        print(f"no logs of {', '.join(sorted(missing))} under {args.before}: not started there", file=sys.stderr)
    if not new:
        sys.exit(1)
    rows = merge(earlier, new)
    write_results(NAME, {"materials": rows}, report(rows))


if __name__ == "__main__":
    main()
