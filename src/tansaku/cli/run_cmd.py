"""`tansaku run dielectric`: relax, band gap, DFPT and ε_ion for many materials, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.live import Live
from rich.table import Table

from tansaku import TansakuError
from tansaku.cli.common import STRUCTURE_FILES, console, database, finish_batch
from tansaku.dft.settings import PRESETS
from tansaku.workflows.job import DEFAULT_LAUNCHER, Job
from tansaku.workflows.many import resolve_inputs, run_many

app = typer.Typer(help="Run first-principles workflows (Quantum ESPRESSO).")


def parse_overrides(items: list[str] | None) -> dict:
    """'key=value' strings into typed settings overrides (numbers, booleans, None)."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise TansakuError(f"--set {item!r}: expected key=value")
        key, value = item.split("=", 1)
        lowered = value.strip().lower()
        if lowered in ("true", "false"):
            out[key.strip()] = lowered == "true"
        elif lowered in ("none", "null"):
            out[key.strip()] = None
        else:
            try:
                out[key.strip()] = int(value) if value.strip().lstrip("-").isdigit() else float(value)
            except ValueError:
                out[key.strip()] = value.strip()
    return out


ELECTRONIC_HELP = """Compute band structures, band edges, gaps, effective masses, hybrid gaps and
    absorption with Quantum ESPRESSO.

    Steps: the relaxation and SCF of `run dielectric` (shared: a material
    relaxed by either command is not relaxed again); pw.x along the standard
    high-symmetry path (Hinuma et al., as seekpath gives it; band_spacing 0.025
    Å⁻¹ between points); band masses from a 3x3x3 grid around each edge; a
    denser uniform mesh (dense_kspacing) whose edges join the path's and whose
    bands BoltzTraP2 interpolates for conductivity masses (300 K, 1e18 cm⁻³).
    --hybrid adds HSE06 and dielectric-dependent hybrid gaps (nsc: one
    diagonalization on PBE orbitals, several times cheaper; scf:
    self-consistent; both). --optics adds epsilon.x's independent-particle ε(ω), the
    absorption coefficient and its onset, scissor-shifted to the hybrid gap when
    there is one.

    Stored: band_gap, band_gap_direct (with where the edges are), m_e_band,
    m_h_band, m_e, m_h (tensors beside them), band_gap_hse06 and band_gap_ddh
    (method ...:nsc or ...:scf), absorption_onset. Options, resume,
    --retry-failed and SLURM as in `run dielectric`.

    Example: tansaku run electronic MgO.cif --preset test --hybrid nsc --optics
    --plots figs --pseudo-dir ../shared/pseudos/pseudodojo-nc-sr-pbe-v0.4
    """


@app.command("electronic", help=ELECTRONIC_HELP)
@app.command("dielectric")
def dielectric(
    command: typer.Context,
    files: list[Path] = typer.Argument(None, help=f"Structure files: {STRUCTURE_FILES}."),
    ids: list[int] = typer.Option(None, "--ids", help="Material ids in the database (repeatable)."),
    query: str = typer.Option(None, help="Select stored materials, e.g. 'formula=MgO,CaO' or "
                              "'subset=paper;max_sites=5'."),
    preset_name: str = typer.Option("standard", "--preset", help=f"Settings preset: {', '.join(PRESETS)}."),
    overrides: list[str] = typer.Option(None, "--set", help="Override a setting, e.g. --set ecutwfc=60 "
                                        "--set kspacing=0.3 (Å⁻¹ between k-points) or --set k_converge=0.01 (measure "
                                        "each material's k-mesh: refine until ε∞ changes by less than 1 percent) "
                                        "--set hubbard_u=Zn:5,Cu:5 (Dudarev U in eV on d/f "
                                        "shells; hubbard_u=reference for the reference database's U set, "
                                        "hubbard_u=none for plain PBEsol; spin=off to keep open-shell cations "
                                        "spin-unpolarized, default auto: ferromagnetic high spin) (repeatable)."),
    pseudo_dir: Path = typer.Option(None, help="Pseudopotential family directory (default $TANSAKU_PSEUDO_DIR)."),
    workers: int = typer.Option(1, help="Materials computed at the same time."),
    mpi_procs: int = typer.Option(1, help="MPI processes per pw.x/ph.x run."),
    pw_command: str = typer.Option("pw.x", help="pw.x executable (or a wrapper command)."),
    ph_command: str = typer.Option("ph.x", help="ph.x executable."),
    launcher: str = typer.Option(DEFAULT_LAUNCHER,
                                 help="MPI launcher used when --mpi-procs > 1; {n} is the process count."),
    run_dir: Path = typer.Option(Path("runs"), help="Where runs/<material>/<step>/ are written."),
    executor_name: str = typer.Option("local", "--executor", help="local (child processes) or slurm (one "
                                      "batch job per step; rerunning the command reattaches to its jobs)."),
    slurm_profile: Path = typer.Option(None, help="TOML with partition, account, nodes, ntasks, cpus_per_task, "
                                       "mem, walltime, qos, setup (lines such as 'module load qe'), launcher "
                                       "(default 'srun -n {n}') and extra #SBATCH options."),
    json_out: Path = typer.Option(None, "--json", help="Write results keyed by each input as given."),
    plots: Path = typer.Option(None, help="run electronic: a band-structure PNG per material in this directory."),
    hybrid: str = typer.Option(None, help="run electronic: HSE06 and dielectric-dependent hybrid gaps, 'scf' "
                               "(self-consistent), 'nsc' (one diagonalization with exact exchange on PBE orbitals: "
                               "several times cheaper), 'both', or 'none' (default). Same as --set hybrid=..."),
    functionals: str = typer.Option(None, help="run electronic --hybrid: which hybrids, 'hse06', 'ddh' or "
                                    "'hse06,ddh' (default; the DDH needs ε∞, from the stored DFPT value or a "
                                    "field-only ph.x). Same as --set hybrid_functionals=..."),
    optics: bool = typer.Option(False, "--optics", help="run electronic: the independent-particle dielectric function "
                                "(epsilon.x on a full uniform mesh: the costliest step after the hybrids), the "
                                "absorption coefficient and its onset (α = 1e4 cm⁻¹), scissor-shifted to the hybrid "
                                "gap when there is one. Same as --set optics=true."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Give steps that failed or were cancelled in "
                                      "an earlier run new attempts (after fixing their cause, e.g. with --set); "
                                      "without it a failed step fails again at once with its recorded reason."),
    estimate: bool = typer.Option(False, "--estimate", help="run dielectric: run nothing; print each material's "
                                  "estimated CPU hours (the cost model campaigns rank by, calibrated on this "
                                  "database's finished runs with the preset) with the k-mesh and stored gap behind "
                                  "it. Files are stored as materials, as a run would."),
) -> None:
    """Compute band gap, ε∞, ε_ion and ε_total of each material with Quantum
    ESPRESSO.

    Steps: vc-relax in PBEsol (again if the cell changed a lot), SCF with
    empty bands (a metal stops here), ph.x at Γ (ε∞, Born charges, force
    constants), then ε_ion with the acoustic sum rule. A gap below
    small_gap_ev (2 eV) first measures the k-mesh ε∞ needs: an SCF and a
    field-only ph.x per mesh until ε∞ changes by less than 1 %; the mesh that
    settled gives ε∞ and the Born charges, and only the displacements run
    after it.

    Each step lives in RUN_DIR/<id>-<formula>/<step>/ with its input, output
    and state.json. Running the same command again skips finished steps and
    restarts interrupted ones (ph.x from its last checkpoint, a relaxation
    from its last geometry). Known failures (SCF or relaxation not
    converging, walltime, ph.x symmetry or convergence trouble) are fixed by
    error handlers that record what they changed.

    Before a large batch, --estimate prints what each material will cost
    (CPU hours, k-mesh, whether its stored gap sends it to the k-mesh probes)
    and runs nothing.

    Example: tansaku run dielectric MgO.cif --preset test
    --pseudo-dir ../shared/pseudos/pseudodojo-nc-sr-pbe-v0.4

    Example: tansaku run dielectric --query 'subset=paper;max_sites=6'
    --estimate --mpi-procs 2
    """
    settings_overrides = parse_overrides(overrides)
    if hybrid is not None:
        settings_overrides["hybrid"] = hybrid
    if functionals is not None:
        settings_overrides["hybrid_functionals"] = functionals
    if optics:
        settings_overrides["optics"] = True
    job = Job(preset=preset_name, overrides=settings_overrides,
              pseudo_dir=str(pseudo_dir) if pseudo_dir else None, executor=executor_name,
              slurm_profile=str(slurm_profile) if slurm_profile else None, launcher=launcher,
              pw_command=pw_command, ph_command=ph_command, mpi_procs=mpi_procs, workers=workers,
              run_dir=str(run_dir))
    workflow = command.info_name  # one function serves both commands
    if (plots is not None or hybrid is not None or functionals is not None or optics) and workflow != "electronic":
        raise TansakuError("--plots, --hybrid, --functionals and --optics go with `tansaku run electronic`")
    if estimate and workflow != "dielectric":
        raise TansakuError("--estimate goes with `tansaku run dielectric`: the cost model sizes the dielectric "
                           "workflow (and its gap steps), not the band structures and hybrids of `run electronic`")
    ctx = job.context(database())
    ctx.retry_failed = retry_failed
    targets, failures = resolve_inputs(ctx.db, files, ids, query)
    if not targets and not failures:
        raise TansakuError("nothing to run: give structure files, --ids or --query")
    if estimate:
        _print_estimate(ctx, targets, failures, json_out, workers)
        return
    status = {key: "queued" for key in targets}

    def table() -> Table:
        grid = Table("input", "state", title=f"{workflow} workflow ({preset_name}), {workers} at a time")
        for key, value in status.items():
            grid.add_row(key, value)
        return grid

    with Live(table(), console=console, refresh_per_second=2, transient=not console.is_terminal) as live:
        def update(key: str, step: str) -> None:
            status[key] = step
            live.update(table())

        results = run_many(ctx, targets, workers, update, runner=_runner(workflow))
    results.update(failures)

    def fmt(x):
        return "" if x is None else f"{x:.3g}"

    if workflow == "electronic":
        summary = Table("input", "status", "gap (eV)", "direct gap (eV)", "VBM at", "CBM at", "reason")
        for key, res in results.items():
            edges = res.edges or {}
            summary.add_row(key, res.status, fmt(res.band_gap), fmt(edges.get("direct_gap")),
                            edges.get("vbm_at", ""), edges.get("cbm_at", ""), (res.reason or "")[:80])
    else:
        summary = Table("input", "status", "gap (eV)", "ε∞", "ε_ion", "ε_total", "reason")
        for key, res in results.items():
            summary.add_row(key, res.status, fmt(res.band_gap), fmt(res.eps_electronic), fmt(res.eps_ionic),
                            fmt(res.eps_total), (res.reason or "")[:80])
    console.print(summary)
    if json_out:
        json_out.write_text(json.dumps({key: res.as_dict() for key, res in results.items()}, indent=1))
    if plots is not None:
        _band_plots(ctx, results, plots)
    failed = sum(r.status in ("failed", "cancelled") for r in results.values())
    finish_batch(len(results) - failed, failed)  # a metal is an answer (no static ε), not a failure


def _print_estimate(ctx, targets: dict[str, int], failures: dict, json_out: Path | None, workers: int) -> None:
    """The cost model's estimate per input and in total, as a table (and JSON with --json); nothing runs."""
    from tansaku.active.cost import CostEstimator

    estimator = CostEstimator(ctx.db, ctx)
    rows = dict(zip(targets, estimator.explain(list(targets.values())), strict=True))
    rows.update({key: {"cpu_hours": None, "reason": res.reason} for key, res in failures.items()})
    procs = ctx.commands.mpi_procs
    grid = Table("input", "formula", "atoms", "k-mesh", "k-points", "stored gap (eV)", "k-mesh probes", "CPU hours",
                 "reason", title=f"Estimated cost of the dielectric workflow ({ctx.preset} preset)")
    for key, row in rows.items():
        gap, hours = row.get("stored_gap"), row["cpu_hours"]
        grid.add_row(key, row.get("formula", ""), str(row.get("atoms", "")),
                     "x".join(map(str, row["kmesh"])) if "kmesh" in row else "", str(row.get("k_points", "")),
                     "" if gap is None else f"{gap:.2f}", {True: "yes", False: "no"}.get(row.get("probes"), ""),
                     "" if hours is None else f"{hours:.3g}",
                     _estimate_note(row))
    console.print(grid)
    total = sum(row["cpu_hours"] or 0.0 for row in rows.values())
    console.print(f"Total: {total:.3g} CPU hours, at least {total / (workers * procs):.3g} h of wall time with "
                  f"{workers} material(s) at a time × {procs} MPI process(es). Basis: {estimator.basis()}. A gap "
                  "found below small_gap_ev by the SCF adds the k-mesh probes; how close the model has come on "
                  "the DFT benchmark: README, Cost model.")
    if json_out:
        json_out.write_text(json.dumps({"preset": ctx.preset, "basis": estimator.basis(), "total_cpu_hours": total,
                                        "materials": rows}, indent=1))


def _estimate_note(row: dict) -> str:
    """The estimate table's last column: why a material has no estimate, or what of it has already run."""
    if row.get("finished"):
        return "finished with this preset: nothing to run"
    if row.get("reason"):
        return row["reason"][:80]
    if row.get("steps_done"):
        return f"done: {', '.join(row['steps_done'])}; charged for the rest"[:80]
    return ""


def _runner(workflow: str):
    from tansaku.workflows.dielectric import run_dielectric
    from tansaku.workflows.electronic import run_electronic

    return run_electronic if workflow == "electronic" else run_dielectric


def _band_plots(ctx, results: dict, directory: Path) -> None:
    """A band structure per finished material, from its band step's state, and its absorption spectrum when the
    run had --optics."""
    from sqlalchemy import select

    from tansaku.plots.figures import absorption_spectrum, band_structure
    from tansaku.store.tables import Calculation, Material
    from tansaku.workflows.run import material_dir

    for res in results.values():
        if res.status != "done" or not res.edges or res.material_id is None:
            continue
        with ctx.db.session() as session:
            material = session.get(Material, res.material_id)
            root, formula = material_dir(ctx, material), material.reduced_formula
        bands = json.loads((root / "bands" / "state.json").read_text())["outputs"]
        out = directory / f"{res.material_id}-{formula}-bands.png"
        band_structure(bands, res.edges, out, f"{formula} (PBEsol, {ctx.preset} preset)")
        console.print(f"band structure in {out}")
        if "optics" in res.edges:
            with ctx.db.session() as session:
                analysis = session.scalar(select(Calculation).where(
                    Calculation.material_id == res.material_id, Calculation.workflow == "electronic",
                    Calculation.step == "analysis", Calculation.preset == ctx.preset))
            out = directory / f"{res.material_id}-{formula}-absorption.png"
            absorption_spectrum(analysis.outputs["optics"], out, f"{formula}: absorption ({ctx.preset} preset)")
            console.print(f"absorption spectrum in {out}")

