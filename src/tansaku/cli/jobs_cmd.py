"""`tansaku jobs`: the batch jobs the workflows submitted, with what the scheduler says about them now."""

from __future__ import annotations

import json

import typer
from rich.table import Table
from sqlalchemy import select

from tansaku.cli.common import console, database
from tansaku.store.tables import Calculation, Material


def register(app: typer.Typer) -> None:
    app.command("jobs")(jobs)


def jobs(
    show_all: bool = typer.Option(False, "--all", help="Also finished steps (default: only unfinished ones)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List workflow steps submitted as batch jobs: job id, scheduler state, material, step, elapsed time.

    The state comes from the scheduler (scontrol) for SLURM jobs it still knows, else from the database.
    """
    from tansaku.workflows.slurm import job_fields

    db = database(create=False)
    with db.session() as session:
        query = (select(Calculation, Material.reduced_formula).join(Material)
                 .where(Calculation.job_id.is_not(None)).order_by(Calculation.id))
        if not show_all:
            query = query.where(Calculation.status.not_in(["done", "failed", "cancelled"]))
        rows = session.execute(query).all()
    out = []
    for calc, formula in rows:
        executor = (calc.inputs or {}).get("executor") or "local"
        info = job_fields(calc.job_id) if executor == "slurm" else None
        out.append({"job_id": calc.job_id, "executor": executor, "material_id": calc.material_id,
                    "formula": formula, "step": calc.step, "status": calc.status,
                    "scheduler_state": info.get("JobState") if info else None,
                    "elapsed": info.get("RunTime") if info else None, "attempts": calc.attempts})
    if json_out:
        console.print_json(json.dumps(out))
        return
    table = Table("job", "executor", "scheduler state", "material", "step", "status", "elapsed", "attempts",
                  title=f"{len(out)} {'jobs' if show_all else 'unfinished jobs'}")
    for r in out:
        table.add_row(r["job_id"], r["executor"], r["scheduler_state"] or "-", f"{r['material_id']} {r['formula']}",
                      r["step"], r["status"], r["elapsed"] or "-", str(r["attempts"]))
    console.print(table)
