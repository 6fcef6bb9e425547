"""`tansaku db ...`: look into the database and export it."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from tansaku.cli.common import console, database
from tansaku.store.queries import export_table, material_details, stats

app = typer.Typer(help="Inspect and export the materials database.")


@app.command("stats")
def db_stats(json_out: bool = typer.Option(False, "--json", help="Print JSON instead of tables.")) -> None:
    """Counts of materials by source, properties by name, subset members and number of elements."""
    db = database(create=False)
    with db.session() as session:
        data = stats(session)
    if json_out:
        console.print_json(json.dumps(data))
        return
    console.print(f"[bold]{data['materials']}[/] materials ({data['with_structure']} with structures, "
                  f"{data['linked_duplicates']} linked duplicates)")
    for key, title in (("sources", "source"), ("properties", "property"), ("subsets", "subset"),
                       ("nelements", "elements"), ("calculations", "calculation status")):
        if data[key]:
            table = Table(title=f"by {title}")
            table.add_column(title)
            table.add_column("count", justify="right")
            for name, count in data[key].items():
                table.add_row(name, str(count))
            console.print(table)


@app.command("show")
def db_show(
    material_id: int = typer.Argument(..., help="Material id (see 'tansaku db export')."),
    json_out: bool = typer.Option(False, "--json", help="Print everything, structure included, as JSON."),
) -> None:
    """One material: identity, properties with their methods, calculations."""
    db = database(create=False)
    with db.session() as session:
        data = material_details(session, material_id)
    if json_out:
        console.print_json(json.dumps(data))
        return
    console.print(f"[bold]{data['reduced_formula']}[/] (id {data['id']}, {data['source']} {data['source_id']}, "
                  f"{data['nsites']} sites, {data['spacegroup']})")
    if data["duplicate_of"]:
        console.print(f"same structure as material {data['duplicate_of']}")
    table = Table("property", "value", "unit", "method")
    for p in data["properties"]:
        table.add_row(p["name"], "" if p["value"] is None else f"{p['value']:.4g}", p["unit"] or "", p["method"])
    console.print(table)


@app.command("export")
def db_export(
    out: Path = typer.Argument(..., help="OUT.csv or OUT.json: one row per material, properties as columns."),
    property_names: list[str] = typer.Option(None, "--property", help="Only these properties (repeatable)."),
    structures: str = typer.Option(None, help="Add a structure column as 'cif' or 'json'."),
    subset: str = typer.Option(None, help="Only members of this subset, e.g. 'paper'."),
    include_predictions: bool = typer.Option(False, "--include-predictions", help="Fill cells no measured value "
                                             "fills with stored ML predictions (their method column says "
                                             "ml:<model id>). Without it only imported and computed values go out."),
) -> None:
    """Export materials and property values, each with a <property>_method column saying how it was obtained.

    Example: tansaku db export oxides.csv --property eps_electronic --property eps_ionic --subset paper
    """
    db = database(create=False)
    with db.session() as session:
        n = export_table(session, out, property_names or None, structures, subset, include_predictions)
    console.print(f"wrote {n} rows to {out}")
